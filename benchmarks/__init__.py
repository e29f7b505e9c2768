"""Benchmark scripts and the paper-replication harness."""
