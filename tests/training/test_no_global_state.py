"""No library call reads or writes Pyro's global param store: two models with learned prior
scales stay independent through fit, effects, predict, save and load."""

from __future__ import annotations

import numpy as np
import pyro
import torch

from pyro_lmmvae import LMMVAE


def _scales(m: LMMVAE) -> tuple[float, float]:
    effects = m.model.effects
    return float(effects.fixed_prior.scale.detach()), float(effects.random_prior.scale.detach())


def test_two_models_keep_their_own_learned_prior_scales(small_synthetic, tmp_path):
    pyro.clear_param_store()
    tr, te = small_synthetic.split("train"), small_synthetic.split("test")
    models = []
    for k, epochs in enumerate((2, 6)):
        m = LMMVAE(
            "~ 1 + t + (1 + t | id)",
            data=tr.data,
            y=tr.y * (1 + 3 * k),
            mask=tr.mask,
            latent_dim=2,
            fixed_prior="learned_scale",
            random_prior="learned_scale",
        )
        m.fit(max_epochs=epochs, batch_size=8, lr=5e-2, validation=None, progress=False)
        models.append(m)
    before = [_scales(m) for m in models]
    assert abs(before[0][0] - before[1][0]) > 1e-3  # different fits, different scales
    for m in models:  # each call below once replaced the second model's scale by the first's
        m.effects(num_draws=5)
        m.predict(te.data)
        m.model.effects.random_prior.describe()
    assert [_scales(m) for m in models] == before
    for k, m in enumerate(models):
        back = LMMVAE.load(m.save(tmp_path / f"m{k}.pt"))
        assert _scales(back) == before[k]
        attrs = back.effects(num_draws=5).posterior.attrs
        assert f"{before[k][1]:.4g}" in attrs["random_prior"]
    assert list(pyro.get_param_store().keys()) == []


def test_svi_in_global_mode_still_learns_a_prior_scale(small_synthetic):
    """The notebook route (pyro.infer.SVI with a PyroOptim) still finds the PyroParams."""
    pyro.clear_param_store()
    tr = small_synthetic.split("train")
    m = LMMVAE(
        "~ 1 + t + (1 | id)",
        data=tr.data,
        y=tr.y,
        mask=tr.mask,
        latent_dim=2,
        random_prior="learned_scale",
    )
    svi = pyro.infer.SVI(
        m.model,
        m.guide,
        pyro.optim.Adam({"lr": 0.05}),
        pyro.infer.TraceMeanField_ELBO(max_plate_nesting=2),
    )
    start = float(m.model.effects.random_prior.scale.detach())
    torch.manual_seed(0)
    for batch in m.batches(batch_size=8):
        svi.step(batch)
    assert abs(float(m.model.effects.random_prior.scale.detach()) - start) > 1e-3
    pyro.clear_param_store()
    np.testing.assert_equal(list(pyro.get_param_store().keys()), [])
