"""Fourier basis terms in formulas and their spectrally scaled priors (issue 4, spec §6)."""

from __future__ import annotations

import json
import math
import pickle

import numpy as np
import pandas as pd
import pytest
import torch

from pyro_lmmvae import LMMVAE, Design
from pyro_lmmvae.gp import (
    Kernel,
    SpectralPrior,
    fourier_features,
    random_feature_scaling,
    regular_grid_scaling,
)

FORMULA = "~ 1 + age + fourier(age, 4) + sex:fourier(age, 2) + (1 + fourier(age, 2) | id)"


@pytest.fixture
def frame() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    n = 48
    return pd.DataFrame(
        {
            "age": rng.uniform(20.0, 80.0, n),
            "angle": rng.uniform(0.0, 2 * math.pi, n),
            "sex": rng.choice(["f", "m"], n),
            "id": np.repeat([f"p{i}" for i in range(12)], 4),
        }
    )


def _model(frame: pd.DataFrame, formula: str, **kwargs) -> LMMVAE:
    y = np.random.default_rng(1).normal(size=(len(frame), 3)).astype(np.float32)
    return LMMVAE(formula, data=frame, y=y, latent_dim=2, **kwargs)


# ---------------------------------------------------------------------------- formula terms
def test_issue_example_formula_labels_and_bases(frame):
    design = Design(FORMULA, frame)
    assert design.fixed_terms[:3] == ("Intercept", "age", "fourier(age, 4)[cos1]")
    assert design.fixed_terms[6:10] == tuple(
        f"fourier(age, 4)[{trig}{m}]" for m in (3, 4) for trig in ("cos", "sin")
    )
    assert design.fixed_terms[-1] == "sex[m]:fourier(age, 2)[sin2]"
    assert design.random_terms == (
        "1",
        "fourier(age, 2)[cos1]",
        "fourier(age, 2)[sin1]",
        "fourier(age, 2)[cos2]",
        "fourier(age, 2)[sin2]",
    )
    assert design.fixed_bases[0] is None and design.fixed_bases[1] is None
    column = design.fixed_bases[-1]
    assert column.term == "sex:fourier(age, 2)" and column.basis == "fourier(age, 2)"
    assert column.harmonic == 2 and column.kind == "regular" and column.covariate == "age"
    assert design.fixed_terms[10] == "sex[f]:fourier(age, 2)[cos1]"  # full one-hot: I ⊗ φ
    assert design.basis_columns("sex:fourier(age,2)") == ("fixed", list(range(10, 18)))
    assert design.basis_columns("fourier(age, 2)") == ("random", [1, 2, 3, 4])


def test_features_are_in_raw_units_with_the_training_period(frame):
    """The linear age column is z-scored, the basis reads raw age, T = 2 (max - min)."""
    design = Design(FORMULA, frame)
    assert "age" in design.standardization
    period = 2.0 * (frame.age.max() - frame.age.min())
    matrices = design.transform(frame)
    expected = fourier_features(frame.age.to_numpy(), 2 * np.pi * np.arange(1, 5) / period)
    np.testing.assert_allclose(matrices.fixed[:, 2:10], expected, atol=1e-6)
    is_m = (frame.sex == "m").to_numpy()[:, None]
    np.testing.assert_allclose(matrices.fixed[:, 10:14], expected[:, :4] * ~is_m, atol=1e-6)
    np.testing.assert_allclose(matrices.fixed[:, 14:18], expected[:, :4] * is_m, atol=1e-6)
    np.testing.assert_allclose(matrices.random[:, 1:], expected[:, :4], atol=1e-6)
    assert design.fixed_bases[2].period == pytest.approx(period)


@pytest.mark.parametrize(
    "formula",
    [
        FORMULA,
        "~ rff(age, 3, kernel='matern32', lengthscale=10.0, seed=4) + (0 + rff(age, 2) | id)",
        "~ fourier(angle, 3, period=6.283185307179586) + sex",
        "~ 1 + poly(age, 2) + bs(age, df=4) + (1 + poly(age, 2) | id)",
    ],
)
def test_terms_evaluate_identically_on_training_and_new_data(frame, formula):
    """Stateful: new rows, in another order and outside the training range, reuse the state."""
    design = Design(formula, frame)
    train = design.transform(frame)
    order = np.random.default_rng(2).permutation(len(frame))[:17]
    subset = design.transform(frame.iloc[order])
    np.testing.assert_array_equal(subset.fixed, train.fixed[order])
    np.testing.assert_array_equal(subset.random, train.random[order])
    restored = pickle.loads(pickle.dumps(design))
    again = restored.transform(frame.iloc[order])
    np.testing.assert_array_equal(again.fixed, train.fixed[order])
    np.testing.assert_array_equal(again.random, train.random[order])


