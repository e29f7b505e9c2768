"""Command line of the benchmark harness.

Usage (from the repository root)::

    python -m benchmarks.paper health_mnist --preset reduced --out benchmarks/results/health_mnist
    python -m benchmarks.paper physionet --preset tiny --set training.max_epochs=2 --out /tmp/p

``CONFIG`` is a TOML file or the name of one in ``benchmarks/paper/configs``.
"""

from __future__ import annotations

import argparse
import sys

import torch

from .harness import load_config, run_benchmark


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.paper",
        description="Run the LMM-VAE evaluation protocol (spec §9) from a configuration.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "config", help="TOML file, or health_mnist | rotating_mnist | physionet | synthetic"
    )
    parser.add_argument("--preset", default=None, help="tiny | reduced | full")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--root", default="../shared/data", help="shared data folder")
    parser.add_argument("--cache", default=None, help="compressed dataset cache file (.npz)")
    parser.add_argument("--seeds", type=int, default=None, help="override the number of seeds")
    parser.add_argument("--epochs", type=int, default=None, help="override training.max_epochs")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override any configuration entry, e.g. data.n_per_digit=100",
    )
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    parser.add_argument(
        "--time-budget", type=float, default=None, help="minutes after which no new run starts"
    )
    parser.add_argument("--resume", action="store_true", help="skip runs already in results.csv")
    parser.add_argument("--progress", action="store_true", help="show per-fit progress bars")
    args = parser.parse_args(argv)
    overrides = list(args.set)
    if args.seeds is not None:
        overrides.append(f"seeds={args.seeds}")
    if args.epochs is not None:
        overrides.append(f"training.max_epochs={args.epochs}")
    try:
        config = load_config(args.config, args.preset, overrides)
    except (ValueError, FileNotFoundError) as err:
        parser.error(str(err))
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    run_benchmark(
        config,
        args.out,
        root=args.root,
        cache=args.cache,
        device=args.device,
        time_budget=args.time_budget,
        resume=args.resume,
        progress=args.progress,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
