"""Exact and statistical checks of the sLMM-VAE group encoder and objective (spec §3).

* Precision-weighted pooling with the prior precision is the exact Gaussian posterior of eps_p
  in a linear-Gaussian model whose per-row likelihood of eps has diagonal precision; the
  reference is computed with dense D x D linear algebra, instance by instance.
* With a linear decoder and a Gaussian likelihood the sLMM ELBO has a closed form; Pyro's
  :class:`~pyro.infer.TraceMeanField_ELBO` estimate must average to it. Monte Carlo tolerances
  are four standard errors, estimated from R independent estimates of S vectorized particles.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd
import pyro
import pytest
import torch
from pyro import poutine
from pyro.infer import TraceMeanField_ELBO
from torch import nn

from pyro_lmmvae import LMMVAE
from pyro_lmmvae.data import Batch, InstanceBatcher, LongitudinalTensors
from pyro_lmmvae.design import Design, DesignMatrices
from pyro_lmmvae.guides import SLMMGuide, pool_mean, pool_precision, segment_sum
from pyro_lmmvae.models import OBS_SITE, OFFSET_SITE, LatentScale, PointEffects
from pyro_lmmvae.networks import GaussianEncoder
from pyro_lmmvae.pyro_module import local_params
from pyro_lmmvae.training.loss import ELBOLoss
from pyro_lmmvae.variants import VariantOptions, build_pair

F64 = torch.float64
N_SE = 4.0
SIGMA_Z = 1.3  # not 1, so that a missing sigma_z factor shows up


# --------------------------------------------------------------------------- helpers


def _to_double(batch: Batch) -> Batch:
    return dataclasses.replace(batch, x=batch.x.double(), w=batch.w.double(), y=batch.y.double())


def _raw_softplus(value: float) -> float:
    """Inverse softplus: the raw parameter whose softplus is ``value``."""
    return math.log(math.expm1(value))


def _rho_for(var: torch.Tensor) -> torch.Tensor:
    """Inverse of ``variance_from_rho``: log v = -8 + softplus(rho + 8)."""
    return torch.log(torch.expm1(torch.log(var) + 8.0)) - 8.0


def _interleaved_segments(counts: tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
    """Segment ids with the given counts, in a random (interleaved) order."""
    segments = torch.repeat_interleave(torch.arange(len(counts)), torch.tensor(counts))
    segments = segments[torch.randperm(len(segments), generator=generator)]
    assert not bool((segments[1:] >= segments[:-1]).all()), "segments must not be sorted"
    return segments


# --------------------------------------------------------------------------- 1. exact pooling

LG_LATENT, LG_OBS = 2, 5
LG_NOISE_VAR = 0.3  # r: y_i = C (eta_i + eps_p) + e_i, e_i ~ N(0, r I_D)
LG_C = (0.7, 1.9)  # c: C = Q diag(c)


class _LinearGaussian:
    """The linear-Gaussian model of test 1 and its matching linear encoder."""

    def __init__(self, seed: int) -> None:
        g = torch.Generator().manual_seed(seed)
        self.generator = g
        self.q, _ = torch.linalg.qr(torch.randn(LG_OBS, LG_LATENT, generator=g, dtype=F64))
        torch.testing.assert_close(self.q.T @ self.q, torch.eye(LG_LATENT, dtype=F64))
        self.c = torch.tensor(LG_C, dtype=F64)
        self.C = self.q * self.c  # Q diag(c), (D, L)
        self.r = LG_NOISE_VAR

    def sample(self, eta: torch.Tensor, segments: torch.Tensor, n_segments: int) -> torch.Tensor:
        """Rows y_i = C (eta_i + eps_p(i)) + e_i with eps_p ~ N(0, sigma_z^2 I)."""
        g = self.generator
        eps = SIGMA_Z * torch.randn(n_segments, LG_LATENT, generator=g, dtype=F64)
        noise = math.sqrt(self.r) * torch.randn(len(segments), LG_OBS, generator=g, dtype=F64)
        return (eta + eps[segments]) @ self.C.T + noise

    def encode(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """mu(y) = diag(1/c) Q^T y and the constant sigma = sqrt(r) / c."""
        mu = (y @ self.q) / self.c
        return mu, (math.sqrt(self.r) / self.c).expand_as(mu)

    def encoder_network(self) -> nn.Linear:
        """The same map as an ``nn.Linear`` with output [mu, log sigma^2] (2L features)."""
        net = nn.Linear(LG_OBS, 2 * LG_LATENT).double()
        with torch.no_grad():
            net.weight.zero_()
            net.weight[:LG_LATENT] = (self.q / self.c).T
            net.bias[:LG_LATENT] = 0.0
            net.bias[LG_LATENT:] = torch.log(self.r / self.c.square())
        return net

    def dense_posterior(
        self,
        y: torch.Tensor,
        eta: torch.Tensor,
        segments: torch.Tensor,
        n_segments: int,
        prior_precision: float,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Exact posterior (means (B, L), covariances (B, L, L)) of each eps_p, dense algebra."""
        noise_cov = self.r * torch.eye(LG_OBS, dtype=F64)  # R, full D x D
        noise_precision = torch.linalg.inv(noise_cov)
        ct_rinv = self.C.T @ noise_precision  # (L, D)
        means, covs = [], []
        for p in range(n_segments):
            rows = segments == p
            n_p = int(rows.sum())
            precision = prior_precision * torch.eye(LG_LATENT, dtype=F64) + n_p * ct_rinv @ self.C
            rhs = (ct_rinv @ (y[rows] - eta[rows] @ self.C.T).T).sum(-1)
            means.append(torch.linalg.solve(precision, rhs))
            covs.append(torch.linalg.inv(precision))
        return torch.stack(means), torch.stack(covs)


