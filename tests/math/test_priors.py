"""Swappable effect priors: sites, training, the KL path (analytic or Monte Carlo), validation."""

from __future__ import annotations

import math

import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine
from pyro.infer import TraceMeanField_ELBO
from scipy.integrate import quad
from torch.distributions import kl_divergence

from pyro_lmmvae import LMMVAE
from pyro_lmmvae.data import Batch
from pyro_lmmvae.datasets import make_synthetic
from pyro_lmmvae.guides import MeanFieldEffects
from pyro_lmmvae.models import FIXED_SITE, RANDOM_SITE, MixedEffects
from pyro_lmmvae.objectives import normal_kl
from pyro_lmmvae.prior_specs import as_prior
from pyro_lmmvae.priors import DistributionPrior, EffectPrior, LearnedScaleNormal
from pyro_lmmvae.pyro_module import local_params
from pyro_lmmvae.training.loss import ClosedFormELBOLoss, CollapsedELBOLoss

N_SE = 4.0
FORMULA = "~ 1 + t + g + (1 + t | id)"


@pytest.fixture(scope="module")
def train_split():
    return make_synthetic(n_instances=20, seed=0).split("train")


def _site_fn(m: LMMVAE, site: str):
    pyro.set_rng_seed(0)
    batch = m.tensors().full_batch()
    with local_params():
        trace = poutine.trace(m.model).get_trace(batch)
    return trace.nodes[site]["fn"]


def _all_params(m: LMMVAE) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in m.pair.named_parameters()}


# --------------------------------------------------------------------------- swapping priors

# torch registers an analytic KL(Normal || Laplace), so TraceMeanField_ELBO uses it; for StudentT
# there is none and the ELBO falls back to the Monte Carlo estimate log q(a) - log p(a).
SWAPS = [
    ("fixed_prior", FIXED_SITE, dist.Laplace(0.0, 1.0), dist.Laplace, {"scale": 1.0}, True),
    ("fixed_prior", FIXED_SITE, dist.StudentT(3.0, 0.0, 2.0), dist.StudentT, {"df": 3.0}, False),
    ("random_prior", RANDOM_SITE, dist.Laplace(0.0, 0.5), dist.Laplace, {"scale": 0.5}, True),
    ("random_prior", RANDOM_SITE, dist.StudentT(4.0, 0.0, 1.0), dist.StudentT, {"df": 4.0}, False),
]


def _has_analytic_kl(fn) -> bool:
    guide_like = dist.Normal(0.0, 1.0).expand(fn.batch_shape + fn.event_shape).to_event(1)
    try:
        kl_divergence(guide_like, fn)
    except NotImplementedError:
        return False
    return True


@pytest.mark.parametrize(("attr", "site", "prior", "kind", "params", "analytic"), SWAPS)
def test_swapped_prior_changes_site_and_trains(
    train_split, make_lmmvae, attr, site, prior, kind, params, analytic
):
    m = make_lmmvae(train_split)
    default = _site_fn(m, site)
    if attr == "random_prior":  # the default: learned covariance of each instance's k terms
        assert isinstance(default, dist.MultivariateNormal)
        assert default.event_shape == (m.design.n_random,)
    else:
        assert isinstance(default, dist.Independent) and type(default.base_dist) is dist.Normal
    setattr(m.model.effects, attr, prior)
    assert isinstance(getattr(m.model.effects, attr), DistributionPrior)
    fn = _site_fn(m, site)
    assert isinstance(fn, dist.Independent), fn
    assert type(fn.base_dist) is kind, fn.base_dist
    assert fn.event_shape == default.event_shape and fn.batch_shape == default.batch_shape
    for name, value in params.items():
        assert torch.allclose(getattr(fn.base_dist, name), torch.tensor(value))
    assert _has_analytic_kl(fn) is analytic

    before = _all_params(m)
    m.fit(max_epochs=2, batch_size=8, validation=None, progress=False)
    assert len(m.history.train_loss) == 2
    assert all(math.isfinite(v) for v in m.history.train_loss), m.history.train_loss
    after = _all_params(m)
    for name in ("guide.effects.fixed_loc", "guide.effects.random_loc", "model.decoder.0.weight"):
        assert not torch.equal(before[name], after[name]), name
    assert all(torch.isfinite(p).all() for p in after.values())
    assert len(pyro.get_param_store().keys()) == 0


