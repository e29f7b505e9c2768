"""The structured effects guide: full-rank q(A_f) and q(u_p | A_f) linear in A_f.

Its closed forms (moments of the linear predictor, expected prior KL) are checked against Monte
Carlo averages with a tolerance of four standard errors; Pyro's ``TraceMeanField_ELBO`` over the
guide's sample sites must agree with the closed-form loss in expectation. On real data with the
identity decoder its fixed-effect sds must match lme4's standard errors (lme4's numbers are
recorded in ``benchmarks/lme4/``, see its README).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd
import pyro
import pytest
import torch
from torch import nn

from pyro_lmmvae import LMMVAE
from pyro_lmmvae.data import InstanceBatcher, LongitudinalTensors
from pyro_lmmvae.design import Design
from pyro_lmmvae.draws import effect_draws
from pyro_lmmvae.guides import OLMMGuide, StructuredEffects
from pyro_lmmvae.models import GaussianLikelihood, MixedEffects, OLMMModel, linear_predictor
from pyro_lmmvae.networks import GaussianEncoder
from pyro_lmmvae.objectives import expected_conditional_kl
from pyro_lmmvae.pyro_module import local_params
from pyro_lmmvae.training.loss import ClosedFormELBOLoss, ELBOLoss

N_SE = 4.0
FORMULA = "~ 1 + x + g + (1 + x | id)"  # Q_f = 3, k = 2, correlated


def _problem(seed: int = 0, counts=(2, 3, 4), latent_dim: int = 2, obs_dim: int = 3):
    """A tiny oLMM with a structured q whose every parameter is away from its start."""
    rng = np.random.default_rng(seed)
    ids = np.repeat([f"p{p}" for p in range(len(counts))], counts)
    df = pd.DataFrame(
        {"id": ids, "x": rng.normal(size=len(ids)), "g": rng.integers(0, 2, len(ids))}
    )
    design = Design(FORMULA, df)
    y = rng.normal(size=(len(df), obs_dim))
    tensors = LongitudinalTensors.from_frame(design, df, y, np.ones_like(y, dtype=bool))
    g = torch.Generator().manual_seed(seed)
    with local_params():
        effects = MixedEffects(
            latent_dim,
            design.n_fixed,
            design.n_random,
            design.n_groups,
            random_blocks=design.random_blocks,
        )
        model = OLMMModel(effects, nn.Linear(latent_dim, obs_dim), GaussianLikelihood(obs_dim, 0.7))
        q = StructuredEffects(latent_dim, design.n_fixed, design.n_random, design.n_groups)
        with torch.no_grad():
            for param in q.parameters():
                param.copy_(0.5 * torch.randn(param.shape, generator=g))
            prior = effects.random_prior
            prior.sd = torch.tensor([[0.8, 0.4]] * latent_dim)
        guide = OLMMGuide(q, GaussianEncoder(nn.Linear(obs_dim, 2 * latent_dim), latent_dim))
    model.double()
    guide.double()
    batcher = InstanceBatcher(tensors, len(counts), shuffle=False)
    batch = batcher.batch(torch.arange(len(counts)))
    batch = dataclasses.replace(batch, x=batch.x.double(), w=batch.w.double(), y=batch.y.double())
    return model, guide, batch


def _mean_se(samples: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return samples.mean(0), samples.std(0) / math.sqrt(len(samples))


def test_predictor_moments_match_joint_draws():
    model, guide, batch = _problem()
    q = guide.effects
    with torch.no_grad(), local_params():
        mean, var = q.predictor_moments(batch)
        drawn = effect_draws(q, batch, 100_000, seed=1)  # joint draws through Predictive
        fixed, random = drawn.fixed, drawn.random
        # Pyro's particle layout: A_f (S, 1, L, Q_f) left of the instance plate
        eta = linear_predictor(fixed.unsqueeze(1), random, batch).squeeze(1)  # (S, n, L)
    mc_mean, mean_se = _mean_se(eta)
    centred = (eta - mc_mean).square()
    mc_var, var_se = _mean_se(centred)
    assert torch.all((mc_mean - mean).abs() < N_SE * mean_se), (mc_mean, mean)
    assert torch.all((mc_var - var).abs() < N_SE * var_se), (mc_var, var)
    # Power: dropping the coupling's share of the variance is rejected.
    with torch.no_grad(), local_params():
        decoupled = StructuredEffects(q.latent_dim, q.n_fixed, q.n_random, q.n_groups).double()
        decoupled.load_state_dict(q.state_dict())
        decoupled.random_coupling.zero_()
        no_coupling = decoupled.predictor_moments(batch)[1]
    assert ((mc_var - no_coupling).abs() / var_se).max() > 10 * N_SE


def test_expected_conditional_kl_matches_monte_carlo():
    torch.manual_seed(0)
    k, q_dim = 2, 3
    loc = torch.randn(5, 2, k, dtype=torch.double)
    tril = torch.randn(5, 2, k, k, dtype=torch.double).tril(-1) + torch.diag_embed(
        0.3 + torch.rand(5, 2, k, dtype=torch.double)
    )
    coupling = torch.randn(5, 2, k, q_dim, dtype=torch.double)
    a = torch.randn(1, 2, q_dim, q_dim, dtype=torch.double)
    parent = a @ a.mT + 0.1 * torch.eye(q_dim, dtype=torch.double)
    prior_tril = torch.tensor([[1.2, 0.0], [0.5, 0.7]], dtype=torch.double)
    prior = torch.distributions.MultivariateNormal(
        torch.zeros(k, dtype=torch.double), scale_tril=prior_tril
    ).expand((5, 2))
    closed = expected_conditional_kl(loc, tril, coupling, parent, prior)

    class Opaque(torch.distributions.Distribution):
        """The same prior, hidden from the analytic path (forces the Monte Carlo branch)."""

        arg_constraints: dict = {}

        def __init__(self, base):
            self.base = base
            super().__init__(base.batch_shape, base.event_shape, validate_args=False)

        def log_prob(self, value):
            return self.base.log_prob(value)

    draws = torch.stack(
        [
            expected_conditional_kl(loc, tril, coupling, parent, Opaque(prior), 100)
            for _ in range(400)
        ]
    )
    mc, se = _mean_se(draws)
    assert abs(float(mc - closed)) < N_SE * float(se), (mc, closed, se)
    # Power: the marginal KL alone (without the coupling's information term) is rejected.
    cov = tril @ tril.mT + coupling @ parent @ coupling.mT
    marginal = torch.distributions.MultivariateNormal(loc, covariance_matrix=cov)
    marginal_only = torch.distributions.kl_divergence(marginal, prior).sum()
    assert abs(float(mc - marginal_only)) > 5 * N_SE * float(se), (mc, marginal_only, se)


def test_pyro_elbo_and_closed_form_agree_in_expectation():
    """TraceMeanField_ELBO over the guide's sites = the closed-form loss, averaged."""
    pyro.set_rng_seed(0)
    model, guide, batch = _problem(seed=3)
    pyro_loss = ELBOLoss(model, guide, num_particles=2000, vectorize_particles=True)
    closed_loss = ClosedFormELBOLoss(model, guide)
    with torch.no_grad():
        pyro_values = torch.stack([pyro_loss(batch) for _ in range(40)])
        closed_values = torch.stack(
            [torch.stack([closed_loss(batch) for _ in range(200)]).mean() for _ in range(40)]
        )
    (a, se_a), (b, se_b) = _mean_se(pyro_values), _mean_se(closed_values)
    se = math.sqrt(float(se_a) ** 2 + float(se_b) ** 2)
    assert abs(float(a - b)) < N_SE * se, (a, b, se)
    # Power: leaving out the information the coupling carries about A_f,
    # ½ (log|S Sᵀ + B C Bᵀ| − log|S Sᵀ|) per instance, would be rejected.
    with torch.no_grad(), local_params():
        q = guide.effects
        _, tril, coupling = q.conditional(batch.instances)
        conditional = tril @ tril.mT
        marginal = conditional + coupling @ q.fixed_cov @ coupling.mT
        information = 0.5 * float((marginal.logdet() - conditional.logdet()).sum())
    assert information > 5 * N_SE * se, (information, se)


