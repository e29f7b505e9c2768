"""The GSNN objective (spec §4): no latent KL, the prior's expected log-likelihood, local
reparameterisation, and the errors for what a GSNN-trained model cannot give.

Everything is float64 with fixed seeds. Monte Carlo comparisons use a tolerance of four
combined standard errors, estimated from the samples themselves. Reference values are computed
here with torch from the parameters (own draws, own Normal log-densities, own closed-form KLs);
only the networks themselves (a given function g) are shared with the library.
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
from pyro.poutine.util import site_is_subsample
from torch import nn
from torch.distributions import Normal, kl_divergence

from pyro_lmmvae import LMMVAE
from pyro_lmmvae.data import Batch, InstanceBatcher, LongitudinalTensors
from pyro_lmmvae.datasets import make_synthetic
from pyro_lmmvae.design import Design
from pyro_lmmvae.inference import GSNN_LIMITS, GSNNUnavailableError, VariationalPair
from pyro_lmmvae.pyro_module import local_params
from pyro_lmmvae.training.loss import ELBOLoss, LocalReparamGSNNLoss
from pyro_lmmvae.variants import VariantOptions, build_pair

N_SE = 4.0
LATENT_DIM = 2
OBS_DIM = 3
HIDDEN = 8
NOISE = 0.7  # fixed Gaussian observation noise sigma_y
SIGMA_Z = 1.3  # not 1, so that a missing sigma_z factor shows up
OLMM_FORMULA = "~ 1 + x + g + (1 + x | id)"  # Q_f = 3, k = 2: q(A_f) and q(u_p)
SLMM_FORMULA = "~ 1 + x + g + (1 | id)"  # the GSNN per-instance intercept (point estimate)


# --------------------------------------------------------------------------- helpers


def _rho_for(var: torch.Tensor) -> torch.Tensor:
    """Inverse of spec §2's ``log v = -8 + softplus(rho + 8)``."""
    return torch.log(torch.expm1(torch.log(var) + 8.0)) - 8.0


def _to_double(batch: Batch) -> Batch:
    return dataclasses.replace(batch, x=batch.x.double(), w=batch.w.double(), y=batch.y.double())


def _mean_se(samples: np.ndarray) -> tuple[float, float]:
    return float(samples.mean()), float(samples.std(ddof=1) / math.sqrt(len(samples)))


def _var_se(samples: np.ndarray) -> tuple[float, float]:
    """Sample variance and its standard error, ``sd((x - mean)^2) / sqrt(R)``."""
    sq = (samples - samples.mean()) ** 2
    return float(samples.var(ddof=1)), float(sq.std(ddof=1) / math.sqrt(len(samples)))