def _assert_posterior_equal(mean, scale, dense_mean, dense_cov):
    # The row likelihoods have diagonal precision C^T R^-1 C = diag(c^2) / r, so the exact
    # posterior is diagonal and the mean-field pooled Gaussian can equal it exactly.
    off_diagonal = dense_cov - torch.diag_embed(torch.diagonal(dense_cov, dim1=-2, dim2=-1))
    assert float(off_diagonal.abs().max()) < 1e-12
    torch.testing.assert_close(mean, dense_mean, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(
        scale.square(), torch.diagonal(dense_cov, dim1=-2, dim2=-1), rtol=1e-10, atol=1e-10
    )


def test_precision_pooling_is_exact_gaussian_posterior():
    """pool_precision with sigma_z^-2 equals the dense exact posterior of eps_p, per instance."""
    lg = _LinearGaussian(seed=10)
    g = lg.generator
    counts = (4, 1, 7, 2)
    segments = _interleaved_segments(counts, g)
    n, n_seg = len(segments), len(counts)
    eta = torch.randn(n, LG_LATENT, generator=g, dtype=F64)
    y = lg.sample(eta, segments, n_seg)
    mu, sigma = lg.encode(y)

    mean, scale = pool_precision(mu - eta, sigma, segments, n_seg, prior_precision=SIGMA_Z**-2)
    assert mean.shape == scale.shape == (n_seg, LG_LATENT)
    dense_mean, dense_cov = lg.dense_posterior(y, eta, segments, n_seg, SIGMA_Z**-2)
    _assert_posterior_equal(mean, scale, dense_mean, dense_cov)

    # Pooling is per instance: instances with different row counts get different variances,
    # and pooling all rows together would give a different mean for every instance.
    assert len(set(np.round(scale[:, 0].numpy(), 8).tolist())) == n_seg
    all_mean, _ = pool_precision(
        mu - eta, sigma, torch.zeros_like(segments), 1, prior_precision=SIGMA_Z**-2
    )
    assert float((mean - all_mean).abs().min()) > 1e-3

    # Without the prior precision: the flat-prior posterior (precision n_p diag(c^2) / r).
    mean0, scale0 = pool_precision(mu - eta, sigma, segments, n_seg)
    dense_mean0, dense_cov0 = lg.dense_posterior(y, eta, segments, n_seg, 0.0)
    _assert_posterior_equal(mean0, scale0, dense_mean0, dense_cov0)
    assert float((mean0 - mean).abs().max()) > 1e-3  # the prior term is not a no-op


def test_slmm_guide_offsets_equal_exact_posterior():
    """SLMMGuide.offsets (linear encoder, point effects) equals the dense exact posterior."""
    lg = _LinearGaussian(seed=11)
    g = lg.generator
    counts = (3, 1, 5, 2)
    n_inst = len(counts)
    instance = torch.repeat_interleave(torch.arange(n_inst), torch.tensor(counts))
    n = len(instance)
    t = torch.randn(n, generator=g, dtype=F64)
    x = torch.stack([torch.ones(n, dtype=F64), torch.randn(n, generator=g, dtype=F64)], 1)
    w = torch.stack([torch.ones(n, dtype=F64), t], 1)  # random intercept and slope
    fixed = torch.randn(LG_LATENT, 2, generator=g, dtype=F64)
    random = torch.randn(n_inst, LG_LATENT, 2, generator=g, dtype=F64)
    # eta_i = A_f x_i + u_p(i) w_i, row by row.
    eta = torch.stack([fixed @ x[i] + random[instance[i]] @ w[i] for i in range(n)])
    y = lg.sample(eta, instance, n_inst)

    matrices = DesignMatrices(fixed=x.numpy(), random=w.numpy(), group=instance.numpy())
    mask = np.ones(tuple(y.shape), dtype=bool)
    tensors = LongitudinalTensors(matrices, y.numpy(), mask, instance.numpy())
    perm = torch.randperm(n, generator=g)
    batch = tensors.rows(perm)  # all rows, shuffled: whole instances, interleaved local
    assert batch.whole_instances and batch.y.dtype == F64
    assert not bool((batch.local[1:] >= batch.local[:-1]).all())
    assert torch.equal(batch.instances[batch.local], instance[perm])

    effects = PointEffects(LG_LATENT, 2, 2, n_inst).double()
    latent_scale = LatentScale(SIGMA_Z).double()
    with torch.no_grad():
        effects.fixed_loc.copy_(fixed)
        effects.random_loc.copy_(random)
        latent_scale.raw.fill_(_raw_softplus(SIGMA_Z))
    encoder = GaussianEncoder(lg.encoder_network(), LG_LATENT)
    segments = batch.local
    eta_batch, y_batch = eta[perm], y[perm]

    for include_prior, prior_precision in ((True, SIGMA_Z**-2), (False, 0.0)):
        guide = SLMMGuide(None, effects, encoder, latent_scale, "precision", include_prior)
        with torch.no_grad(), local_params():
            mean, scale = guide.offsets(batch)
        dense_mean, dense_cov = lg.dense_posterior(
            y_batch, eta_batch, segments, n_inst, prior_precision
        )
        _assert_posterior_equal(mean, scale, dense_mean, dense_cov)


# --------------------------------------------------------------------------- 2. pooling rules


def test_pool_mean_and_segment_sum_match_loops():
    """pool_mean, pool_precision and segment_sum equal explicit per-instance Python loops."""
    g = torch.Generator().manual_seed(20)
    counts = (3, 1, 6, 2)
    segments = _interleaved_segments(counts, g)
    n, n_seg, latent = len(segments), len(counts), 3
    residual = torch.randn(n, latent, generator=g, dtype=F64)
    scale = 0.2 + torch.rand(n, latent, generator=g, dtype=F64)

    mean, s = pool_mean(residual, scale, segments, n_seg)
    mean_p, s_p = pool_precision(residual, scale, segments, n_seg, prior_precision=0.5)
    for p in range(n_seg):
        rows = [i for i in range(n) if int(segments[i]) == p]
        n_p = len(rows)
        assert n_p == counts[p]
        m_ref = sum(residual[i] for i in rows) / n_p
        var_ref = sum(scale[i] ** 2 for i in rows) / n_p**2
        torch.testing.assert_close(mean[p], m_ref, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(s[p].square(), var_ref, rtol=1e-12, atol=1e-12)
        # Precision weighting with general (row- and dim-varying) encoder variances.
        precision = sum(scale[i] ** -2 for i in rows) + 0.5
        m_prec = sum(scale[i] ** -2 * residual[i] for i in rows) / precision
        torch.testing.assert_close(mean_p[p], m_prec, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(s_p[p].square(), 1 / precision, rtol=1e-12, atol=1e-12)

    # segment_sum over trailing dims, with an extra empty segment that must stay zero.
    values = torch.randn(n, 2, 3, generator=g, dtype=F64)
    sums = segment_sum(values, segments, n_seg + 1)
    assert sums.shape == (n_seg + 1, 2, 3)
    for p in range(n_seg + 1):
        ref = torch.zeros(2, 3, dtype=F64)
        for i in range(n):
            if int(segments[i]) == p:
                ref = ref + values[i]
        torch.testing.assert_close(sums[p], ref, rtol=1e-12, atol=1e-12)
    assert torch.equal(sums[n_seg], torch.zeros(2, 3, dtype=F64))


# --------------------------------------------------------------------------- 3. sLMM ELBO

OBS_DIM, LATENT_DIM = 3, 2
NOISE_SD = 0.7
COUNTS = (2, 3, 1, 4)
BATCH_POSITIONS = (2, 0)  # B = 2 of P = 4 instances: scale 2
N_PARTICLES = 2000
N_REPEATS = 40


def _frame(counts: tuple[int, ...], seed: int) -> pd.DataFrame:
    """Covariates of instances with the given row counts (ids not in sorted row order)."""
    rng = np.random.default_rng(seed)
    labels = [f"p{p}" for p in range(len(counts))][::-1]
    ids = np.repeat(labels, counts)
    return pd.DataFrame({"id": ids, "x": rng.normal(size=len(ids))})


class _SLMMProblem:
    """A tiny sLMM-VAE with a linear encoder and decoder, in float64, with missing entries."""

    def __init__(self, formula: str, bayesian: bool, seed: int = 0) -> None:
        rng = np.random.default_rng(seed + 100)
        df = _frame(COUNTS, seed)
        self.design = Design(formula, df, instance="id", standardize=False)
        y = rng.normal(size=(len(df), OBS_DIM))
        mask = rng.random(size=y.shape) > 0.3
        mask[:, 0] = True  # every row keeps an observed entry
        assert (~mask).any()
        self.tensors = LongitudinalTensors.from_frame(self.design, df, y, mask)
        self.bayesian = bayesian
        g = torch.Generator().manual_seed(seed)
        with local_params():
            encoder = nn.Linear(OBS_DIM, 2 * LATENT_DIM)
            decoder = nn.Linear(LATENT_DIM, OBS_DIM)
            with torch.no_grad():
                encoder.weight.copy_(0.5 * torch.randn(encoder.weight.shape, generator=g))
                encoder.bias.copy_(torch.tensor([0.3, -0.4] + [0.5] * LATENT_DIM))
                decoder.weight.copy_(torch.randn(decoder.weight.shape, generator=g))
                decoder.bias.copy_(0.1 * torch.randn(decoder.bias.shape, generator=g))
            self.pair = build_pair(
                self.design,
                OBS_DIM,
                LATENT_DIM,
                VariantOptions(variant="slmm", bayesian_effects=bayesian),
                encoder=encoder,
                decoder=decoder,
                likelihood="gaussian",
                noise_scale=NOISE_SD,
                latent_scale=SIGMA_Z,
            )
        self.pair.double()
        est = self.estimates
        with torch.no_grad():
            self.pair.model.latent_scale.raw.fill_(_raw_softplus(SIGMA_Z))
            est.fixed_loc.copy_(torch.randn(est.fixed_loc.shape, generator=g))
            est.random_loc.copy_(0.8 * torch.randn(est.random_loc.shape, generator=g))
            if bayesian:
                for rho in (est.fixed_rho, est.random_rho):
                    rho.copy_(_rho_for(0.05 + 0.45 * torch.rand(rho.shape, generator=g)))
        self.batcher = InstanceBatcher(self.tensors, 2, shuffle=False)

    @property
    def model(self):
        return self.pair.model

    @property
    def guide(self):
        return self.pair.guide

    @property
    def estimates(self):
        """q(A) (Bayesian effects) or the point estimates of A."""
        return self.guide.effects if self.bayesian else self.model.effects

    def batch(self, positions) -> Batch:
        return _to_double(self.batcher.batch(torch.as_tensor(positions, dtype=torch.long)))

    def eta_moments(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and variance of eta_i under q(A) (variance 0 for point effects), row by row."""
        est = self.estimates
        fixed_var = est.fixed_var if self.bayesian else torch.zeros_like(est.fixed_loc)
        means, variances = [], []
        for i in range(batch.n_rows):
            p = int(batch.instances[batch.local[i]])
            x, w = batch.x[i], batch.w[i]
            mean = est.fixed_loc @ x
            var = fixed_var @ x.square()
            if est.n_random:
                random_var = (
                    torch.exp(-8.0 + nn.functional.softplus(est.random_rho[p] + 8.0))
                    if self.bayesian
                    else torch.zeros_like(est.random_loc[p])
                )
                mean = mean + est.random_loc[p] @ w
                var = var + random_var @ w.square()
            means.append(mean)
            variances.append(var)
        return torch.stack(means), torch.stack(variances)

    def closed_form_loss(self, batch: Batch, trace_term: bool = True, scale=None) -> float:
        """Negative ELBO of spec §3 in closed form (linear decoder, Gaussian likelihood).

        ``-(P/B) sum_p {sum_i E log p(y_i | eta_i + eps_p) - KL_p} + effect KLs``, with
        ``E log N(y | W z + b, s^2) = log N(y | W E z + b, s^2) - (W diag(Var z) W^T)_dd / 2s^2``
        over the observed entries d only.
        """
        scale = batch.scale if scale is None else scale
        with torch.no_grad(), local_params():
            m, s = self.guide.offsets(batch)
            eta_mean, eta_var = self.eta_moments(batch)
            W, b = self.model.decoder.weight, self.model.decoder.bias
            s_y = self.model.likelihood.scale
            sigma_z = self.model.latent_scale()
            z_mean = eta_mean + m[batch.local]
            z_var = eta_var + s.square()[batch.local]
            resid = batch.y - (z_mean @ W.T + b)
            log_n = -0.5 * torch.log(2 * math.pi * s_y**2) - 0.5 * resid.square() / s_y**2
            if trace_term:
                log_n = log_n - 0.5 * (z_var @ W.T.square()) / s_y**2
            expected_loglik = (log_n * batch.mask).sum()
            kl_eps = 0.5 * (
                (m.square() + s.square()) / sigma_z**2 - 1 - torch.log(s.square() / sigma_z**2)
            )
            loss = -scale * (expected_loglik - kl_eps.sum())
            if self.bayesian:
                loss = loss + self.effect_kls(batch, scale)
        return float(loss)

    def effect_kls(self, batch: Batch, scale: float) -> torch.Tensor:
        """KL(q(A_f) || N(0, 1)) + (P/B) sum_p KL(q(u_p) || N(0, 1)) of the batch's instances."""

        def kl(loc, var):
            return 0.5 * (loc.square() + var - 1 - torch.log(var)).sum()

        est = self.estimates
        total = kl(est.fixed_loc, est.fixed_var)
        if est.n_random:
            loc, var = est.random_moments(batch.instances)
            total = total + scale * kl(loc, var)
        return total


def _repeated_losses(problem: _SLMMProblem, batch: Batch) -> np.ndarray:
    """R independent Pyro estimates of the negative ELBO, each from S vectorized particles."""
    loss = ELBOLoss(
        problem.model, problem.guide, num_particles=N_PARTICLES, vectorize_particles=True
    )
    with torch.no_grad():
        return np.asarray([float(loss(batch)) for _ in range(N_REPEATS)])


def _check_elbo_average(problem: _SLMMProblem) -> None:
    batch = problem.batch(BATCH_POSITIONS)
    assert batch.scale == len(COUNTS) / len(BATCH_POSITIONS) == 2.0
    assert batch.whole_instances and not bool(batch.mask.all())
    values = _repeated_losses(problem, batch)
    mc = float(values.mean())
    se = float(values.std(ddof=1) / math.sqrt(len(values)))
    closed = problem.closed_form_loss(batch)
    assert abs(mc - closed) < N_SE * se, (mc, closed, se)
    # Power: dropping the variance term of E log p, or the P/B scale, is clearly rejected.
    no_trace = problem.closed_form_loss(batch, trace_term=False)
    unscaled = problem.closed_form_loss(batch, scale=1.0)
    assert abs(mc - no_trace) > 10 * N_SE * se, (mc, no_trace, se)
    assert abs(mc - unscaled) > 10 * N_SE * se, (mc, unscaled, se)


@pytest.mark.parametrize("formula", ["~ 1 + x", "~ 1 + x + (1 + x | id)"])
def test_slmm_elbo_matches_closed_form_point_effects(formula):
    """Pyro's sLMM negative ELBO (point effects, scale P/B, missing entries) averages to §3."""
    pyro.set_rng_seed(30)
    _check_elbo_average(_SLMMProblem(formula, bayesian=False, seed=3))


@pytest.mark.parametrize(
    "formula",
    [
        pytest.param("~ 1 + x"),
        pytest.param("~ 1 + x + (1 + x | id)"),
    ],
)
def test_slmm_elbo_matches_closed_form_bayesian_effects(formula):
    """With q(A) (and random slopes), the sLMM estimate averages to §3 plus the effect KLs."""
    pyro.set_rng_seed(31)
    _check_elbo_average(_SLMMProblem(formula, bayesian=True, seed=4))


# --------------------------------------------------------------------------- 4. whole instances


def test_split_instance_is_rejected():
    """A batch holding only some rows of an instance is rejected by the sLMM guide and objective."""
    problem = _SLMMProblem("~ 1 + x", bayesian=False, seed=5)
    tensors = problem.tensors
    instance = tensors.instance
    n = len(tensors)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(5))
    assert tensors.rows(perm).whole_instances
    assert tensors.full_batch().whole_instances
    # All rows of two instances, in any order, are still whole instances.
    two = perm[torch.isin(instance[perm], torch.tensor([0, 3]))]
    assert tensors.rows(two).whole_instances and len(tensors.rows(two).instances) == 2

    big = int(torch.argmax(torch.bincount(instance)))
    rows_of_big = torch.nonzero(instance == big).flatten()
    assert len(rows_of_big) >= 2
    split = torch.cat([torch.nonzero(instance != big).flatten(), rows_of_big[:-1]])
    batch = _to_double(tensors.rows(split))
    assert not batch.whole_instances
    with pytest.raises(ValueError, match="whole instances"), local_params():
        problem.guide.offsets(batch)
    with pytest.raises(ValueError, match="whole instances"):
        problem.pair.validation_objective(batch, torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="whole instances"):
        ELBOLoss(problem.model, problem.guide)(batch)

    # The same through the public API.
    df = _frame(COUNTS, seed=5)
    y = np.random.default_rng(5).normal(size=(len(df), OBS_DIM))
    m = LMMVAE("~ 1 + x", data=df, y=y, instance="id", variant="slmm", latent_dim=2, seed=0)
    api_tensors = m.tensors()
    api_split = torch.nonzero(api_tensors.instance != big).flatten()
    api_split = torch.cat([api_split, torch.nonzero(api_tensors.instance == big).flatten()[1:]])
    api_batch = api_tensors.rows(api_split)
    assert not api_batch.whole_instances
    with pytest.raises(ValueError, match="whole instances"):
        m.pair.validation_objective(api_batch)
    value = m.pair.validation_objective(api_tensors.full_batch())
    assert torch.isfinite(value)


# --------------------------------------------------------------------------- 5. particles


@pytest.mark.parametrize(
    ("formula", "bayesian"),
    [
        ("~ 1 + x", False),
        ("~ 1 + x + (1 + x | id)", False),
        pytest.param("~ 1 + x", True),
        pytest.param("~ 1 + x + (1 + x | id)", True),
    ],
)
def test_vectorized_particles(formula, bayesian):
    """Vectorized particles give finite losses and gradients and per-particle site shapes."""
    pyro.set_rng_seed(40)
    problem = _SLMMProblem(formula, bayesian=bayesian, seed=6)
    batch = problem.batch(BATCH_POSITIONS)
    n_particles, n_inst = 4, len(BATCH_POSITIONS)
    elbo = TraceMeanField_ELBO(
        num_particles=n_particles, vectorize_particles=True, max_plate_nesting=2
    )
    with local_params():
        loss = elbo.differentiable_loss(problem.model, problem.guide, batch)
        assert loss.dim() == 0 and torch.isfinite(loss)
        params = [p for p in problem.pair.parameters() if p.requires_grad]
        grads = torch.autograd.grad(loss, params, allow_unused=True)
        assert any(gr is not None for gr in grads)
        assert all(torch.isfinite(gr).all() for gr in grads if gr is not None)
        assert math.isfinite(elbo.loss(problem.model, problem.guide, batch))

        # Per-particle shapes, with the particle plate left of the model's two plates.
        with pyro.plate("particles", n_particles, dim=-3):
            guide_trace = poutine.trace(problem.guide).get_trace(batch)
            model_trace = poutine.trace(poutine.replay(problem.model, trace=guide_trace)).get_trace(
                batch
            )
    assert guide_trace.nodes[OFFSET_SITE]["value"].shape == (n_particles, n_inst, LATENT_DIM)
    model_trace.compute_log_prob()
    obs = model_trace.nodes[OBS_SITE]
    assert obs["log_prob"].shape == (n_particles, 1, batch.n_rows)
    assert torch.isfinite(obs["log_prob"]).all()
    # Particles differ (each has its own eps_p), rows of one instance share it.
    eps = guide_trace.nodes[OFFSET_SITE]["value"].detach()
    assert float((eps[0] - eps[1]).abs().min()) > 0
