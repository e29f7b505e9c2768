"""Basis-size sweep on GP-prior data: test MSE and trajectory recovery against 2M (spec §6, §9).

For each seed, data from :func:`~pyro_lmmvae.datasets.make_gp_synthetic` (SE kernel, ℓ = 1.5,
t ∈ [0, 10]) are fitted by ``~ 1 + t + fourier(t, M) + (1 | id)`` for 2M ∈ {2, 4, 8, 16} under
three priors on the basis coefficients:

* ``N(0,1)``: unscaled columns (``spectral_scaling="none"`` of the spec);
* ``SE fixed``: the SpectralPrior of the data's kernel;
* ``SE learned``: SpectralPrior("se", learn=True), variance and lengthscale learned as point
  estimates from their defaults (σ² = 1, ℓ = T/8).

Reported: future-prediction MSE on the test rows (last 4 time points of 30% of the instances)
and the R² of the best affine map from the learned population trajectory to the true one.

Usage::

    python benchmarks/basis_sweep.py --seeds 3 --epochs 200
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from pyro_lmmvae import LMMVAE
from pyro_lmmvae.datasets import make_gp_synthetic
from pyro_lmmvae.gp import Kernel, SpectralPrior
from pyro_lmmvae.io import write_atomic

KERNEL = Kernel("se", variance=1.0, lengthscale=1.5)
PRIORS = {
    "N(0,1)": lambda: None,
    "SE fixed": lambda: SpectralPrior(KERNEL),
    "SE learned": lambda: SpectralPrior("se", learn=True),
}


def r_squared(learned: np.ndarray, truth: np.ndarray) -> float:
    """Mean over true dims of the R² of the best affine map learned -> truth."""
    design = np.column_stack([np.ones(len(learned)), learned])
    coef, *_ = np.linalg.lstsq(design, truth, rcond=None)
    residual = ((design @ coef - truth) ** 2).sum(0)
    return float(np.mean(1.0 - residual / ((truth - truth.mean(0)) ** 2).sum(0)))


def run(
    seeds: int, epochs: int, frequencies: list[int], n_instances: int, n_times: int
) -> list[dict]:
    rows = []
    for seed in range(seeds):
        ds = make_gp_synthetic(
            n_instances=n_instances,
            n_times=n_times,
            n_test_times=min(4, n_times - 2),
            kernel=KERNEL,
            seed=seed,
        )
        train, test = ds.split("train"), ds.split("test")
        grid = pd.DataFrame({"t": ds.truth["grid_t"], "id": "unseen"})
        for m in frequencies:
            for prior_name, prior in PRIORS.items():
                start = time.perf_counter()
                model = LMMVAE(
                    f"~ 1 + t + fourier(t, {m}) + (1 | id)",
                    data=train.data,
                    y=train.y,
                    mask=train.mask,
                    latent_dim=2,
                    fixed_prior=prior(),
                    seed=seed,
                )
                model.fit(
                    max_epochs=epochs, batch_size=10, lr=3e-3, validation=None, progress=False
                )
                mse = float(((model.predict(test.data) - test.y_true) ** 2).mean())
                r2 = r_squared(model.prior_latents(grid, unseen="prior"), ds.truth["population_z"])
                row = {
                    "seed": seed,
                    "2M": 2 * m,
                    "prior": prior_name,
                    "test_mse": mse,
                    "trajectory_r2": r2,
                    "seconds": time.perf_counter() - start,
                    "prior_fitted": model.model.effects.fixed_prior.describe(),
                }
                print(json.dumps(row), flush=True)
                rows.append(row)
    return rows


def table(rows: list[dict]) -> str:
    frame = pd.DataFrame(rows)
    summary = frame.groupby(["prior", "2M"]).agg(
        mse_mean=("test_mse", "mean"),
        mse_sd=("test_mse", "std"),
        r2_mean=("trajectory_r2", "mean"),
    )
    lines = [
        "| prior | 2M | test MSE (mean ± sd over seeds) | trajectory R² |",
        "|---|---|---|---|",
    ]
    for (prior, two_m), r in summary.iterrows():
        lines.append(f"| {prior} | {two_m} | {r.mse_mean:.4f} ± {r.mse_sd:.4f} | {r.r2_mean:.3f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=200)
    parser.add_argument("--frequencies", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--instances", type=int, default=60, help="instances per dataset")
    parser.add_argument("--times", type=int, default=20, help="time points per instance")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/basis_sweep.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    rows = run(args.seeds, args.epochs, args.frequencies, args.instances, args.times)
    result = {
        "command": "python benchmarks/basis_sweep.py "
        f"--seeds {args.seeds} --epochs {args.epochs} --threads {args.threads} "
        f"--instances {args.instances} --times {args.times}",
        "machine": f"{platform.processor() or platform.machine()}, torch {torch.__version__}",
        "total_seconds": time.perf_counter() - start,
        "rows": rows,
    }
    write_atomic(args.out, lambda tmp: tmp.write_text(json.dumps(result, indent=1)))
    print(table(rows))
    print(f"total {result['total_seconds']:.0f} s -> {args.out}")


if __name__ == "__main__":
    main()