def test_new_data_outside_the_training_range_keep_the_training_frequencies(frame):
    design = Design("~ 0 + fourier(age, 3)", frame)
    period = 2.0 * (frame.age.max() - frame.age.min())
    later = pd.DataFrame({"age": [90.0, 120.0, 5.0]})
    expected = fourier_features(later.age.to_numpy(), 2 * np.pi * np.arange(1, 4) / period)
    np.testing.assert_allclose(design.transform(later).fixed, expected, atol=1e-6)


def test_saved_model_keeps_the_basis_state(frame, tmp_path):
    model = _model(frame, FORMULA)
    before = model.design.transform(frame.iloc[:6])
    path = model.save(tmp_path / "m.pt")
    loaded = LMMVAE.load(path)
    after = loaded.design.transform(frame.iloc[:6])
    np.testing.assert_array_equal(before.fixed, after.fixed)
    np.testing.assert_array_equal(before.random, after.random)


def test_rff_frequencies_are_seeded_kernel_draws(frame):
    design = Design("~ 0 + rff(age, 5, kernel='matern12', lengthscale=7.5, seed=3)", frame)
    np.testing.assert_array_equal(
        design._basis("rff(age, 5, kernel='matern12', lengthscale=7.5, seed=3)").omegas,
        Kernel("matern12", 1.0, 7.5).sample_frequencies(5, 3),
    )
    other = Design("~ 0 + rff(age, 5, kernel='matern12', lengthscale=7.5, seed=4)", frame)
    assert not np.array_equal(design.transform(frame).fixed, other.transform(frame).fixed)
    assert design.fixed_bases[0].kind == "random" and design.fixed_bases[0].period is None


@pytest.mark.parametrize(
    ("formula", "message"),
    [
        ("~ fourier(age, 0)", r"fourier\(age, 0\): n must be a positive integer"),
        ("~ fourier(age, 2.5)", r"n must be a positive integer"),
        ("~ rff(age, -1)", r"rff\(age, -1\): n must be a positive integer"),
        ("~ fourier(age, 2, period=0)", r"period must be a finite positive number, got 0"),
        ("~ fourier(age, 2, period=-3)", r"period must be a finite positive number"),
        ("~ rff(age, 2, lengthscale=0)", r"lengthscale must be a finite positive number, got 0"),
        ("~ rff(age, 2, lengthscale=-1.0)", r"lengthscale must be a finite positive number"),
        ("~ rff(age, 2, kernel='periodic')", r"kernel must be one of"),
        ("~ fourier(sex, 2)", r"column 'sex' is categorical"),
        ("~ 1 + (1 + fourier(sex, 2) | id)", r"column 'sex' is categorical"),
        ("~ fourier(age / 12, 2)", r"first argument of fourier\(age / 12, 2\) must be a column"),
        ("~ fourier(age, 2):fourier(angle, 2)", r"a term may hold one basis"),
        ("~ fourier(age, 2, period=0.00001)", r"plain decimal notation"),
        ("~ rff(age, 2, lengthscale=10.)", r"plain decimal notation"),
    ],
)
def test_bad_basis_arguments_fail_before_training(frame, formula, message):
    with pytest.raises(ValueError, match=message):
        Design(formula, frame)


def test_nan_time_is_rejected_in_training_and_new_data(frame):
    bad = frame.copy()
    bad.loc[5, "age"] = np.nan
    with pytest.raises(ValueError, match=r"column 'age' has 1 NaN"):
        Design("~ fourier(age, 2)", bad)
    design = Design("~ fourier(age, 2)", frame)
    with pytest.raises(ValueError, match=r"column 'age' has 1 NaN"):
        design.transform(bad)
    single = frame.assign(age=3.0)
    with pytest.raises(ValueError, match=r"single value .* pass period="):
        Design("~ fourier(age, 2)", single)


# ---------------------------------------------------------------------------- spectral prior
def _variance(model: LMMVAE, which: str = "fixed_prior") -> np.ndarray:
    prior = getattr(model.model.effects, which)
    return prior.column_variance().detach().double().numpy()


