"""The pure-torch benchmark reference computes the library's oLMM-VAE objective (spec §2)."""

from __future__ import annotations

import math

import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch
from torch.nn import functional as F

from benchmarks.reference import (
    ReferenceBatch,
    ReferenceData,
    ReferenceOLMM,
    reference_optimizer,
    reference_step,
)
from pyro_lmmvae import LMMVAE
from pyro_lmmvae.datasets import make_synthetic

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: one intra-op thread


@pytest.fixture(scope="module")
def estimator() -> LMMVAE:
    """Fixed and random effects (intercept + slope), missing entries, perturbed q(A)."""
    ds = make_synthetic(n_instances=12, n_times=6, obs_dim=8, n_test_times=2, seed=3).split("train")
    assert not ds.mask.all()  # missing entries present
    est = LMMVAE(
        "~ 1 + t + g + (1 + t | id)",
        data=ds.data,
        y=ds.y,
        mask=ds.mask,
        latent_dim=3,
        standardize=False,
        random_prior=dist.Normal(0.0, 1.0),  # the reference implements a unit Normal prior on u
        seed=0,
    )
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        e = est.pair.guide.effects
        for param, mean, std in (
            (e.fixed_loc, 0.0, 0.5),
            (e.fixed_rho, -3.0, 0.5),
            (e.random_loc, 0.0, 0.3),
            (e.random_rho, -3.0, 0.5),
        ):
            param.copy_(mean + std * torch.randn(param.shape, generator=gen))
        est.pair.model.likelihood.raw_scale.add_(0.3 * torch.randn(8, generator=gen))
    return est


INSTANCES = ([0, 3, 4, 7, 9], [1, 2, 5, 6, 8, 10, 11, 0])


def _batches(est: LMMVAE, instances):
    batch = est.batches(len(instances), 0).batch(torch.tensor(instances))
    ref = ReferenceData.from_estimator(est).batch(batch.instances)
    return batch, ref


@pytest.mark.parametrize("instances", INSTANCES)
def test_reference_batches_match_library_batches(estimator, instances):
    batch, ref = _batches(estimator, instances)
    for name in ("x", "w", "y", "mask", "instances", "local"):
        assert torch.equal(getattr(batch, name), getattr(ref, name)), name
    assert ref.scale == pytest.approx(batch.scale)
    assert isinstance(ref, ReferenceBatch)


def test_reference_shares_the_library_parameters(estimator):
    ref = ReferenceOLMM.from_estimator(estimator)
    library = estimator.loss_module(kl="closed_form")
    assert {id(p) for p in ref.parameters()} == {
        id(p) for p in library.parameters() if p.requires_grad
    }


@pytest.mark.parametrize("instances", INSTANCES)
def test_reference_loss_and_gradients_equal_closed_form_loss(estimator, instances):
    batch, ref_batch = _batches(estimator, instances)
    library = estimator.loss_module(kl="closed_form")
    ref = ReferenceOLMM.from_estimator(estimator)
    params = [p for p in library.parameters() if p.requires_grad]
    torch.manual_seed(11)
    lib_loss = library(batch)
    lib_grads = torch.autograd.grad(lib_loss, params)
    torch.manual_seed(11)
    ref_loss = ref(ref_batch)
    ref_grads = torch.autograd.grad(ref_loss, params)
    torch.testing.assert_close(ref_loss, lib_loss)
    names = {id(p): n for n, p in library.named_parameters()}
    for param, g_lib, g_ref in zip(params, lib_grads, ref_grads, strict=True):
        torch.testing.assert_close(g_ref, g_lib, msg=lambda m, p=param: f"{names[id(p)]}: {m}")
    # a different draw gives a different loss: the seed is what made them equal
    torch.manual_seed(12)
    assert not torch.allclose(ref(ref_batch), lib_loss)


def test_trace_mean_field_loss_agrees_with_reference_in_expectation(estimator):
    """Pyro's one-draw-of-A estimate and the closed form have the same mean (4 MC SEs).

    Pyro's loss (``kl="trace_mean_field"``) is drawn as 80 means of 50 vectorized particles
    each (independent draws of A and z), the reference as 2000 single draws of z.
    """
    batch, ref_batch = _batches(estimator, INSTANCES[0])
    groups, particles, n_ref = 80, 50, 2000
    pyro_loss = estimator.pair.loss_module(
        particles, vectorize_particles=True, kl="trace_mean_field"
    )
    ref = ReferenceOLMM.from_estimator(estimator)
    torch.manual_seed(0)
    with torch.no_grad(), pyro.validation_enabled(False):
        a = np.array([float(pyro_loss(batch)) for _ in range(groups)])
        b = np.array([float(ref(ref_batch)) for _ in range(n_ref)])
        var_u = torch.exp(F.softplus(ref.random_rho[batch.instances] + 8) - 8)
        loc_u = ref.random_loc[batch.instances]
        kl_u = float(0.5 * (loc_u.square() + var_u - 1 - var_u.log()).sum())
    se = math.sqrt(a.var(ddof=1) / groups + b.var(ddof=1) / n_ref)
    assert abs(a.mean() - b.mean()) < 4 * se, (a.mean(), b.mean(), se)
    # the test would see an error the size of the random-effect KL's P/B scaling
    assert (batch.scale - 1) * kl_u > 8 * se, ((batch.scale - 1) * kl_u, se)


def test_reference_step_trains(estimator):
    import copy

    ref = copy.deepcopy(ReferenceOLMM.from_estimator(estimator))
    data = ReferenceData.from_estimator(estimator)
    opt = reference_optimizer(ref, lr=1e-2)
    batches = data.epochs(4, seed=0)
    before = [p.detach().clone() for p in ref.parameters()]
    losses = [reference_step(ref, opt, next(batches)) for _ in range(30)]
    assert all(math.isfinite(v) for v in losses)
    assert all(not torch.equal(b, p) for b, p in zip(before, ref.parameters(), strict=True))
    # the copy is independent of the estimator
    assert not torch.equal(ref.fixed_loc, estimator.pair.guide.effects.fixed_loc)