def test_structured_guide_trains_and_round_trips(tmp_path):
    rng = np.random.default_rng(0)
    ids = np.repeat([f"s{i}" for i in range(8)], 5)
    df = pd.DataFrame({"id": ids, "t": np.tile(np.arange(5.0), 8)})
    y = rng.normal(size=(len(df), 1)) + 0.3 * df[["t"]].to_numpy()
    model = LMMVAE(
        "~ 1 + t + (1 + t | id)",
        df,
        y,
        latent_dim=1,
        network="identity",
        effects_guide="structured",
        standardize=False,
    )
    model.fit(max_epochs=5, progress=False)
    path = tmp_path / "m.pt"
    model.save(path)
    loaded = LMMVAE.load(path)
    assert type(loaded.guide.effects) is StructuredEffects
    for name, value in model.guide.effects.state_dict().items():
        assert torch.equal(value, loaded.guide.effects.state_dict()[name]), name
    a, b = model.effects(num_draws=50), loaded.effects(num_draws=50)
    np.testing.assert_array_equal(a.posterior["fixed_effects"], b.posterior["fixed_effects"])
    assert "structured" in a.posterior.attrs["draws_from"]
    # New instances adapt their q(u_p | A_f) on context rows.
    new = df[df.id == "s0"].assign(id="new")
    pred = model.predict(new.iloc[3:], unseen="context", context=(new.iloc[:3], y[:3]))
    assert np.isfinite(pred).all()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"effects_guide": "full"}, "effects_guide must be one of"),
        ({"variant": "slmm", "effects_guide": "structured"}, "bayesian_effects=True"),
    ],
)
def test_bad_effects_guide_is_one_line_error(kwargs, match):
    df = pd.DataFrame({"id": list("aabb"), "t": [0.0, 1.0, 0.0, 1.0]})
    with pytest.raises(ValueError, match=match) as err:
        LMMVAE("~ 1 + t + (1 | id)", df, np.zeros((4, 2)), latent_dim=2, **kwargs)
    assert "\n" not in str(err.value)