class _Problem:
    """A tiny GSNN pair with fixed networks and known, non-trivial effect parameters.

    The attributes ``fixed_loc``, ``fixed_var``, ``random_loc``, ``random_var`` hold the
    parameters as set here, so reference computations never go through the library's
    parameterisation. The decoder is a tanh MLP; with ``positive`` it is linear with positive
    weights and the covariates are non-negative (see the local-reparameterisation test).
    """

    def __init__(
        self,
        variant: str,
        bayesian: bool,
        counts: tuple[int, ...] = (2, 3, 4, 3),
        seed: int = 0,
        var_range: tuple[float, float] = (0.05, 0.5),
        local_reparam: bool = False,
        positive: bool = False,
    ) -> None:
        rng = np.random.default_rng(seed + 100)
        labels = [f"p{p}" for p in range(len(counts))]
        ids = np.repeat(labels, counts)
        n = len(ids)
        x = rng.uniform(size=n) if positive else rng.normal(size=n)
        df = pd.DataFrame({"id": ids, "x": x, "g": rng.integers(0, 2, size=n)})
        formula = OLMM_FORMULA if variant == "olmm" else SLMM_FORMULA
        self.design = Design(formula, df, standardize=False)
        y = rng.normal(size=(n, OBS_DIM))
        mask = rng.random(size=y.shape) > 0.25
        mask[:, 0] = True
        self.tensors = LongitudinalTensors.from_frame(self.design, df, y, mask)
        self.n_instances = len(counts)
        g = torch.Generator().manual_seed(seed)
        with local_params():
            if positive:
                self.decoder = nn.Sequential(nn.Linear(LATENT_DIM, OBS_DIM))
            else:
                self.decoder = nn.Sequential(
                    nn.Linear(LATENT_DIM, HIDDEN), nn.Tanh(), nn.Linear(HIDDEN, OBS_DIM)
                )
        options = VariantOptions(
            variant=variant,
            objective="gsnn",
            bayesian_effects=bayesian,
            local_reparam=local_reparam,
        )
        self.pair: VariationalPair = build_pair(
            self.design,
            OBS_DIM,
            LATENT_DIM,
            options,
            decoder=self.decoder,
            noise_scale=NOISE,
            latent_scale=SIGMA_Z,
        )
        self.pair.double()
        est = self.pair.effect_estimates
        lo, hi = var_range
        with torch.no_grad():
            for layer in self.decoder[::2]:
                weight = torch.randn(layer.weight.shape, generator=g, dtype=torch.float64)
                layer.weight.copy_(weight.abs() if positive else weight)
                layer.bias.copy_(
                    0.3 * torch.randn(layer.bias.shape, generator=g, dtype=torch.float64)
                )
            self.fixed_loc = torch.randn(est.fixed_loc.shape, generator=g, dtype=torch.float64)
            self.random_loc = 0.8 * torch.randn(
                est.random_loc.shape, generator=g, dtype=torch.float64
            )
            est.fixed_loc.copy_(self.fixed_loc)
            est.random_loc.copy_(self.random_loc)
            if bayesian:
                shape_f, shape_r = est.fixed_rho.shape, est.random_rho.shape
                u_f = torch.rand(shape_f, generator=g, dtype=torch.float64)
                u_r = torch.rand(shape_r, generator=g, dtype=torch.float64)
                self.fixed_var = lo + (hi - lo) * u_f
                self.random_var = lo + (hi - lo) * u_r
                est.fixed_rho.copy_(_rho_for(self.fixed_var))
                est.random_rho.copy_(_rho_for(self.random_var))
        self.batcher = InstanceBatcher(self.tensors, self.n_instances, shuffle=False)

    def batch(self, positions) -> Batch:
        return _to_double(self.batcher.batch(torch.as_tensor(positions, dtype=torch.long)))

    def neg_loglik(self, z: torch.Tensor, batch: Batch) -> torch.Tensor:
        """``-(P/B) sum_i log p(y_i | z_i)`` over observed entries; z (..., n, L) -> (...)."""
        log_p = Normal(self.decoder(z), NOISE).log_prob(batch.y) * batch.mask
        return -batch.scale * log_p.sum((-1, -2))

    def effect_kls(self, batch: Batch) -> torch.Tensor:
        """KL(q(A_f)||N(0,1)) + (P/B) sum_{p in batch} KL(q(u_p)||N(0,1)), via torch."""
        prior = Normal(0.0, 1.0)
        kl_f = kl_divergence(Normal(self.fixed_loc, self.fixed_var.sqrt()), prior).sum()
        ids = batch.instances
        q_u = Normal(self.random_loc[ids], self.random_var[ids].sqrt())
        return kl_f + batch.scale * kl_divergence(q_u, prior).sum()

    @staticmethod
    def eta(fixed: torch.Tensor, random: torch.Tensor, batch: Batch) -> torch.Tensor:
        """``A_f x_i + u_p(i) w_i`` for A_f (L, Q_f) and the batch's u (B, L, k), (n, L)."""
        u_rows = random[batch.local]  # (n, L, k)
        return batch.x @ fixed.T + torch.einsum("nlk,nk->nl", u_rows, batch.w)

    def point_eta(self, batch: Batch) -> torch.Tensor:
        """``eta`` at the point estimates (or the means M of q(A)), (n, L)."""
        return self.eta(self.fixed_loc, self.random_loc[batch.instances], batch)


def _loss_and_traces(problem: _Problem, batch: Batch, seed: int):
    """One-particle ELBOLoss and the guide/model traces of the same draws (same seed)."""
    loss = ELBOLoss(problem.pair.model, problem.pair.guide)
    pyro.set_rng_seed(seed)
    with torch.no_grad():
        value = loss(batch)
    pyro.set_rng_seed(seed)
    with torch.no_grad(), local_params():
        guide_tr = poutine.trace(problem.pair.guide).get_trace(batch)
        replayed = poutine.replay(problem.pair.model, trace=guide_tr)
        model_tr = poutine.trace(replayed).get_trace(batch)
    return value, guide_tr, model_tr


