"""Statistical checks of the oLMM-VAE objective against its closed forms (spec §1-2).

Pyro's :class:`~pyro.infer.TraceMeanField_ELBO` uses the analytic KL of every Normal-Normal pair
given one guide draw of the effects A. Averaged over q(A) it must equal the deterministic
expected KL of :mod:`pyro_lmmvae.objectives`. All Monte Carlo comparisons use a tolerance of
four standard errors, estimated from R independent batch means of vectorized particles.
"""

from __future__ import annotations

import dataclasses
import itertools
import math

import numpy as np
import pandas as pd
import pyro
import torch
from formulae import design_matrices
from pyro import poutine
from pyro.infer import SVI, TraceMeanField_ELBO
from torch import nn

from pyro_lmmvae import LMMVAE
from pyro_lmmvae.data import Batch, InstanceBatcher, LongitudinalTensors
from pyro_lmmvae.datasets import make_synthetic
from pyro_lmmvae.design import Design
from pyro_lmmvae.guides import MeanFieldEffects, OLMMGuide
from pyro_lmmvae.models import GaussianLikelihood, MixedEffects, OLMMModel, linear_predictor
from pyro_lmmvae.networks import GaussianEncoder
from pyro_lmmvae.objectives import expected_latent_kl, normal_kl
from pyro_lmmvae.pyro_module import local_params
from pyro_lmmvae.training.loss import ELBOLoss

N_SE = 4.0
FORMULA = "~ 1 + x + g + (1 + x | id)"  # Q_f = 3, k = 2
LATENT_DIM = 2
OBS_DIM = 3
SIGMA_Z = 1.3  # not 1, so that a missing sigma_z factor shows up


# --------------------------------------------------------------------------- helpers


def _frame(counts: tuple[int, ...], seed: int) -> pd.DataFrame:
    """Covariates of instances with the given row counts (ids not in sorted row order)."""
    rng = np.random.default_rng(seed)
    labels = [f"p{p}" for p in range(len(counts))][::-1]
    ids = np.repeat(labels, counts)
    n = len(ids)
    return pd.DataFrame({"id": ids, "x": rng.normal(size=n), "g": rng.integers(0, 2, size=n)})


def _to_double(batch: Batch) -> Batch:
    return dataclasses.replace(batch, x=batch.x.double(), w=batch.w.double(), y=batch.y.double())


def _rho_for(var: torch.Tensor) -> torch.Tensor:
    """Inverse of ``variance_from_rho``: log v = -8 + softplus(rho + 8)."""
    return torch.log(torch.expm1(torch.log(var) + 8.0)) - 8.0


