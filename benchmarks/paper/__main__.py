"""Command line of the benchmark harness.

Usage (from the repository root)::

    python -m benchmarks.paper health_mnist --preset reduced --out benchmarks/results/health_mnist
    python -m benchmarks.paper physionet --preset tiny --set training.max_epochs=2 --out /tmp/p
    python -m benchmarks.paper --baselines-only benchmarks/results/paper/health_mnist

``CONFIG`` is a TOML file or the name of one in ``benchmarks/paper/configs``. With
``--baselines-only`` it is instead a results folder of an earlier run: the trivial baselines are
added to it without training anything (:func:`benchmarks.paper.baselines_only.baselines_only`).
"""

from __future__ import annotations

import argparse
import sys

import torch

from .baselines_only import baselines_only
from .config import load_config
from .harness import run_benchmark


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.paper",
        description="Run the LMM-VAE evaluation protocol (spec §9) from a configuration.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "config",
        help="TOML file, or health_mnist | rotating_mnist | physionet | synthetic; with "
        "--baselines-only, a results folder holding run.json",
    )
    parser.add_argument("--preset", default=None, help="tiny | reduced | converged | full")
    parser.add_argument("--out", default=None, help="output folder (required to run)")
    parser.add_argument(
        "--baselines-only",
        action="store_true",
        help="add the trivial baselines to the stored results in the folder CONFIG (no training)",
    )
    parser.add_argument(
        "--linear",
        action="store_true",
        help="with --baselines-only: also fit the linear LMM baseline (this trains)",
    )
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
    if args.baselines_only:
        try:
            if args.threads is not None:
                torch.set_num_threads(args.threads)
            baselines_only(
                args.config,
                root=args.root,
                cache=args.cache,
                linear=args.linear,
                device=args.device,
            )
        except (ValueError, FileNotFoundError) as err:
            parser.error(str(err))
        return 0
    if args.out is None:
        parser.error("--out is required (except with --baselines-only)")
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