def _sample_sites(trace) -> dict:
    """Sample sites of a trace, without the plates' subsample sites."""
    return {
        name: s
        for name, s in trace.nodes.items()
        if s["type"] == "sample" and not site_is_subsample(s)
    }


def _latent_names(sites: dict) -> set[str]:
    return {name for name, s in sites.items() if not s["is_observed"]}


def _loss_values(loss: nn.Module, batch: Batch, n_calls: int, seed: int) -> np.ndarray:
    pyro.set_rng_seed(seed)
    with torch.no_grad():
        return np.asarray([float(loss(batch)) for _ in range(n_calls)])


# --------------------------------------------------------------------------- 1. no latent KL


@pytest.mark.parametrize(
    ("variant", "bayesian"),
    [
        ("olmm", True),
        ("slmm", False),
        pytest.param(
            "slmm",
            True,
        ),
    ],
)
def test_gsnn_latent_kl_is_zero(variant, bayesian):
    """The GSNN loss is exactly -(P/B) sum log p(y|z) plus the closed-form effect KLs."""
    problem = _Problem(variant, bayesian)
    batch = problem.batch([1, 3])
    assert batch.scale == 2.0  # a subsampled instance plate: P/B must enter
    for seed in range(3):
        value, guide_tr, model_tr = _loss_and_traces(problem, batch, seed)
        guide_sites, model_sites = _sample_sites(guide_tr), _sample_sites(model_tr)
        effect_sites = {"fixed_effects", "random_effects"} if bayesian else set()
        # The guide holds the effects alone: no z, no eps.
        assert not {"z", "eps"} & set(guide_sites), sorted(guide_sites)
        assert set(guide_sites) == _latent_names(guide_sites) == effect_sites, guide_sites
        # The model's latent sites are the effects; z is recorded, y observed; nothing else.
        assert _latent_names(model_sites) == effect_sites, sorted(model_sites)
        assert set(model_sites) - effect_sites == {"z", "y"}, sorted(model_sites)
        z_site = model_sites["z"]
        assert z_site["is_observed"] and z_site["infer"].get("_deterministic") is True
        z = z_site["value"]
        assert z.shape == (batch.n_rows, LATENT_DIM)
        assert float(z_site["fn"].log_prob(z).abs().sum()) == 0.0
        assert model_sites["y"]["scale"] == batch.scale
        with torch.no_grad():
            expected = problem.neg_loglik(z, batch)
            if bayesian:  # the model reuses the guide's draws of A
                for name in effect_sites:
                    assert torch.equal(model_sites[name]["value"], guide_sites[name]["value"])
                fixed = guide_sites["fixed_effects"]["value"]
                eta = problem.eta(fixed, guide_sites["random_effects"]["value"], batch)
                expected = expected + problem.effect_kls(batch)
            else:
                eta = problem.point_eta(batch)
        if variant == "slmm":  # one offset per instance, shared by its rows: z_i - eta_i
            offsets = z - eta
            assert torch.all(batch.local[1:] >= batch.local[:-1])  # rows grouped by instance
            first_row = torch.searchsorted(batch.local, batch.local)
            torch.testing.assert_close(offsets, offsets[first_row], rtol=0, atol=1e-12)
            assert float(offsets.std(0).min()) > 0  # instances do get different offsets
        assert float(value) == pytest.approx(float(expected), rel=1e-6), (seed, value, expected)


# --------------------------------------------------------------------------- 2. prior expectation


