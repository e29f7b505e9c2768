"""O(batch) steps: the subsampled instance plate, sparse gradients and lazy updates.

A step must touch only the random-effect rows of the batch's instances: they are the only rows
gathered, their gradient is a sparse tensor over those rows, and lazy Adam changes nothing else.
The minibatch estimate must stay unbiased: averaged over all batches of an epoch-free draw of B
instances it equals the full-data objective (checked exactly, with deterministic latents).
"""

from __future__ import annotations

import itertools

import pyro
import pytest
import torch
from ddp_worker import ConstantVarianceEncoder  # (mu, log-variance -60): z = mu exactly
from pyro import poutine

from pyro_lmmvae import LMMVAE
from pyro_lmmvae.datasets import make_synthetic
from pyro_lmmvae.models import RANDOM_SITE
from pyro_lmmvae.pyro_module import local_params
from pyro_lmmvae.training.loop import optimisation_step
from pyro_lmmvae.training.optim import FitOptimizer, instance_tables, sparse_instance_gradients

FORMULA = "~ 1 + t + g + (1 + t | id)"

pytestmark = pytest.mark.usefixtures("isolated_pyro")


@pytest.fixture(scope="module")
def data():
    return make_synthetic(n_instances=6, n_times=6, obs_dim=5, n_test_times=2, seed=3).split(
        "train"
    )


def _estimator(ds, **options) -> LMMVAE:
    kwargs = dict(latent_dim=2, standardize=False, seed=0) | options
    est = LMMVAE(FORMULA, data=ds.data, y=ds.y, mask=ds.mask, **kwargs)
    with torch.no_grad():  # non-zero random effects, so that their rows have distinct gradients
        for table in instance_tables(est.pair):
            table.add_(0.3 * torch.randn(table.shape, generator=torch.Generator().manual_seed(1)))
    return est


@pytest.mark.parametrize("variant", ["olmm", "slmm"])
def test_a_step_touches_only_the_batch_rows(data, variant):
    est = _estimator(data, variant=variant)
    loss = est.loss_module()
    batcher = est.batches(batch_size=2, seed=0)
    batch = batcher.batch(torch.tensor([1, 4]))
    tables = instance_tables(est.pair)
    assert tables, "the formula has random effects"
    # The random-effect site is sampled for the batch's instances only (subsampled plate).
    if variant == "olmm":
        with local_params():
            trace = poutine.trace(est.guide).get_trace(batch)
        assert trace.nodes[RANDOM_SITE]["value"].shape[0] == 2

    before = [t.detach().clone() for t in tables]
    with sparse_instance_gradients(loss), local_params():
        loss(batch).backward()
    sparse_grads = [t.grad for t in tables]
    for grad in sparse_grads:
        assert grad.is_sparse
        rows = torch.unique(grad.coalesce().indices()[0])
        assert torch.equal(rows, torch.sort(batch.instances).values)

    # The sparse gradient holds the same numbers as the dense one, whose other rows are zero.
    for t in tables:
        t.grad = None
    torch.manual_seed(0)
    with local_params():
        first = loss(batch)
    for t in tables:
        t.grad = None
    with local_params():
        torch.manual_seed(0)
        dense_value = loss(batch)
        dense_value.backward()
    torch.manual_seed(0)
    with sparse_instance_gradients(loss), local_params():
        sparse_value = loss(batch)
    torch.testing.assert_close(first, dense_value)
    grads = torch.autograd.grad(sparse_value, tables)
    others = torch.ones(tables[0].shape[0], dtype=torch.bool)
    others[batch.instances] = False
    for t, g in zip(tables, grads, strict=True):
        torch.testing.assert_close(g.to_dense(), t.grad)
        assert torch.all(t.grad[others] == 0)
        t.grad = None

    # One lazy-Adam step changes the batch's rows and leaves every other row bit-identical.
    optimizer = FitOptimizer(loss, lr=1e-2, lr_decay=1.0, sparse=True)
    assert optimizer.sparse
    with sparse_instance_gradients(loss), local_params():
        optimisation_step(loss, optimizer, batch)
    for t, old in zip(tables, before, strict=True):
        assert torch.equal(t.detach()[others], old[others])
        assert not torch.equal(t.detach()[batch.instances], old[batch.instances])