class _Problem:
    """A tiny oLMM with fixed networks and non-trivial variational effect parameters."""

    def __init__(self, counts: tuple[int, ...], seed: int = 0) -> None:
        rng = np.random.default_rng(seed + 100)
        df = _frame(counts, seed)
        self.design = Design(FORMULA, df)
        y = rng.normal(size=(len(df), OBS_DIM))
        mask = rng.random(size=y.shape) > 0.25
        mask[:, 0] = True  # every row keeps an observed entry
        self.tensors = LongitudinalTensors.from_frame(self.design, df, y, mask)
        self.n_instances = len(counts)
        d = self.design
        g = torch.Generator().manual_seed(seed)
        with local_params():
            encoder = nn.Linear(OBS_DIM, 2 * LATENT_DIM)
            decoder = nn.Linear(LATENT_DIM, OBS_DIM)
            with torch.no_grad():
                encoder.weight.copy_(0.5 * torch.randn(encoder.weight.shape, generator=g))
                encoder.bias.copy_(torch.tensor([0.3, -0.4] + [-1.0] * LATENT_DIM))
                decoder.weight.copy_(torch.randn(decoder.weight.shape, generator=g))
                decoder.bias.copy_(0.1 * torch.randn(decoder.bias.shape, generator=g))
            self.model = OLMMModel(
                MixedEffects(LATENT_DIM, d.n_fixed, d.n_random, d.n_groups),
                decoder,
                GaussianLikelihood(OBS_DIM, scale=0.7),
            )
            with torch.no_grad():
                self.model.latent_scale.raw.fill_(math.log(math.expm1(SIGMA_Z)))
            q = MeanFieldEffects(LATENT_DIM, d.n_fixed, d.n_random, d.n_groups)
            with torch.no_grad():
                q.fixed_loc.copy_(torch.randn(q.fixed_loc.shape, generator=g))
                q.fixed_rho.copy_(
                    _rho_for(0.05 + 0.45 * torch.rand(q.fixed_rho.shape, generator=g))
                )
                q.random_loc.copy_(0.8 * torch.randn(q.random_loc.shape, generator=g))
                q.random_rho.copy_(
                    _rho_for(0.05 + 0.45 * torch.rand(q.random_rho.shape, generator=g))
                )
            self.guide = OLMMGuide(q, GaussianEncoder(encoder, LATENT_DIM))
        self.model.double()
        self.guide.double()
        self.batcher = InstanceBatcher(self.tensors, self.n_instances, shuffle=False)

    @property
    def q(self) -> MeanFieldEffects:
        return self.guide.effects

    def batch(self, positions) -> Batch:
        return _to_double(self.batcher.batch(torch.as_tensor(positions, dtype=torch.long)))

    def full_batch(self) -> Batch:
        return self.batch(range(self.n_instances))

    def effect_kls(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """Analytic KL(q(A_f)||p) (scale 1) and scale * sum_p KL(q(u_p)||p) of the batch."""
        kl_fixed = normal_kl(self.q.fixed_loc, self.q.fixed_var, 1.0).sum()
        loc, var = self.q.random_moments(batch.instances)
        return kl_fixed, batch.scale * normal_kl(loc, var, 1.0).sum()

    def closed_form_kl(self, batch: Batch, with_eta_var: bool = True) -> torch.Tensor:
        """E_q(A)[sum_i KL_z,i] + KL(q(A_f)||p) + sum_p KL(q(u_p)||p), for a full batch."""
        loc, scale = self.guide.encoder(batch.encoder_input, batch.mask)
        eta_mean, eta_var = self.q.predictor_moments(batch)
        if not with_eta_var:
            eta_var = torch.zeros_like(eta_var)
        sigma_z = self.model.latent_scale()
        latent = expected_latent_kl(loc, scale, eta_mean, eta_var, sigma_z).sum()
        kl_fixed, kl_random = self.effect_kls(batch)
        return batch.scale * latent + kl_fixed + kl_random


def _batch_means(loss: nn.Module, batch: Batch, n_batches: int, params=()) -> tuple:
    """Loss values (and gradients w.r.t. ``params``) of ``n_batches`` independent estimates."""
    values, grads = [], []
    with local_params():
        for _ in range(n_batches):
            value = loss(batch)
            if params:
                grads.append([g.detach().clone() for g in torch.autograd.grad(value, params)])
            values.append(float(value.detach()))
    return np.asarray(values), grads


def _mean_se(samples: np.ndarray) -> tuple[float, float]:
    return float(samples.mean()), float(samples.std(ddof=1) / math.sqrt(len(samples)))


# --------------------------------------------------------------------------- expected KL

N_PARTICLES = 4000
N_BATCHES = 50


def _kl_only_loss(problem: _Problem, n_particles: int = N_PARTICLES) -> ELBOLoss:
    """Pyro's negative ELBO with the observation site hidden: only KL terms remain."""
    blocked = poutine.block(problem.model, hide=["y"])
    return ELBOLoss(blocked, problem.guide, num_particles=n_particles, vectorize_particles=True)


def test_expected_kl_matches_pyro_average():
    pyro.set_rng_seed(0)
    problem = _Problem(counts=(2, 3, 4))
    batch = problem.full_batch()
    assert batch.scale == 1.0
    values, _ = _batch_means(_kl_only_loss(problem), batch, N_BATCHES)
    mc, se = _mean_se(values)
    with torch.no_grad(), local_params():
        closed = float(problem.closed_form_kl(batch))
        no_var = float(problem.closed_form_kl(batch, with_eta_var=False))
    assert abs(mc - closed) < N_SE * se, (mc, closed, se)
    # Power: the variance term V(x̄ ⊙ x̄) of the expected KL is far outside the tolerance.
    assert abs(mc - no_var) > 10 * N_SE * se, (mc, no_var, se)


def test_expected_kl_gradients_match():
    pyro.set_rng_seed(1)
    problem = _Problem(counts=(2, 3, 4))
    batch = problem.full_batch()
    q = problem.q
    params = [q.fixed_loc, q.fixed_rho, q.random_loc, q.random_rho]
    names = ["fixed_loc", "fixed_rho", "random_loc", "random_rho"]
    _, grads = _batch_means(_kl_only_loss(problem), batch, N_BATCHES, params)
    with local_params():
        closed = torch.autograd.grad(problem.closed_form_kl(batch), params)
        closed_no_var = torch.autograd.grad(
            problem.closed_form_kl(batch, with_eta_var=False), params
        )
    for i, name in enumerate(names):
        draws = torch.stack([g[i] for g in grads])  # (R, *shape)
        mean = draws.mean(0)
        se = draws.std(0, unbiased=True) / math.sqrt(len(grads))
        err = (mean - closed[i]).abs()
        assert torch.all(err < N_SE * se + 1e-6), (name, mean, closed[i], se)
        if name.endswith("rho"):
            # Power: without the eta variance the V gradients are clearly rejected.
            z = (mean - closed_no_var[i]).abs() / (se + 1e-12)
            assert z.max() > 10 * N_SE, (name, z)


# --------------------------------------------------------------------------- minibatching


def test_minibatch_estimator_unbiased():
    pyro.set_rng_seed(2)
    counts = (1, 2, 3, 5)
    problem = _Problem(counts=counts, seed=3)
    loss = ELBOLoss(
        problem.model, problem.guide, num_particles=N_PARTICLES, vectorize_particles=True
    )
    full = problem.full_batch()
    assert full.scale == 1.0 and full.n_rows == sum(counts)
    full_values, _ = _batch_means(loss, full, N_BATCHES)
    full_mean, full_se = _mean_se(full_values)

    subset_means, subset_vars = [], []
    subsets = list(itertools.combinations(range(len(counts)), 2))
    assert len(subsets) == 6
    for subset in subsets:
        batch = problem.batch(subset)
        assert batch.scale == 2.0
        assert batch.n_rows == int(torch.isin(problem.tensors.instance, batch.instances).sum())
        values, _ = _batch_means(loss, batch, N_BATCHES)
        mean, se = _mean_se(values)
        subset_means.append(mean)
        subset_vars.append(se**2)
    average = float(np.mean(subset_means))
    average_se = math.sqrt(sum(subset_vars)) / len(subsets)
    se = math.sqrt(average_se**2 + full_se**2)
    assert abs(average - full_mean) < N_SE * se, (average, full_mean, se)
    # Power: scaling KL(q(A_f)||p) by P/B (a plausible bug) would bias the average by this much.
    with torch.no_grad(), local_params():
        kl_fixed = float(problem.effect_kls(full)[0])
    assert kl_fixed > 5 * N_SE * se, (kl_fixed, se)


# --------------------------------------------------------------------------- gather form


def test_gather_equals_dense_one_hot():
    rng = np.random.default_rng(4)
    counts = (3, 1, 4, 2)
    df = _frame(counts, seed=4)
    design = Design("~ 1 + x + (1 + x | id)", df)
    matrices = design.transform(df)
    tensors = LongitudinalTensors.from_frame(design, df, rng.normal(size=(len(df), 2)), None)
    n_groups, k, L = design.n_groups, design.n_random, 3
    assert (n_groups, k, design.n_fixed) == (4, 2, 2)

    g = torch.Generator().manual_seed(4)
    fixed = torch.randn(L, design.n_fixed, generator=g, dtype=torch.float64)
    random = torch.randn(n_groups, L, k, generator=g, dtype=torch.float64)
    dense = design.dense_random_design(matrices)
    assert dense.shape == (len(df), n_groups * k)
    x_bar = torch.from_numpy(np.concatenate([matrices.fixed, dense], 1)).double()
    a_random = random.permute(1, 0, 2).reshape(L, n_groups * k)  # column p * k + j
    a_full = torch.cat([fixed, a_random], 1)
    expected = x_bar @ a_full.T

    # Full batch, a shuffled subset of rows, and a batch of whole instances.
    perm = torch.from_numpy(rng.permutation(len(df)))
    subset_rows = perm[torch.isin(tensors.instance[perm], torch.tensor([0, 2]))]
    batcher = InstanceBatcher(tensors, 2, shuffle=False)
    cases = [
        (tensors.full_batch(), torch.arange(len(df))),
        (tensors.rows(subset_rows, n_groups), subset_rows),
    ]
    positions = torch.tensor([3, 1])
    inst_batch = batcher.batch(positions)
    inst_rows = torch.cat([torch.nonzero(tensors.instance == p).flatten() for p in positions])
    cases.append((inst_batch, inst_rows))
    for batch, rows in cases:
        batch = _to_double(batch)
        eta = linear_predictor(fixed, random[batch.instances], batch)
        torch.testing.assert_close(eta, expected[rows], rtol=1e-10, atol=1e-10)

    # Leading particle dims broadcast: A_f (S, 1, L, Q_f), u (S, B, L, k) -> (S, 1, n, L).
    batch = _to_double(inst_batch)
    fixed_s = torch.randn(5, 1, L, design.n_fixed, generator=g, dtype=torch.float64)
    random_s = torch.randn(5, n_groups, L, k, generator=g, dtype=torch.float64)
    eta_s = linear_predictor(fixed_s, random_s[:, batch.instances], batch)
    assert eta_s.shape == (5, 1, batch.n_rows, L)
    for s in range(5):
        ref = linear_predictor(fixed_s[s, 0], random_s[s, batch.instances], batch)
        torch.testing.assert_close(eta_s[s, 0], ref, rtol=1e-12, atol=1e-12)

    # The library's dense design equals formulae's group matrix, reordered from term-major.
    prepared = df.copy()
    mean, std = design.standardization["x|id"]  # the random slope column, z-scored
    prepared["x"] = (prepared["x"] - mean) / std
    group = design_matrices("1 + x + (1 + x | id)", prepared).group
    reference = np.asarray(group)
    level_pos = {str(level): p for p, level in enumerate(design.groups)}
    reordered = np.zeros_like(dense, dtype=float)
    for j, term in enumerate(["1|id", "x|id"]):
        cols = range(*group.slices[term].indices(reference.shape[1]))
        for col, level in zip(cols, group.terms[term].groups, strict=True):
            reordered[:, level_pos[str(level)] * k + j] = reference[:, col]
    np.testing.assert_allclose(dense, reordered, rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------- SVI and loss module


def _loss_mean_se(m: LMMVAE, batch: Batch, seed: int, n: int = 10) -> tuple[float, float]:
    loss = m.loss_module(num_particles=20)
    with torch.random.fork_rng(), torch.no_grad():
        torch.manual_seed(seed)
        values = np.asarray([float(loss(batch)) for _ in range(n)])
    return _mean_se(values)


def _svi_epoch(svi: SVI, batcher: InstanceBatcher) -> float:
    return sum(svi.step(batch) / batch.scale for batch in batcher)


def test_svi_path_and_loss_module_agree(make_lmmvae):
    pyro.set_rng_seed(5)
    pyro.clear_param_store()
    m = make_lmmvae(make_synthetic(n_instances=20, seed=0).split("train"))
    full = m.tensors().full_batch()
    before, before_se = _loss_mean_se(m, full, seed=0)
    initial = {name: p.detach().clone() for name, p in m.pair.named_parameters()}

    svi = SVI(
        m.model, m.guide, pyro.optim.Adam({"lr": 1e-2}), TraceMeanField_ELBO(max_plate_nesting=2)
    )
    batcher = m.batches(batch_size=5, seed=0)
    epoch_losses = [_svi_epoch(svi, batcher) for _ in range(8)]
    assert all(math.isfinite(v) for v in epoch_losses)
    after, after_se = _loss_mean_se(m, full, seed=0)
    se = math.sqrt(before_se**2 + after_se**2)
    assert after < before - N_SE * se, (before, after, se)
    assert epoch_losses[-1] < epoch_losses[0], epoch_losses
    # SVI registered the parameters in the global store and trained the modules' own tensors.
    store = pyro.get_param_store()
    assert len(store.keys()) > 0
    changed = [n for n, p in m.pair.named_parameters() if not torch.equal(p.detach(), initial[n])]
    assert "guide.effects.fixed_loc" in changed and "model.decoder.0.weight" in changed, changed

    # The torch-optimizer path: a finite scalar whose gradient reaches every parameter.
    pyro.clear_param_store()
    loss = m.loss_module()
    params = dict(m.pair.named_parameters())
    assert {id(p) for p in loss.parameters()} == {id(p) for p in params.values()}
    value = loss(full)
    assert value.dim() == 0 and torch.isfinite(value)
    value.backward()
    for name, p in params.items():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name
    assert len(pyro.get_param_store().keys()) == 0

    # The library's own fit leaves the global param store alone.
    pyro.clear_param_store()
    m.fit(max_epochs=2, batch_size=8, validation=None, progress=False)
    assert len(pyro.get_param_store().keys()) == 0
    assert all(math.isfinite(v) for v in m.history.train_loss)