@pytest.mark.parametrize("name", ["se", "matern12", "matern32", "matern52"])
def test_spectral_prior_scales_basis_columns_by_the_grid_weights(frame, name):
    model = _model(frame, FORMULA, fixed_prior=SpectralPrior(name, variance=2.0, lengthscale=9.0))
    design = model.design
    period = design.fixed_bases[2].period
    expected4 = regular_grid_scaling(Kernel(name, 2.0, 9.0), 4, period).column_variance
    expected2 = regular_grid_scaling(Kernel(name, 2.0, 9.0), 2, period).column_variance
    lam = _variance(model)
    np.testing.assert_allclose(lam[:2], 1.0)  # intercept and linear age keep N(0, 1)
    np.testing.assert_allclose(lam[2:10], expected4, rtol=1e-5)
    np.testing.assert_allclose(lam[10:18], np.tile(expected2, 2), rtol=1e-5)  # I ⊗ Λ for sex × age


def test_periodic_prior_uses_the_exact_harmonic_weights(frame):
    formula = "~ 1 + fourier(angle, 8, period=6.283185307179586)"
    model = _model(frame, formula, fixed_prior=SpectralPrior("periodic", lengthscale=0.8))
    expected = regular_grid_scaling(Kernel("periodic", 1.0, 0.8, period=2 * math.pi), 8)
    # float32 weights: absolute resolution ~1e-7 of σ² = 1
    np.testing.assert_allclose(_variance(model)[1:], expected.column_variance, atol=1e-7)
    # spec §6 threshold, through the formula and the torch prior (float32 weights)
    tau = np.linspace(-math.pi, math.pi, 101)
    lam = _variance(model)[1:]
    implied = (
        np.cos(tau[:, None] * model.design.fixed_bases[1].frequency * np.arange(1, 9)) @ (lam[0::2])
    )
    exact = Kernel("periodic", 1.0, 0.8, period=2 * math.pi)(tau) - expected.intercept_variance
    assert np.max(np.abs(implied - exact)) < 1e-5


@pytest.mark.parametrize(("name", "n", "threshold"), [("se", 32, 1e-3), ("matern32", 256, 1e-3)])
def test_formula_prior_meets_the_spec_kernel_thresholds(name, n, threshold):
    """Through Design + SpectralPrior: |τ| ≤ 10, T = 40, spec §6 thresholds (ω_0 term added)."""
    frame = pd.DataFrame({"t": np.linspace(0.0, 20.0, 30)})  # default period 2 * 20 = 40
    design = Design(f"~ 0 + fourier(t, {n})", frame, standardize=False)
    prior = SpectralPrior(name, lengthscale=1.0)
    prior.bind(design.fixed_bases)
    lam = prior.column_variance().detach().double().numpy()
    omegas = np.array([c.frequency for c in design.fixed_bases[0::2]])
    q0 = float(Kernel(name).spectral_density(0.0)) * 2 * math.pi / 40.0
    tau = np.linspace(-10.0, 10.0, 401)
    implied = np.cos(tau[:, None] * omegas) @ lam[0::2] + q0
    assert np.max(np.abs(implied - Kernel(name)(tau))) < threshold


def test_rff_prior_is_variance_over_m_and_per_term_kernels(frame):
    formula = "~ 1 + rff(age, 6, lengthscale=5.0) + fourier(angle, 3) + fourier(age, 2)"
    prior = SpectralPrior(
        "se",
        variance=3.0,
        terms={"fourier(angle,3)": Kernel("matern52", 0.5, 2.0), "fourier(age, 2)": "none"},
        scale=2.0,
    )
    model = _model(frame, formula, fixed_prior=prior)
    lam = _variance(model)
    design = model.design
    np.testing.assert_allclose(lam[0], 4.0)
    np.testing.assert_allclose(lam[1:13], 3.0 / 6.0, rtol=1e-6)
    np.testing.assert_allclose(
        lam[13:19],
        regular_grid_scaling(
            Kernel("matern52", 0.5, 2.0), 3, design.fixed_bases[13].period
        ).column_variance,
        rtol=1e-5,
    )
    np.testing.assert_allclose(lam[19:], 4.0)  # "none": unscaled, Normal(0, scale^2)
    # the user's prior object is copied, not bound or shared
    assert prior.columns is None
    # rff: the random-feature weights reproduce random_feature_scaling
    expected = random_feature_scaling(Kernel("se", 3.0, 5.0), 6, seed=0)
    np.testing.assert_allclose(lam[1:13], expected.column_variance, rtol=1e-6)