def test_gsnn_slmm_loss_is_prior_expected_loglik():
    """sLMM (point effects): E[loss] = E_{eps_p ~ N(0, sz^2)} -(P/B) sum log p(y|eta + eps)."""
    problem = _Problem("slmm", bayesian=False, seed=1)
    batch = problem.batch([0, 2])
    assert batch.scale == 2.0
    lib_mean, lib_se = _mean_se(
        _loss_values(ELBOLoss(problem.pair.model, problem.pair.guide), batch, 2000, seed=10)
    )

    g = torch.Generator().manual_seed(11)
    draws = 200_000
    eta = problem.point_eta(batch)
    with torch.no_grad():
        eps = SIGMA_Z * torch.randn(
            draws, len(batch.instances), LATENT_DIM, generator=g, dtype=torch.float64
        )
        ref = problem.neg_loglik(eta + eps[:, batch.local], batch).numpy()
        no_noise = float(problem.neg_loglik(eta, batch))
    ref_mean, ref_se = _mean_se(ref)
    se = math.hypot(lib_se, ref_se)
    assert abs(lib_mean - ref_mean) < N_SE * se, (lib_mean, ref_mean, se)
    # Power: dropping the prior noise, or the P/B scale, is rejected by the same tolerance.
    assert abs(lib_mean - no_noise) > N_SE * se, (lib_mean, no_noise, se)
    assert abs(lib_mean - ref_mean / batch.scale) > N_SE * se


def test_gsnn_olmm_loss_is_prior_expected_loglik_plus_effect_kls():
    """oLMM (q(A)): E[loss] = E_{A~q, xi~N(0,I)} -(P/B) sum log p(y|eta(A) + sz xi) + KLs."""
    problem = _Problem("olmm", bayesian=True, seed=2, var_range=(0.2, 0.6))
    batch = problem.batch([1, 2])
    assert batch.scale == 2.0
    loss = ELBOLoss(
        problem.pair.model, problem.pair.guide, num_particles=2000, vectorize_particles=True
    )
    # Means of 2000 particles per call: the spread of 50 calls gives the standard error.
    lib_mean, lib_se = _mean_se(_loss_values(loss, batch, 50, seed=20))

    g = torch.Generator().manual_seed(21)
    draws = 200_000
    n_inst = len(batch.instances)
    ids = batch.instances

    def randn(*shape):
        return torch.randn(*shape, generator=g, dtype=torch.float64)

    with torch.no_grad():
        a_f = problem.fixed_loc + problem.fixed_var.sqrt() * randn(draws, *problem.fixed_loc.shape)
        u_shape = (draws, n_inst, *problem.random_loc.shape[1:])
        u = problem.random_loc[ids] + problem.random_var[ids].sqrt() * randn(*u_shape)
        eta = torch.einsum("rlq,nq->rnl", a_f, batch.x)
        eta = eta + torch.einsum("rnlk,nk->rnl", u[:, batch.local], batch.w)
        xi = randn(draws, batch.n_rows, LATENT_DIM)
        kls = float(problem.effect_kls(batch))
        ref = (problem.neg_loglik(eta + SIGMA_Z * xi, batch) + kls).numpy()
        # A plausible bug: z drawn at the mean of q(A) (its variance ignored).
        at_mean = problem.neg_loglik(problem.point_eta(batch) + SIGMA_Z * xi, batch) + kls
    ref_mean, ref_se = _mean_se(ref)
    se = math.hypot(lib_se, ref_se)
    assert abs(lib_mean - ref_mean) < N_SE * se, (lib_mean, ref_mean, se)
    # Power: the effect KLs and the variance of q(A) are both far outside the tolerance.
    assert kls > N_SE * se, (kls, se)
    alt_mean, alt_se = _mean_se(at_mean.numpy())
    assert abs(lib_mean - alt_mean) > N_SE * math.hypot(lib_se, alt_se), (lib_mean, alt_mean)


# --------------------------------------------------------------------------- 3. local reparam


