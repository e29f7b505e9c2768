"""Paper-replication benchmarks: the harness and its report (tables and figures)."""
