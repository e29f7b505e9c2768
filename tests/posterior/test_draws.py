"""Effect draws run the model's and the guide's own programs (pyro.infer.Predictive).

``LMMVAE.effects`` and ``latent_trajectories`` draw the effect sites by running the model's
effects (prior) and the guide's effect factors (posterior) under Predictive, so an edited or
subclassed program changes what they report. The checks condition a program's
``fixed_effects`` site on a constant: every reported draw must then equal it exactly, which no
draw from the factors' moments would give.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pyro import poutine

from pyro_lmmvae import LMMVAE
from pyro_lmmvae.datasets import make_synthetic
from pyro_lmmvae.draws import effect_draws, group_batch
from pyro_lmmvae.inspection import _with_instances


@pytest.fixture(scope="module")
def split():
    return make_synthetic(n_instances=10, n_times=8, n_test_times=2, seed=0).split("train")


def build(split, **options) -> LMMVAE:
    kwargs = dict(latent_dim=2, instance="id", seed=0) | options
    return LMMVAE("~ 1 + t + (1 | id)", data=split.data, y=split.y, mask=split.mask, **kwargs)


def _pin_fixed(program: torch.nn.Module, value: float) -> torch.Tensor:
    """Make ``program`` an edited program: its ``fixed_effects`` site is ``value`` everywhere."""
    shape = (program.latent_dim, program.n_fixed)
    const = torch.full(shape, value)
    program.forward = poutine.condition(program.forward, data={"fixed_effects": const})
    return const


@pytest.mark.parametrize("effects_guide", ["mean_field", "structured"])
def test_effects_draw_from_the_guide_and_model_programs(split, effects_guide):
    m = build(split, effects_guide=effects_guide)
    _pin_fixed(m.pair.effect_estimates, 3.0)
    _pin_fixed(m.model.effects, -2.0)
    data = m.effects(num_draws=7, seed=0)
    np.testing.assert_array_equal(data.posterior["fixed_effects"].values, 3.0)
    np.testing.assert_array_equal(data.prior["fixed_effects"].values, -2.0)
    # the random effects still vary from draw to draw
    assert float(data.posterior["random_effects"].std("draw").min()) > 0


def test_trajectories_draw_from_the_guide_and_model_programs(split):
    m = build(split)
    _pin_fixed(m.pair.effect_estimates, 0.5)
    _pin_fixed(m.model.effects, 0.0)
    grid = split.data[["t"]].drop_duplicates().head(4).reset_index(drop=True)
    out = m.latent_trajectories(grid, num_draws=5, seed=0)
    x = m.tensors(_with_instances(m.design, grid), unseen="prior").full_batch().x.cpu().numpy()
    expected = x @ np.full((x.shape[1], 2), 0.5)  # population curve (no instance)
    np.testing.assert_allclose(
        out["posterior_draws"].values, np.broadcast_to(expected, (5, 4, 2)), rtol=1e-6
    )


def test_effect_draws_restore_the_global_rng_and_repeat_with_the_seed(split):
    m = build(split)
    q = m.pair.effect_estimates
    batch = group_batch(torch.arange(3), m.design.n_groups, q)
    state = torch.random.get_rng_state()
    first = effect_draws(q, batch, 4, seed=1)
    assert torch.equal(torch.random.get_rng_state(), state)
    again = effect_draws(q, batch, 4, seed=1)
    other = effect_draws(q, batch, 4, seed=2)
    assert first.fixed.shape == (4, 2, q.n_fixed)
    assert first.random.shape == (4, 3, 2, 1)
    assert torch.equal(first.fixed, again.fixed) and torch.equal(first.random, again.random)
    assert not torch.equal(first.fixed, other.fixed)