def test_sparse_flag_is_restored_and_off_by_default(data):
    est = _estimator(data)
    loss = est.loss_module()
    effects = est.pair.guide.effects
    assert effects.sparse_grad is False
    with sparse_instance_gradients(loss):
        assert effects.sparse_grad is True
    assert effects.sparse_grad is False
    with pytest.raises(RuntimeError), sparse_instance_gradients(loss):
        raise RuntimeError("boom")
    assert effects.sparse_grad is False


def test_clipping_sparse_and_dense_gradients_agree(data):
    est = _estimator(data)
    loss = est.loss_module(kl="closed_form")
    batch = est.batches(batch_size=3, seed=0).batch(torch.tensor([0, 2, 5]))
    norms = []
    for sparse in (False, True):
        optimizer = FitOptimizer(loss, lr=1e-2, lr_decay=1.0, sparse=sparse)
        optimizer.zero_grad()
        torch.manual_seed(0)
        context = sparse_instance_gradients(loss, enabled=sparse)
        with context, local_params():
            loss(batch).backward()
        norms.append(float(optimizer.clip_grad_norm(1.0)))
        clipped = torch.stack(
            [
                p.grad.coalesce().values().norm() if p.grad.is_sparse else p.grad.norm()
                for p in optimizer.params
                if p.grad is not None
            ]
        ).norm()
        assert float(clipped) == pytest.approx(1.0, rel=1e-4)  # the norm was far above 1
    assert norms[0] == pytest.approx(norms[1], rel=1e-5)
    assert norms[0] > 10.0


@pytest.mark.parametrize("bayesian_effects", [True, False])
def test_minibatch_closed_form_objective_is_unbiased_exactly(data, bayesian_effects):
    """Averaged over all C(P, B) batches, the P/B-scaled estimate equals the full objective.

    With z = mu (the encoder's variance is e^-60) and no draw of A, the closed-form loss is
    deterministic, so the identity holds to float rounding rather than to a Monte Carlo error.
    """
    est = _estimator(
        data, encoder=ConstantVarianceEncoder(data.y.shape[1], 2), bayesian_effects=bayesian_effects
    )
    loss = est.loss_module(kl="closed_form")
    batcher = est.batches(batch_size=2, seed=0)
    n = batcher.n_instances
    with torch.no_grad(), local_params():
        full = float(loss(batcher.batch(torch.arange(n))).double())
        values = [
            float(loss(batcher.batch(torch.tensor(subset))).double())
            for subset in itertools.combinations(range(n), 2)
        ]
    assert len(values) == 15
    average = sum(values) / len(values)
    assert average == pytest.approx(full, rel=1e-5)
    # Power: the batches differ, so a wrong scale (e.g. 1 instead of P/B) would show.
    assert max(values) - min(values) > 1e-3 * abs(full)
    assert sum(v / 3.0 for v in values) / len(values) != pytest.approx(full, rel=1e-2)


def test_fit_with_dense_and_sparse_updates(data):
    results = {}
    for sparse in (True, False):
        est = _estimator(data)
        est.fit(max_epochs=3, batch_size=2, validation=None, progress=False, sparse_updates=sparse)
        results[sparse] = [t.detach().clone() for t in instance_tables(est.pair)]
        assert all(torch.isfinite(t).all() for t in results[sparse])
    # Lazy Adam moves a row only in its batch, dense Adam on every step (momentum): they differ.
    assert not torch.equal(results[True][0], results[False][0])
    assert pyro.get_param_store().keys() == set()
