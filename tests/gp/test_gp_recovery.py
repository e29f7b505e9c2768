"""A GP-scaled LMM-VAE on data whose latent trajectory is a GP draw (issue 4, spec §6 and §9).

The data (:func:`~pyro_lmmvae.datasets.make_gp_synthetic`) have a non-linear population
trajectory f(t) ~ GP(0, SE(ℓ = 1.5)) over t ∈ [0, 10], a random intercept per instance and a
random MLP decoder. The models are ``~ 1 + t + fourier(t, M) + (1 | id)`` with the SE spectral
prior of the data's kernel, for 2M ∈ {2, 4, 8}, and the linear ``~ 1 + t + (1 | id)``.

Comparisons are paired over the test instances (future time points of instances seen in
training): a model is worse than another when the mean per-instance MSE difference exceeds 3
standard errors of that mean (one-sided p < 0.0014 if they were equally good).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pyro_lmmvae import LMMVAE
from pyro_lmmvae.datasets import make_gp_synthetic
from pyro_lmmvae.gp import Kernel, SpectralPrior

KERNEL = Kernel("se", variance=1.0, lengthscale=1.5)
Z_LIMIT = 3.0


@pytest.fixture(scope="module")
def fits():
    """Per-test-instance MSE and the recovered population trajectory of each model."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    ds = make_gp_synthetic(kernel=KERNEL, seed=0)
    train, test = ds.split("train"), ds.split("test")
    grid = pd.DataFrame({"t": ds.truth["grid_t"], "id": "unseen"})
    out = {}
    for name, formula in [
        ("linear", "~ 1 + t + (1 | id)"),
        *[(f"2M={2 * m}", f"~ 1 + t + fourier(t, {m}) + (1 | id)") for m in (1, 2, 4)],
    ]:
        model = LMMVAE(
            formula,
            data=train.data,
            y=train.y,
            mask=train.mask,
            latent_dim=2,
            fixed_prior=SpectralPrior(KERNEL),
            seed=0,
        )
        model.fit(max_epochs=200, batch_size=10, lr=3e-3, validation=None, progress=False)
        errors = ((model.predict(test.data) - test.y_true) ** 2).mean(axis=1)
        per_instance = pd.Series(errors).groupby(test.data["id"].to_numpy()).mean()
        trajectory = model.prior_latents(grid, unseen="prior")  # population curve M x̄(t)
        out[name] = (per_instance, trajectory)
    torch.set_num_threads(threads)
    return ds, out


def _z(better: pd.Series, worse: pd.Series) -> float:
    """Mean paired difference (worse - better) in standard errors."""
    diff = worse - better
    return float(diff.mean() / (diff.std(ddof=1) / np.sqrt(len(diff))))


def _r_squared(learned: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """R² of the best affine map from the learned to the true trajectory, per true dim.

    The latent space is identified only up to such a map (the decoder is learned), so recovery
    means the true trajectory is an affine function of the learned one.
    """
    design = np.column_stack([np.ones(len(learned)), learned])
    coef, *_ = np.linalg.lstsq(design, truth, rcond=None)
    residual = ((design @ coef - truth) ** 2).sum(0)
    return 1.0 - residual / ((truth - truth.mean(0)) ** 2).sum(0)


def test_test_mse_does_not_increase_with_basis_functions(fits):
    _, out = fits
    mse = {name: errors for name, (errors, _) in out.items()}
    for fewer, more in [("2M=2", "2M=4"), ("2M=4", "2M=8")]:
        z = _z(better=mse[fewer], worse=mse[more])
        assert z < Z_LIMIT, f"{more} predicts worse than {fewer}: z = {z:.2f}"
    # and on this non-linear trajectory the richer basis is significantly better
    assert _z(better=mse["2M=8"], worse=mse["2M=2"]) > Z_LIMIT
    assert _z(better=mse["2M=8"], worse=mse["linear"]) > Z_LIMIT


def test_gp_scaled_model_recovers_the_smooth_population_trajectory(fits):
    ds, out = fits
    truth = ds.truth["population_z"]
    r2_basis = _r_squared(out["2M=8"][1], truth)
    r2_linear = _r_squared(out["linear"][1], truth)
    assert np.all(r2_basis > 0.9), r2_basis
    # a straight line cannot follow the GP draw: the basis is what recovers it
    assert np.all(r2_basis > r2_linear + 0.2), (r2_basis, r2_linear)