def test_spectral_prior_without_basis_columns_is_the_plain_normal(frame):
    model = _model(frame, "~ 1 + age + (1 | id)", fixed_prior=SpectralPrior("se", scale=0.5))
    np.testing.assert_allclose(_variance(model), 0.25)


def test_spectral_prior_errors(frame):
    with pytest.raises(ValueError, match="kernel must be a Kernel or one of"):
        SpectralPrior("rbf")
    with pytest.raises(ValueError, match="lengthscale must be a finite positive number"):
        SpectralPrior("se", lengthscale=0.0)
    with pytest.raises(ValueError, match="variance must be a finite positive number"):
        SpectralPrior("se", variance=-1.0)
    with pytest.raises(ValueError, match="learn must name"):
        SpectralPrior("se", learn="period")
    with pytest.raises(ValueError, match=r"terms \['fourier\(t,2\)'\] are not basis terms"):
        _model(frame, FORMULA, fixed_prior=SpectralPrior(terms={"fourier(t, 2)": "se"}))
    with pytest.raises(ValueError, match="random-frequency terms cannot learn a lengthscale"):
        _model(frame, "~ rff(age, 2)", fixed_prior=SpectralPrior(learn=True))
    with pytest.raises(ValueError, match="differs from the basis period"):
        periodic = Kernel("periodic", 1.0, 1.0, period=2 * math.pi)
        _model(frame, "~ fourier(angle, 2)", fixed_prior=SpectralPrior(periodic))
    with pytest.raises(RuntimeError, match="not bound"):
        SpectralPrior("se").column_variance()
    with pytest.raises(ValueError, match="need Bayesian effects"):
        _model(frame, FORMULA, variant="slmm", fixed_prior="se")


def test_learned_hyperparameters_get_the_exact_gradient(frame):
    """d Λ / d ℓ through the torch spectral density equals a finite difference of numpy's."""
    model = _model(frame, FORMULA, fixed_prior=SpectralPrior("matern32", learn=True))
    prior = model.model.effects.fixed_prior
    assert {n for n, _ in model.model.named_parameters() if "fixed_prior" in n} == {
        "effects.fixed_prior.variance_unconstrained",
        "effects.fixed_prior.lengthscale_unconstrained",
    }
    ell = float(prior.lengthscale[0].detach())
    weights = torch.arange(8, dtype=torch.get_default_dtype()) + 1.0
    (prior.column_variance()[2:10] * weights).sum().backward()
    period = model.design.fixed_bases[2].period
    unconstrained = prior.lengthscale_unconstrained.grad[0]
    d_ell_d_raw = 1.0 / (1.0 + math.exp(-float(prior.lengthscale_unconstrained[0].detach())))

    def weighted(lengthscale: float) -> float:
        lam = regular_grid_scaling(Kernel("matern32", 1.0, lengthscale), 4, period)
        return float(lam.column_variance @ weights.double().numpy())

    h = 1e-5 * ell
    numeric = (weighted(ell + h) - weighted(ell - h)) / (2 * h)
    assert float(unconstrained) / d_ell_d_raw == pytest.approx(numeric, rel=1e-3)


def test_effects_show_the_spectral_prior(frame):
    model = _model(
        frame,
        FORMULA,
        fixed_prior=SpectralPrior("se", lengthscale=9.0, learn="variance"),
        random_prior="matern32",
    )
    idata = model.effects(num_draws=4000, seed=3)
    lam = _variance(model)
    sd = idata.constant_data["fixed_prior_sd"].values
    np.testing.assert_allclose(sd, np.broadcast_to(np.sqrt(lam), sd.shape), rtol=1e-6)
    # prior draws have that sd: the sample sd of n Gaussian draws has SE ≈ sd / sqrt(2n)
    draws = idata.prior["fixed_effects"].values.reshape(-1, *sd.shape)
    se = sd / math.sqrt(2 * draws.shape[0])
    assert np.all(np.abs(draws.std(0) - sd) < 4 * se)
    assert idata.prior["random_effects"].dims == idata.posterior["random_effects"].dims
    hyper = json.loads(idata.posterior.attrs["fixed_prior_hyperparameters"])
    assert hyper["fourier(age, 4)"]["kernel"] == "se"
    assert hyper["sex:fourier(age, 2)"]["learned"] == "variance"
    assert "matern32" in idata.posterior.attrs["random_prior"]
    assert "random_prior_hyperparameters" in idata.posterior.attrs