def test_learned_scale_prior_is_trained(train_split, make_lmmvae):
    m = make_lmmvae(train_split, random_prior="learned_scale")
    prior = m.model.effects.random_prior
    assert isinstance(prior, LearnedScaleNormal)
    names = dict(m.pair.named_parameters())
    raw_name = "model.effects.random_prior.scale_unconstrained"
    assert raw_name in names, sorted(names)
    assert names[raw_name] in set(m.loss_module().parameters())
    with local_params():
        initial = float(prior.scale.detach())
    assert initial == pytest.approx(1.0)
    fn = _site_fn(m, RANDOM_SITE)
    assert type(fn.base_dist) is dist.Normal
    scale = fn.base_dist.scale
    torch.testing.assert_close(scale, torch.full(scale.shape, initial))

    m.fit(max_epochs=2, batch_size=8, validation=None, progress=False)
    assert all(math.isfinite(v) for v in m.history.train_loss)
    with local_params():
        trained = float(prior.scale.detach())
    # q(u_p) starts at mean 0 with variance e^-6, so the ELBO pulls sigma_u down from 1.
    assert trained < initial, (initial, trained)
    fn = _site_fn(m, RANDOM_SITE)
    scale = fn.base_dist.scale
    torch.testing.assert_close(scale, torch.full(scale.shape, trained))
    assert len(pyro.get_param_store().keys()) == 0


# --------------------------------------------------------------------------- Monte Carlo KL


def _effects_batch(n_fixed: int, n_groups: int) -> Batch:
    """Two rows per instance; only the effect sites use it (no z or y site)."""
    n = 2 * n_groups
    return Batch(
        x=torch.ones(n, n_fixed, dtype=torch.float64),
        w=torch.ones(n, 0, dtype=torch.float64),
        y=torch.zeros(n, 1, dtype=torch.float64),
        mask=torch.ones(n, 1, dtype=torch.bool),
        instances=torch.arange(n_groups),
        local=torch.arange(n_groups).repeat_interleave(2),
        scale=1.0,
        n_instances_total=n_groups,
    )


def _expected_log_prior(prior: dist.Distribution, loc: torch.Tensor, scale: torch.Tensor):
    """E_{N(loc, scale^2)} log p(a) per entry by adaptive quadrature (split at the kink a = 0)."""

    def integrand(a: float, m: float, s: float) -> float:
        log_p = float(prior.log_prob(torch.tensor(a, dtype=torch.float64)))
        return math.exp(-0.5 * ((a - m) / s) ** 2) / (s * math.sqrt(2 * math.pi)) * log_p

    out = np.zeros(tuple(loc.shape))
    for idx in np.ndindex(*loc.shape):
        m, s = float(loc[idx]), float(scale[idx])
        parts = [
            quad(integrand, lo, hi, args=(m, s), epsabs=1e-12, epsrel=1e-12, limit=200)[0]
            for lo, hi in ((-math.inf, 0.0), (0.0, math.inf))
        ]
        out[idx] = sum(parts)
    return torch.as_tensor(out)


