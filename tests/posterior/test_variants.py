"""Every variant × objective behind one class: persistence, effects, prediction paths, errors."""

from __future__ import annotations

import numpy as np
import pyro.distributions as dist
import pytest
import torch

from pyro_lmmvae import LMMVAE
from pyro_lmmvae.data import LongitudinalTensors

VARIANTS = ["olmm", "slmm", "cvae"]
OBJECTIVES = ["elbo", "gsnn"]


def build(ds, formula="~ 1 + t + g + (1 + t | id)", **options):
    kwargs = dict(latent_dim=2, standardize=False, seed=0, instance="id") | options
    return LMMVAE(formula, data=ds.data, y=ds.y, mask=ds.mask, **kwargs)


def formula_for(variant: str) -> str:
    return "~ 1 + t + g" if variant == "cvae" else "~ 1 + t + g + (1 + t | id)"


@pytest.mark.parametrize("objective", OBJECTIVES)
@pytest.mark.parametrize("variant", VARIANTS)
def test_every_variant_round_trips_through_save_load_and_effects(
    small_synthetic, tmp_path, isolated_pyro, variant, objective
):
    """Predictions, imputations and effects are identical after save/load."""
    train, test = small_synthetic.split("train"), small_synthetic.split("test")
    m = build(train, formula_for(variant), variant=variant, objective=objective)
    m.fit(max_epochs=2, batch_size=8, validation=None, progress=False)
    back = LMMVAE.load(m.save(tmp_path / "m.pt"))
    assert (back.variant, back.objective) == (variant, objective)
    np.testing.assert_array_equal(back.predict(test.data), m.predict(test.data))
    rows = dict(y=train.y, mask=train.mask, data=train.data)
    np.testing.assert_array_equal(back.impute(**rows), m.impute(**rows))
    if variant == "cvae":
        with pytest.raises(ValueError, match="no effect matrices"):
            m.effects()
        return
    post, post_back = m.effects(num_draws=20).posterior, back.effects(num_draws=20).posterior
    np.testing.assert_array_equal(post["fixed_effects"], post_back["fixed_effects"])
    np.testing.assert_array_equal(post["random_effects"], post_back["random_effects"])
    assert post.attrs["variant"] == variant and post.attrs["objective"] == objective
    point = variant == "slmm"  # the sLMM default: A and u as point estimates
    assert post.sizes["draw"] == (1 if point else 20)
    assert ("point estimate" in post.attrs["draws_from"]) == point
    estimates = m.pair.effect_estimates
    np.testing.assert_allclose(
        post["fixed_effects"].mean(("chain", "draw")).values,
        estimates.fixed_loc.detach().numpy(),
        atol=0 if point else 1.0,  # draws from q are centred on its mean (checked elsewhere)
    )


def test_slmm_context_on_relabelled_rows_matches_the_seen_instance(small_synthetic, isolated_pyro):
    """The group encoder run on an instance's rows, under a new label, gives its own prediction."""
    train, test = small_synthetic.split("train"), small_synthetic.split("test")
    m = build(train, "~ 1 + t + g", variant="slmm")
    m.fit(max_epochs=3, batch_size=8, validation=None, progress=False)
    label = test.data["id"].iloc[0]
    target = test.data[test.data["id"] == label]
    seen = m.predict(target)
    own = (train.data["id"] == label).to_numpy()
    context = (train.data[own].assign(id="new"), train.y[own], train.mask[own])
    adapted = m.predict(target.assign(id="new"), unseen="context", context=context)
    np.testing.assert_allclose(adapted, seen, rtol=1e-5, atol=1e-6)
    population = m.predict(target.assign(id="new"), unseen="prior")
    assert np.abs(population - seen).max() > 1e-3  # the offset m_p matters


def test_olmm_context_fit_reaches_the_closed_form_optimum(small_synthetic, isolated_pyro):
    """The context fit of q(u_p) finds the ELBO's optimal mean, a ridge regression.

    With the encoder frozen only the expected KL and the prior KL depend on q(u_p); for the
    default N(0, Σ_l) prior their minimiser in the mean is, per latent dim l,
    ``u_l = (W'W / s_z^2 + Σ_l^-1)^-1 W' (mu_l - X M_f,l) / s_z^2``.
    """
    train, test = small_synthetic.split("train"), small_synthetic.split("test")
    m = build(train, latent_scale=0.3)
    m.fit(max_epochs=5, batch_size=8, lr=1e-2, validation=None, progress=False)
    label = test.data["id"].iloc[0]
    target = test.data[test.data["id"] == label].assign(id="new")
    own = (train.data["id"] == label).to_numpy()
    ctx_data = train.data[own].assign(id="new")
    context = (ctx_data, train.y[own], train.mask[own])
    adapted = m.predict(target, unseen="context", context=context)
    population = m.predict(target, unseen="prior")

    ctx = m.tensors(ctx_data, train.y[own], train.mask[own], unseen="prior")
    with torch.no_grad():
        mu = torch.as_tensor(m.latents(train.y[own], train.mask[own]))
        fixed = m.pair.effect_estimates.fixed_loc
        var_z = m.model.latent_scale() ** 2
        resid = mu - ctx.x @ fixed.T  # (n, L)
        precision = torch.linalg.inv(m.model.effects.random_prior.covariance())  # (L, k, k)
        gram = ctx.w.T @ ctx.w / var_z + precision
        rhs = (ctx.w.T @ resid / var_z).T.unsqueeze(-1)  # (L, k, 1)
        u = torch.linalg.solve(gram, rhs).squeeze(-1)  # (L, k)
        batch = m.tensors(target, unseen="prior").full_batch()
        optimum = m.pair.decode_mean(batch.x @ fixed.T + batch.w @ u.T, batch).numpy()
    assert np.abs(population - optimum).max() > 1e-3  # the adaptation has somewhere to go
    assert np.square(adapted - optimum).mean() < 1e-4 * np.square(population - optimum).mean()


