"""Effect recovery on the synthetic data of spec §7, and oLMM-VAE against a plain VAE.

Thresholds (documented in README "Effect recovery"):

* ``fixed_effects_rel_error < 0.8``: the zero estimator scores exactly 1, so this asks for a
  clear improvement over knowing nothing;
* ``random_effects_corr > 0.25``: for independent values the correlation over n = P·L*·k
  entries has standard error 1/sqrt(n) ≈ 0.020 here, so 0.25 is about 12 standard errors above
  chance;
* oLMM-VAE's prediction MSE at held-out time points is below the VAE's by more than 4 standard
  errors of the paired per-row difference.
"""

from __future__ import annotations

import numpy as np
import pytest

from pyro_lmmvae import LMMVAE, metrics
from pyro_lmmvae.datasets import make_synthetic
from pyro_lmmvae.demo import SYNTHETIC_FORMULA, truth_columns


@pytest.fixture(scope="module")
def fits():
    ds = make_synthetic(seed=0)
    tr, va = ds.split("train"), ds.split("val")
    common = dict(
        data=tr.data, y=tr.y, mask=tr.mask, latent_dim=4, standardize=False, instance="id", seed=0
    )
    fit = dict(
        max_epochs=150, batch_size=32, lr=3e-3, validation=(va.data, va.y, va.mask), progress=False
    )
    lmm = LMMVAE(SYNTHETIC_FORMULA, **common).fit(**fit)
    vae = LMMVAE("~ 0", **common).fit(**fit)
    return ds, lmm, vae


def test_effect_recovery_thresholds(fits):
    ds, lmm, _ = fits
    tr = ds.split("train")
    is_train = (ds.data["split"] == "train").to_numpy()
    order = lmm.design.group_index(ds.data.drop_duplicates("id"))
    rec = metrics.effect_recovery(
        lmm.latents(tr.y, tr.mask),
        ds.truth["z"][is_train],
        lmm.guide.effects.fixed_loc.detach().numpy(),
        ds.truth["fixed_effects"][:, truth_columns(lmm.design.fixed_terms)],
        lmm.guide.effects.random_loc.detach().numpy()[order],
        ds.truth["random_effects"],
    )
    n = ds.truth["random_effects"].size
    assert rec["fixed_effects_rel_error"] < 0.8, rec
    assert rec["random_effects_corr"] > 0.25 > 10 / np.sqrt(n), rec


def test_olmm_predicts_better_than_vae(fits):
    ds, lmm, vae = fits
    te = ds.split("test")
    err_lmm = ((lmm.predict(te.data) - te.y_true) ** 2).mean(1)
    err_vae = ((vae.predict(te.data) - te.y_true) ** 2).mean(1)
    diff = err_vae - err_lmm
    se = diff.std(ddof=1) / np.sqrt(len(diff))
    assert diff.mean() > 4 * se, (err_lmm.mean(), err_vae.mean(), se)
    assert metrics.prediction_mse(lmm.predict(te.data), te.y_true) == pytest.approx(err_lmm.mean())


def test_olmm_imputes_at_least_as_well_as_vae(fits):
    ds, lmm, vae = fits
    tr = ds.split("train")
    missing = ~tr.mask
    err = lambda m: (((m.impute() - tr.y_true) ** 2) * missing).sum(1) / missing.sum(1).clip(1)  # noqa: E731
    rows = missing.any(1)
    diff = (err(vae) - err(lmm))[rows]
    se = diff.std(ddof=1) / np.sqrt(len(diff))
    assert diff.mean() > -2 * se  # not worse than the VAE beyond noise