def test_local_reparam_same_expectation_lower_variance():
    """LocalReparamGSNNLoss: same expectation as the GSNN ELBOLoss, smaller per-draw variance."""
    # Both losses are -(P/B) sum_i f_i(z_i) + KLs with the same marginals of z_i; the standard
    # one shares A between rows, the local one draws rows independently, so
    # var_standard - var_local = (P/B)^2 sum_{i != j} Cov(f_i, f_j). That is not positive in
    # general (a nonlinear g can make it negative), but it is here: g(z) = W z + b with W > 0,
    # covariates >= 0 (so Cov(z_il, z_jl) = (V (x̄_i ⊙ x̄_j))_l > 0) and y = g(M x̄) + 2 (all
    # residuals r > 0); for Gaussian terms, with C_de = Cov(δ_id, δ_je) > 0,
    # Cov((r_d - δ_id)^2, (r_e - δ_je)^2) = 2 C_de^2 + 4 r_d r_e C_de > 0.
    problem = _Problem(
        "olmm",
        bayesian=True,
        counts=(4, 5, 6, 5, 4, 6),
        seed=3,
        var_range=(0.25, 0.35),
        local_reparam=True,
        positive=True,
    )
    local = problem.pair.loss_module()
    assert isinstance(local, LocalReparamGSNNLoss)
    standard = ELBOLoss(problem.pair.model, problem.pair.guide)
    batch = problem.batch([0, 2, 5])
    assert batch.scale == 2.0
    assert bool((batch.x >= 0).all() and (batch.w >= 0).all())
    assert bool((problem.decoder[0].weight > 0).all())
    with torch.no_grad():
        batch = dataclasses.replace(batch, y=problem.decoder(problem.point_eta(batch)) + 2.0)
    n_draws = 1000
    v_local = _loss_values(local, batch, n_draws, seed=30)
    v_standard = _loss_values(standard, batch, n_draws, seed=31)

    mean_l, se_l = _mean_se(v_local)
    mean_s, se_s = _mean_se(v_standard)
    assert abs(mean_l - mean_s) < N_SE * math.hypot(se_l, se_s), (mean_l, mean_s, se_l, se_s)
    var_l, var_se_l = _var_se(v_local)
    var_s, var_se_s = _var_se(v_standard)
    assert var_l < var_s, (var_l, var_s)
    assert var_s - var_l > N_SE * math.hypot(var_se_l, var_se_s), (var_l, var_s)

    # One draw exactly: z_i = M x̄_i + sqrt(V (x̄_i ⊙ x̄_i) + sz^2) ⊙ xi_i, plus the effect KLs.
    for seed in range(3):
        pyro.set_rng_seed(seed)
        with torch.no_grad():
            value = float(local(batch))
        torch.manual_seed(seed)
        xi = torch.randn(batch.n_rows, LATENT_DIM, dtype=torch.float64)
        v_rows = problem.random_var[batch.instances][batch.local]
        eta_var = batch.x.square() @ problem.fixed_var.T
        eta_var = eta_var + torch.einsum("nlk,nk->nl", v_rows, batch.w.square())
        z = problem.point_eta(batch) + (eta_var + SIGMA_Z**2).sqrt() * xi
        with torch.no_grad():
            expected = float(problem.neg_loglik(z, batch) + problem.effect_kls(batch))
        assert value == pytest.approx(expected, rel=1e-6), (seed, value, expected)


# --------------------------------------------------------------------------- 4. API limits


@pytest.fixture(scope="module")
def tiny_synthetic():
    """12 instances, 6 times, D = 6: the full dataset and its training split."""
    ds = make_synthetic(n_instances=12, n_times=6, obs_dim=6, n_test_times=2, seed=0)
    return ds, ds.split("train")


def _tiny_gsnn(tr, **options) -> LMMVAE:
    kwargs = dict(instance="id", latent_dim=2, standardize=False, objective="gsnn") | options
    return LMMVAE("~ 1 + t", data=tr.data, y=tr.y, mask=tr.mask, **kwargs)


def test_gsnn_formula_gets_instance_intercept(tiny_synthetic):
    """GSNN appends (1 | id) to a formula without random terms unless instance_intercept=False."""
    _, tr = tiny_synthetic
    for variant in ("olmm", "slmm"):
        m = _tiny_gsnn(tr, variant=variant)
        assert m.design.formula.replace(" ", "") == "~1+t+(1|id)", m.design.formula
        assert m.design.random_terms == ("1",) and m.design.n_groups == tr.n_instances
        plain = _tiny_gsnn(tr, variant=variant, instance_intercept=False)
        assert plain.design.formula.replace(" ", "") == "~1+t", plain.design.formula
        assert plain.design.n_random == 0
    elbo = _tiny_gsnn(tr, objective="elbo")
    assert elbo.design.n_random == 0  # only GSNN adds it by default