@pytest.mark.parametrize(
    ("prior", "analytic"), [(dist.Laplace(0.0, 0.7), True), (dist.StudentT(3.0, 0.0, 1.5), False)]
)
def test_non_normal_prior_kl_matches_quadrature(prior, analytic):
    """TraceMeanField_ELBO's KL term for a non-Normal prior equals the exact KL on average.

    Laplace has a registered analytic KL (deterministic, exact); StudentT takes the Monte Carlo
    path, whose average over 2e5 draws must lie within 4 standard errors of the exact KL.
    """
    pyro.set_rng_seed(7)
    L, Q, P = 3, 4, 1
    with local_params():
        effects = MixedEffects(L, Q, 0, P, fixed_prior=prior)
        q = MeanFieldEffects(L, Q, 0, P)
    g = torch.Generator().manual_seed(7)
    with torch.no_grad():
        q.fixed_loc.copy_(1.5 * torch.randn(L, Q, generator=g))
        var = 0.05 + 0.5 * torch.rand(L, Q, generator=g)
        q.fixed_rho.copy_(torch.log(torch.expm1(torch.log(var) + 8.0)) - 8.0)
    effects.double()
    q.double()
    batch = _effects_batch(Q, P)
    elbo = TraceMeanField_ELBO(num_particles=4000, vectorize_particles=True, max_plate_nesting=2)
    with local_params(), torch.no_grad():
        values = np.asarray([float(elbo.differentiable_loss(effects, q, batch)) for _ in range(50)])
        loc, v = q.fixed_loc, q.fixed_var
        base = effects.fixed_prior(())
        entropy = 0.5 * torch.log(2 * math.pi * math.e * v)
        exact = float((-entropy - _expected_log_prior(base, loc, v.sqrt())).sum())
        normal = float(normal_kl(loc, v, 1.0).sum())
    mc = values.mean()
    se = values.std(ddof=1) / math.sqrt(len(values))
    if analytic:
        assert se == 0.0, se
        assert mc == pytest.approx(exact, rel=1e-8, abs=1e-8)
        assert abs(mc - normal) > 0.1, (mc, normal)
    else:
        assert se > 0.0  # the Monte Carlo path is random
        assert abs(mc - exact) < N_SE * se, (mc, exact, se)
        # Power: the Normal(0, 1) KL (an ignored prior swap) is far outside the tolerance.
        assert abs(mc - normal) > 10 * N_SE * se, (mc, normal, se)


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize("bad", [1.0, torch.tensor(1.0), object(), [dist.Normal(0.0, 1.0)]])
def test_as_prior_rejects_non_distribution(bad):
    with pytest.raises(TypeError):
        as_prior(bad)
    with local_params():
        effects = MixedEffects(2, 1, 1, 3)
    with pytest.raises(TypeError):
        effects.fixed_prior = bad


@pytest.mark.parametrize(
    "bad",
    [
        dist.MultivariateNormal(torch.zeros(2), torch.eye(2)),
        dist.Normal(torch.zeros(3), 1.0).to_event(1),
        dist.Dirichlet(torch.ones(3)),
    ],
)
def test_as_prior_rejects_event_shape(bad):
    with pytest.raises(ValueError, match="event shape"):
        as_prior(bad)
    with local_params():
        effects = MixedEffects(2, 1, 1, 3)
    with pytest.raises(ValueError, match="event shape"):
        effects.random_prior = bad


def test_as_prior_accepts_specs():
    assert isinstance(as_prior(None), DistributionPrior)
    assert as_prior(None).describe().startswith("Normal")
    assert isinstance(as_prior("learned_scale"), LearnedScaleNormal)
    custom = LearnedScaleNormal(0.5)
    assert as_prior(custom) is custom
    with pytest.raises(ValueError, match="unknown prior"):
        as_prior("laplace")
    prior = as_prior(dist.Laplace(torch.tensor(0.0), torch.tensor([1.0, 2.0])))
    d = prior((3, 2))
    assert type(d) is dist.Laplace and d.batch_shape == (3, 2)
    torch.testing.assert_close(d.scale[1], torch.tensor([1.0, 2.0]))


def test_closed_form_loss_keeps_the_pyro_statements_of_a_prior(small_synthetic, isolated_pyro):
    """A factor inside a prior would be dropped by a torch loss: the closed form is read from the
    model's traces instead, so the factor is in it (once per latent dimension, its plate)."""

    class PenalisedNormal(EffectPrior):
        def forward(self, shape):
            pyro.factor("penalty", torch.tensor(-1.0))
            return dist.Normal(0.0, 1.0).expand(shape)

    ds = small_synthetic.split("train")
    kwargs = dict(data=ds.data, y=ds.y, mask=ds.mask, latent_dim=2, standardize=False)
    plain = LMMVAE("~ 1 + t + (1 | id)", **kwargs)
    penalised = LMMVAE("~ 1 + t + (1 | id)", fixed_prior=PenalisedNormal(), **kwargs)
    assert plain._kl_estimator("auto") == "closed_form"
    assert penalised._kl_estimator("auto") == "closed_form"
    assert type(plain.loss_module()) is ClosedFormELBOLoss  # the library's classes: torch
    loss = penalised.loss_module()
    assert type(loss) is CollapsedELBOLoss  # a user's prior: derived from the model's traces
    batch = penalised.tensors().full_batch()
    with torch.no_grad():
        pyro.set_rng_seed(0)
        reference = CollapsedELBOLoss(plain.model, plain.guide)(batch)
        pyro.set_rng_seed(0)
        value = loss(batch)
    torch.testing.assert_close(value - reference, torch.tensor(2.0), rtol=1e-5, atol=1e-4)
