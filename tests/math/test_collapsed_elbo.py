"""The closed-form ELBO derived from the model's traces (one source of truth).

:class:`CollapsedLatentELBO` reads ``E_q(A) KL`` from the model and guide; the torch fast path
:class:`ClosedFormELBOLoss` (used only for the library's own classes) must agree with it exactly
in the KL terms and in expectation overall; any other model gets the traced loss, so editing or
subclassing the model changes training.
"""

from __future__ import annotations

import copy
import math

import pyro
import pytest
import torch
from pyro import poutine
from test_structured_guide import _problem  # the tests directory is on sys.path

from pyro_lmmvae.guides import MeanFieldEffects, OLMMGuide
from pyro_lmmvae.models import OLMMModel
from pyro_lmmvae.objectives import expected_latent_kl
from pyro_lmmvae.pyro_module import local_params
from pyro_lmmvae.training.collapsed_elbo import CollapsedLatentELBO, check_collapsible
from pyro_lmmvae.training.loss import (
    ClosedFormELBOLoss,
    CollapsedELBOLoss,
    closed_form_loss,
    is_library_pair,
)

N_SE = 4.0


def _pair(structured: bool, seed: int = 3):
    model, guide, batch = _problem(seed=seed)
    if not structured:  # the same numbers in a mean-field q
        q = guide.effects
        mf = MeanFieldEffects(q.latent_dim, q.n_fixed, q.n_random, q.n_groups).double()
        with torch.no_grad():
            for name in ("fixed_loc", "fixed_rho", "random_loc", "random_rho"):
                getattr(mf, name).copy_(getattr(q, name))
        guide = OLMMGuide(mf, guide.encoder)
    return model, guide, batch