@pytest.mark.parametrize("variant", ["olmm", "slmm"])
def test_gsnn_unavailable_outputs_raise_and_impute_is_fill_in(tiny_synthetic, variant):
    """GSNN: latents/mcc raise GSNNUnavailableError; impute is g(M x̄), blind to observed y."""
    ds, tr = tiny_synthetic
    m = _tiny_gsnn(tr, variant=variant).fit(max_epochs=1, validation=None, progress=False)
    assert all(math.isfinite(v) for v in m.history.train_loss)
    assert issubclass(GSNNUnavailableError, ValueError)

    with pytest.raises(GSNNUnavailableError, match="posterior latents") as err:
        m.latents()
    assert GSNN_LIMITS in str(err.value)
    true_latents = ds.truth["z"][(ds.data["split"] == "train").to_numpy()]
    assert true_latents.shape[0] == tr.n_obs
    with pytest.raises(GSNNUnavailableError, match="MCC") as err:
        m.mcc(true_latents)
    assert GSNN_LIMITS in str(err.value)
    with pytest.raises(ValueError, match="data=") as err:
        m.impute(y=tr.y, mask=tr.mask)
    assert not isinstance(err.value, GSNNUnavailableError)

    # The fill-in g(M x̄) of the training rows, from the effect means and the decoder.
    fill = m.impute(keep_observed=False)
    batch = m.tensors().full_batch()
    est = m.pair.effect_estimates
    with torch.no_grad(), local_params():
        u_rows = est.random_loc[batch.instances][batch.local]
        m_xbar = batch.x @ est.fixed_loc.T + torch.einsum("nlk,nk->nl", u_rows, batch.w)
        expected = m.model.decoder(m_xbar).numpy()
    np.testing.assert_allclose(fill, expected, rtol=1e-5, atol=1e-6)
    assert fill.std(0).min() > 0  # the rows differ (covariates and instance intercepts)

    # Perturbing the observed entries changes nothing (data= given, keep_observed=False).
    y_perturbed = tr.y + 1.5 * tr.mask
    with_data = m.impute(y=tr.y, mask=tr.mask, data=tr.data, keep_observed=False)
    perturbed = m.impute(y=y_perturbed, mask=tr.mask, data=tr.data, keep_observed=False)
    np.testing.assert_array_equal(perturbed, with_data)
    np.testing.assert_array_equal(with_data, fill)
    # keep_observed=True keeps the given entries and fills the rest with the same g(M x̄).
    kept = m.impute(y=y_perturbed, mask=tr.mask, data=tr.data)
    np.testing.assert_array_equal(kept[tr.mask], y_perturbed[tr.mask].astype(np.float32))
    np.testing.assert_array_equal(kept[~tr.mask], fill[~tr.mask])
    # Prediction at the training covariates is the same fill-in (eps = 0).
    np.testing.assert_allclose(m.predict(tr.data), fill, rtol=1e-6, atol=1e-6)


# --------------------------------------------------------------------------- vectorized particles


@pytest.mark.parametrize(
    ("variant", "bayesian"),
    [
        ("olmm", True),
        pytest.param(
            "slmm",
            False,
        ),
        pytest.param(
            "olmm",
            False,
        ),
    ],
)
def test_gsnn_vectorized_particles_are_independent(variant, bayesian):
    """S vectorized GSNN particles average S independent draws: variance = single / S."""
    problem = _Problem(variant, bayesian, seed=4)
    batch = problem.batch([0, 1])
    n_particles, n_calls = 20, 300
    single = _loss_values(ELBOLoss(problem.pair.model, problem.pair.guide), batch, n_calls, 40)
    vec_loss = ELBOLoss(
        problem.pair.model,
        problem.pair.guide,
        num_particles=n_particles,
        vectorize_particles=True,
    )
    vectorized = _loss_values(vec_loss, batch, n_calls, seed=41)
    mean_1, se_1 = _mean_se(single)
    mean_v, se_v = _mean_se(vectorized)
    assert abs(mean_1 - mean_v) < N_SE * math.hypot(se_1, se_v)
    var_1, var_se_1 = _var_se(single)
    var_v, var_se_v = _var_se(vectorized)
    gap = abs(n_particles * var_v - var_1)
    tol = N_SE * math.hypot(n_particles * var_se_v, var_se_1)
    assert gap < tol, f"S * var(vectorized) = {n_particles * var_v:.3g} vs var(single) {var_1:.3g}"
