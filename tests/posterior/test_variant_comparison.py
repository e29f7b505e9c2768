"""The paper's comparisons in miniature, on synthetic data with known structure (spec §9).

Each comparison is a paired test over the test instances: the per-instance prediction MSE of two
models on the same held-out rows. A model "beats" another when the mean paired difference
exceeds 3 standard errors of that mean (one-sided p < 0.0014 if the two were equally good), so a
pass is evidence, not luck of one row.
"""

from __future__ import annotations

import numpy as np
import pytest

from pyro_lmmvae import LMMVAE
from pyro_lmmvae.datasets import make_synthetic

FIXED = "~ 1 + t + g + c + g:t + sin_2pi_t + cos_2pi_t"
RANDOM = " + (1 + t | id)"


def per_instance_prediction_mse(ds, formula: str, **options) -> np.ndarray:
    """Fit on the training split; mean squared prediction error of each test instance."""
    train, val, test = ds.split("train"), ds.split("val"), ds.split("test")
    model = LMMVAE(
        formula,
        data=train.data,
        y=train.y,
        mask=train.mask,
        latent_dim=4,
        standardize=False,
        instance="id",
        seed=0,
        **options,
    )
    model.fit(
        max_epochs=150,
        batch_size=16,
        lr=3e-3,
        validation=(val.data, val.y, val.mask),
        progress=False,
    )
    row_mse = ((model.predict(test.data) - test.y_true) ** 2).mean(axis=1)
    ids = test.data["id"].to_numpy()
    return np.array([row_mse[ids == i].mean() for i in np.unique(ids)])


def paired_z(worse: np.ndarray, better: np.ndarray) -> float:
    """Mean of ``worse - better`` in units of its standard error."""
    diff = worse - better
    return float(diff.mean() / (diff.std(ddof=1) / np.sqrt(len(diff))))


@pytest.fixture(scope="module")
def synthetic():
    return make_synthetic(n_instances=150, n_times=10, obs_dim=8, n_test_times=3, seed=2)


@pytest.fixture(scope="module")
def vae_mse(synthetic):
    return per_instance_prediction_mse(synthetic, "~ 0")


@pytest.mark.parametrize(
    ("variant", "objective", "formula"),
    [("slmm", "elbo", FIXED), ("olmm", "gsnn", FIXED + RANDOM), ("slmm", "gsnn", FIXED + RANDOM)],
)
def test_slmm_and_gsnn_predict_better_than_a_plain_vae(
    synthetic, vae_mse, isolated_pyro, variant, objective, formula
):
    """sLMM and GSNN variants predict held-out time points better than the VAE's g(0)."""
    mse = per_instance_prediction_mse(synthetic, formula, variant=variant, objective=objective)
    assert paired_z(vae_mse, mse) > 3.0, (vae_mse.mean(), mse.mean())


def test_gsnn_beats_elbo_when_covariates_determine_the_data(isolated_pyro):
    """Noise-free, covariate-determined latents (Rotating MNIST in miniature): GSNN > ELBO."""
    ds = make_synthetic(
        n_instances=100,
        n_times=10,
        obs_dim=8,
        n_test_times=3,
        seed=2,
        random_effect_std=0.0,
        latent_noise_std=0.0,
        noise_std=0.0,
    )
    elbo = per_instance_prediction_mse(ds, FIXED, objective="elbo")
    gsnn = per_instance_prediction_mse(ds, FIXED, objective="gsnn", instance_intercept=False)
    assert paired_z(elbo, gsnn) > 3.0, (elbo.mean(), gsnn.mean())