@pytest.mark.parametrize("structured", [False, True])
def test_kl_terms_equal_the_torch_closed_form_exactly(structured):
    """With the likelihood hidden every term is deterministic: the two must be equal."""
    model, guide, batch = _pair(structured)
    with local_params():
        elbo = CollapsedLatentELBO()
        blocked = poutine.block(model, hide=["y"])
        first = elbo.differentiable_loss(blocked, guide, batch)  # general path (4 runs)
        second = elbo.differentiable_loss(blocked, guide, batch)  # one vectorized pass
        torch_loss = ClosedFormELBOLoss(model, guide)
        mean, var = guide.effects.predictor_moments(batch)
        loc, scale = guide.encoder.encode(batch)
        latent = expected_latent_kl(loc, scale, mean, var, model.latent_scale()).sum()
        expected = torch_loss.effects_kl(batch) + batch.scale * latent
    torch.testing.assert_close(first, expected, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(second, expected, rtol=1e-10, atol=1e-10)
    # Power: without the variance of eta (the A draw's share) the value is far off.
    with local_params():
        no_var = (
            torch_loss.effects_kl(batch)
            + batch.scale
            * expected_latent_kl(
                loc, scale, mean, torch.zeros_like(var), model.latent_scale()
            ).sum()
        )
    assert float(expected - no_var) > 1.0


@pytest.mark.parametrize("structured", [False, True])
def test_full_losses_agree_in_expectation(structured):
    pyro.set_rng_seed(0)
    model, guide, batch = _pair(structured, seed=4)
    traced, fast = CollapsedELBOLoss(model, guide), ClosedFormELBOLoss(model, guide)
    with torch.no_grad():
        a = torch.stack([traced(batch) for _ in range(400)])
        b = torch.stack([fast(batch) for _ in range(400)])
    se = math.sqrt(float(a.var() / len(a) + b.var() / len(b)))
    assert abs(float(a.mean() - b.mean())) < N_SE * se, (a.mean(), b.mean(), se)


def _as(model: OLMMModel, cls: type) -> OLMMModel:
    """A copy of ``model`` (same parameter values) as an instance of the subclass ``cls``."""
    edited = copy.deepcopy(model)
    edited.__class__ = cls
    return edited


class PenalisedModel(OLMMModel):
    """A user's edit: an extra log-density term on top of the library's model."""

    def forward(self, batch):
        super().forward(batch)
        pyro.factor("penalty", torch.tensor(-2.5, dtype=batch.y.dtype))


class SquaredPredictor(OLMMModel):
    """A latent location that is not affine in the effects."""

    def prior_mean(self, fixed, random, batch):
        eta = super().prior_mean(fixed, random, batch)
        return eta + 0.1 * eta.square()


def test_a_subclassed_model_changes_the_closed_form_loss():
    model, guide, batch = _pair(structured=False)
    edited = _as(model, PenalisedModel)
    assert is_library_pair(model, guide) and not is_library_pair(edited, guide)
    assert type(closed_form_loss(model, guide)) is ClosedFormELBOLoss
    loss = closed_form_loss(edited, guide)
    assert type(loss) is CollapsedELBOLoss
    reference = CollapsedELBOLoss(model, guide)
    with torch.no_grad():
        pyro.set_rng_seed(5)
        plain = reference(batch)
        pyro.set_rng_seed(5)
        penalised = loss(batch)
    torch.testing.assert_close(penalised - plain, torch.tensor(2.5, dtype=plain.dtype))


def test_a_non_affine_location_falls_back_to_one_draw_of_the_effects():
    model, guide, batch = _pair(structured=False)
    with local_params():
        assert check_collapsible(model, guide, batch)
    curved = _as(model, SquaredPredictor)
    with local_params():
        assert not check_collapsible(curved, guide, batch)
    loss = closed_form_loss(curved, guide)
    with pytest.warns(UserWarning, match="not affine in its effect sites"), torch.no_grad():
        value = loss(batch)
    assert torch.isfinite(value)


def test_speed_benchmark_reports_every_estimator():
    from benchmarks.collapsed_elbo import markdown, measure

    results = measure(rounds=1, steps=1)
    assert [r["case"].split(",")[0] for r in results] == ["default-fit design"] * 2 + ["sleepstudy"]
    for r in results:
        assert set(r["ms"]) == {"trace_mean_field", "traced closed form", "torch closed form"}
        assert all(math.isfinite(v) and v > 0 for v in r["ms"].values())
        assert r["ratio"]["torch closed form"] == 1.0
    assert markdown(results).count("\n") == len(results) + 1


def test_validation_objective_of_a_subclassed_model_is_read_from_its_traces():
    """The per-row validation objective sees what a user's model adds (here a factor)."""
    from pyro_lmmvae.inference import VariationalPair

    model, guide, batch = _pair(structured=False)
    plain = VariationalPair(_as(model, SubclassedOnly), guide)
    edited = VariationalPair(_as(model, PenalisedModel), guide)
    library = VariationalPair(model, guide)
    with torch.no_grad():
        values = [
            float(pair.validation_objective(batch, torch.Generator().manual_seed(7)))
            for pair in (plain, edited, library)
        ]
    penalty = 2.5 / (batch.scale * batch.n_rows)
    assert values[1] - values[0] == pytest.approx(penalty, rel=1e-6)
    # the library's own model keeps the torch closed form: the same objective, other draws
    assert abs(values[2] - values[0]) < 0.5 * abs(values[0])


class SubclassedOnly(OLMMModel):
    """A subclass that changes nothing: the traced path, same objective as the library's."""


def test_a_subclassed_gsnn_model_leaves_the_local_reparam_fast_path():
    """``local_reparam=True`` runs the torch GSNN loss only for the library's own classes."""
    from pyro_lmmvae.guides import GSNNGuide
    from pyro_lmmvae.training.loss import ELBOLoss, LocalReparamGSNNLoss, local_reparam_loss

    model, guide, batch = _pair(structured=False)
    model = copy.deepcopy(model)
    model.objective = "gsnn"
    gsnn_guide = GSNNGuide(guide.effects)
    assert type(local_reparam_loss(model, gsnn_guide)) is LocalReparamGSNNLoss
    edited = _as(model, PenalisedModel)
    with pytest.warns(UserWarning, match="local_reparam=True uses the library's own"):
        loss = local_reparam_loss(edited, gsnn_guide)
    assert type(loss) is ELBOLoss
    with torch.no_grad():
        pyro.set_rng_seed(5)
        plain = ELBOLoss(model, gsnn_guide)(batch)
        pyro.set_rng_seed(5)
        penalised = loss(batch)
    torch.testing.assert_close(penalised - plain, torch.tensor(2.5, dtype=plain.dtype))


@pytest.mark.parametrize(
    ("variant", "objective"), [("slmm", "elbo"), ("olmm", "gsnn"), ("slmm", "gsnn")]
)
def test_validation_objective_of_every_variant_sees_a_subclassed_model(
    small_synthetic, variant, objective
):
    """Any variant: a user's model is scored from its traces, so its factor counts per row."""
    from pyro_lmmvae import LMMVAE
    from pyro_lmmvae.inference import VariationalPair

    ds = small_synthetic.split("train")
    m = LMMVAE(
        "~ 1 + t + (1 | id)", ds.data, ds.y, ds.mask, instance="id", latent_dim=2,
        variant=variant, objective=objective, bayesian_effects=True, seed=0,
    )  # fmt: skip
    base = type(m.model)

    def penalised_forward(self, batch):
        base.forward(self, batch)
        pyro.factor("penalty", torch.tensor(-2.5))

    noop = _as(m.model, type("Subclassed", (base,), {}))
    edited = _as(m.model, type("Penalised", (base,), {"forward": penalised_forward}))
    batch = m.tensors().full_batch()
    with torch.no_grad():
        values = [
            float(VariationalPair(model, m.guide).validation_objective(
                batch, torch.Generator().manual_seed(7)
            ))
            for model in (noop, edited, m.model)
        ]  # fmt: skip
    # float32 sums of a few hundred terms: a few hundred ulps of the objective's size
    ulps = 256 * float(torch.finfo(torch.float32).eps) * abs(values[0])
    assert values[1] - values[0] == pytest.approx(2.5 / (batch.scale * batch.n_rows), abs=ulps)
    # the library's own classes keep the torch form: the same objective up to Monte Carlo noise
    assert abs(values[2] - values[0]) < 0.5 * abs(values[0])