def test_context_errors_are_clear(small_synthetic, isolated_pyro):
    train, test = small_synthetic.split("train"), small_synthetic.split("test")
    m = build(train, "~ 1 + t + g", variant="slmm")
    target = test.data.assign(id="new")
    ctx_data = train.data.iloc[:3].assign(id="new")
    empty = np.zeros((3, train.y.shape[1]), bool)
    with pytest.raises(ValueError, match="context: .*no observed entry"):
        m.predict(target, unseen="context", context=(ctx_data, train.y[:3], empty))
    with pytest.raises(ValueError, match="seen in training"):
        m.predict(target, unseen="context", context=(train.data.iloc[:3], train.y[:3]))
    with pytest.raises(ValueError, match="exactly when unseen='context'"):
        m.predict(target, unseen="context")
    with pytest.raises(ValueError, match="not seen in training"):
        m.predict(target)


def test_select_on_validation_prediction_mse(small_synthetic, isolated_pyro):
    """select='prediction_mse' keeps the weights whose validation prediction MSE is lowest."""
    train, val = small_synthetic.split("train"), small_synthetic.split("val")
    m = build(train, "~ 1 + t + g", variant="slmm")
    m.fit(
        max_epochs=4,
        batch_size=8,
        validation=(val.data, val.y, val.mask),
        select="prediction_mse",
        progress=False,
    )
    pred = m.predict(val.data)
    row = (np.square(pred - val.y) * val.mask).sum(1) / val.mask.sum(1)
    assert m.history.best_val_loss == pytest.approx(row.mean(), rel=1e-5)
    assert m.history.best_val_loss == min(m.history.val_loss)


def test_slmm_imputation_uses_the_observed_entries(small_synthetic, isolated_pyro):
    """sLMM imputation g(eta + m_p) changes with the observations; GSNN's fill-in does not."""
    train = small_synthetic.split("train")
    for objective, changes in (("elbo", True), ("gsnn", False)):
        m = build(train, "~ 1 + t + g + (1 | id)", variant="slmm", objective=objective)
        m.fit(max_epochs=2, batch_size=8, validation=None, progress=False)
        base = m.impute(train.y, train.mask, train.data, keep_observed=False)
        moved = m.impute(train.y + 1.0, train.mask, train.data, keep_observed=False)
        assert (np.abs(moved - base).max() > 1e-4) == changes, objective


@pytest.mark.parametrize(
    ("formula", "options", "message"),
    [
        ("~ 1 + t + (1 | id)", dict(variant="cvae"), "drop them"),
        ("~ 1 + t", dict(variant="slmm", fixed_prior=dist.Laplace(0.0, 1.0)), "bayesian_effects"),
        ("~ 1 + t", dict(variant="slmm", objective="gsnn", local_reparam=True), "local_reparam"),
        ("~ 1 + t", dict(local_reparam=True), "local_reparam"),
        ("~ 1 + t", dict(pooling="mean"), "variant='slmm' only"),
        ("~ 1 + t", dict(variant="slmm", pooling="median"), "pooling must be one of"),
        ("~ 1 + t", dict(variant="gp"), "variant must be one of"),
        ("~ 1 + t", dict(objective="iwae"), "objective must be one of"),
        ("~ 1 + t", dict(objective="gsnn", encoder=object()), "uses no encoder"),
    ],
)
def test_bad_variant_options_fail_before_training(small_synthetic, formula, options, message):
    train = small_synthetic.split("train")
    with pytest.raises(ValueError, match=message):
        build(train, formula, **options)


def test_models_that_need_covariates_say_so(small_synthetic, isolated_pyro):
    train = small_synthetic.split("train")
    for options in (dict(variant="slmm"), dict(variant="cvae")):
        m = build(train, "~ 1 + t", **options)
        with pytest.raises(ValueError, match="pass data="):
            m.impute(train.y, train.mask)
        with pytest.raises(ValueError, match="pass data="):
            m.latents(train.y, train.mask)


@pytest.mark.parametrize("variant", ["olmm", "slmm"])
def test_gsnn_context_fit_lowers_the_context_objective(small_synthetic, isolated_pyro, variant):
    """GSNN has no encoder: the context fit moves u_p to lower its GSNN loss on the context."""
    train = small_synthetic.split("train")
    m = build(train, "~ 1 + t + g", variant=variant, objective="gsnn")
    m.fit(max_epochs=3, batch_size=8, validation=None, progress=False)
    own = (train.data["id"] == train.data["id"].iloc[0]).to_numpy()
    batch = LongitudinalTensors(
        m.design.transform(train.data[own]),
        train.y[own],
        train.mask[own],
        np.zeros(own.sum(), np.int64),
    ).full_batch()
    new = m.pair.with_instances(1)
    objective = new.loss_module(num_particles=4000, vectorize_particles=True)

    def value() -> float:
        torch.manual_seed(0)  # common random numbers before and after
        with torch.no_grad():
            return float(objective(batch))

    before = value()
    torch.manual_seed(1)
    new.adapt(batch)
    assert value() < before
    assert new.effect_estimates.random_loc.abs().max() > 1e-3
