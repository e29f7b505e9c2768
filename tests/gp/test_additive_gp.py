"""Tests of the LVAE-equivalent additive-GP configuration (``pyro_lmmvae.gp.additive``, spec §6)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from pyro_lmmvae import LMMVAE
from pyro_lmmvae.design import Design
from pyro_lmmvae.gp import (
    AdditiveGPConfig,
    Kernel,
    additive_gp,
    categorical,
    continuous,
    implied_kernel_matrix,
    interaction,
    regular_grid_scaling,
)

torch.set_num_threads(1)

N_INSTANCES, N_TIMES = 8, 10
SCALE = 0.7


@pytest.fixture(scope="module")
def df() -> pd.DataFrame:
    """Health-MNIST-like covariates: 8 instances x 10 ages, 0/1-coded sex and location."""
    rng = np.random.default_rng(0)
    ids = np.repeat([f"p{i}" for i in range(N_INSTANCES)], N_TIMES)
    age = np.tile(np.arange(N_TIMES, dtype=float), N_INSTANCES)
    per_instance = lambda values: np.repeat(np.asarray(values), N_TIMES)  # noqa: E731
    disease = per_instance([0, 1, 0, 1, 1, 0, 1, 0])
    frame = pd.DataFrame(
        {
            "id": ids,
            "age": age,
            "sex": per_instance([0, 1, 1, 0, 1, 0, 0, 1]),
            "location": per_instance(rng.integers(0, 2, N_INSTANCES)),
            "diseasePresence": disease,
            "diseaseAge": np.where(disease == 1, age - 4.0, 0.0),
        }
    )
    frame["sexstr"] = np.where(frame["sex"] == 1, "m", "f")
    frame["flag"] = frame["diseasePresence"] == 1
    frame["phase"] = 37.0 * age  # degrees, for a periodic kernel
    frame["location3"] = per_instance([0, 1, 2, 0, 1, 2, 0, 1])
    frame["tag"] = [f"t{i % 60}" for i in range(len(frame))]
    frame["const"] = 1.0
    return frame


def health_mnist_iii() -> list:
    """Covariate set (iii) of spec §9 as kernel components."""
    return [
        continuous("age"),
        continuous("diseaseAge"),
        categorical("sex"),
        categorical("location"),
        categorical("diseasePresence"),
        interaction("id", "age"),
        interaction("sex", "age", kind="categorical"),
        interaction("diseasePresence", "diseaseAge"),
    ]


def fourier_labels(prefix: str, basis: str, m: int) -> list[str]:
    return [f"{prefix}{basis}[{trig}{h}]" for h in range(1, m + 1) for trig in ("cos", "sin")]


# --------------------------------------------------------------------------------------------
# formula and design
# --------------------------------------------------------------------------------------------


def test_health_mnist_formula_builds_expected_design(df):
    config = additive_gp(health_mnist_iii(), df, instance="id", n_frequencies=4)
    assert isinstance(config, AdditiveGPConfig)
    assert config.formula == (
        "~ 1 + age + fourier(age, 4) + diseaseAge + fourier(diseaseAge, 4)"
        " + I(sex == 0) + I(sex == 1) + I(location == 0) + I(location == 1)"
        " + I(diseasePresence == 0) + I(diseasePresence == 1)"
        " + I(sex == 0):fourier(age, 4) + I(sex == 1):fourier(age, 4)"
        " + diseasePresence:fourier(diseaseAge, 4) + (1 + fourier(age, 4) | id)"
    )
    design = Design(config.formula, df)
    expected_fixed = [
        "Intercept",
        "age",
        *fourier_labels("", "fourier(age, 4)", 4),
        "diseaseAge",
        *fourier_labels("", "fourier(diseaseAge, 4)", 4),
        "I(sex == 0)",
        "I(sex == 1)",
        "I(location == 0)",
        "I(location == 1)",
        "I(diseasePresence == 0)",
        "I(diseasePresence == 1)",
        *fourier_labels("I(sex == 0):", "fourier(age, 4)", 4),
        *fourier_labels("I(sex == 1):", "fourier(age, 4)", 4),
        *fourier_labels("diseasePresence:", "fourier(diseaseAge, 4)", 4),
    ]
    assert list(design.fixed_terms) == expected_fixed
    assert list(design.random_terms) == ["1", *fourier_labels("", "fourier(age, 4)", 4)]
    assert design.group_factor == "id" and design.n_groups == N_INSTANCES
    kinds = {c.name: c.kind for c in config.components}
    assert kinds == {
        "age": "continuous",
        "diseaseAge": "continuous",
        "sex": "categorical",
        "location": "categorical",
        "diseasePresence": "categorical",
        "id:age": "instance:continuous",
        "sex:age": "categorical:continuous",
        "diseasePresence:diseaseAge": "binary:continuous",
    }


def test_factor_one_hot_is_full_where_formulae_would_reduce_it(df):
    # The reason for indicator terms: formulae drops the reference level here.
    reduced = Design("~ 1 + fourier(age, 2) + sexstr + sexstr:fourier(age, 2)", df)
    assert not any(label.startswith("sexstr[f]") for label in reduced.fixed_terms)
    config = additive_gp(
        [continuous("age"), categorical("sexstr"), interaction("sexstr", "age")],
        df,
        instance="id",
        n_frequencies=2,
    )
    design = Design(config.formula, df)
    rows = design.transform(df).fixed
    for level in ("f", "m"):
        ind = f'I(sexstr == "{level}")'
        assert ind in design.fixed_terms
        assert sum(t.startswith(f"{ind}:fourier(age, 2)") for t in design.fixed_terms) == 4
        column = rows[:, design.fixed_terms.index(ind)]
        np.testing.assert_array_equal(column, (df["sexstr"] == level).to_numpy(dtype=np.float32))


def test_interaction_kind_is_read_from_the_data(df):
    config = additive_gp(
        [
            interaction("sexstr", "age"),
            interaction("diseasePresence", "diseaseAge"),
            interaction("flag", "diseaseAge", n_frequencies=2),
            interaction("id", "age"),
            interaction("sex", "age", kind="categorical", n_frequencies=3),
        ],
        df,
        instance="id",
        n_frequencies=2,
    )
    by_name = {c.name: c for c in config.components}
    assert by_name["sexstr:age"].kind == "categorical:continuous"
    assert by_name["sexstr:age"].levels == ("f", "m")
    assert by_name["diseasePresence:diseaseAge"].kind == "binary:continuous"
    assert by_name["diseasePresence:diseaseAge"].terms == (
        "diseasePresence:fourier(diseaseAge, 2)",
    )
    assert by_name["flag:diseaseAge"].terms == ("I(flag == True):fourier(diseaseAge, 2)",)
    assert by_name["id:age"].kind == "instance:continuous"
    assert by_name["sex:age"].terms == (
        "I(sex == 0):fourier(age, 3)",
        "I(sex == 1):fourier(age, 3)",
    )
    design = Design(config.formula, df)
    flag_rows = design.transform(df).fixed[
        :, design.fixed_terms.index("I(flag == True):fourier(diseaseAge, 2)[cos1]")
    ]
    assert np.all(flag_rows[~df["flag"].to_numpy()] == 0.0)
    assert np.any(flag_rows[df["flag"].to_numpy()] != 0.0)


# --------------------------------------------------------------------------------------------
# priors and the implied kernel
# --------------------------------------------------------------------------------------------


def rich_components() -> list:
    """Components with different kernels, lengthscales, variances and M, and a periodic one."""
    return [
        continuous("age"),
        continuous("diseaseAge", kernel="matern32", lengthscale=3.0, n_frequencies=3),
        continuous("phase", kernel="periodic", period=360.0, lengthscale=0.8, linear=False),
        categorical("location"),
        interaction("sex", "age", kind="categorical", kernel=Kernel("matern52", 0.5, 2.0)),
        interaction("diseasePresence", "diseaseAge", variance=2.0),
        interaction("id", "age", n_frequencies=5, lengthscale=6.0),
    ]


def expected_kernels(df) -> dict[str, tuple[Kernel, int, float]]:
    """Component name -> (kernel, M, period), worked out here from the settings above."""
    t_age = 2.0 * (df["age"].max() - df["age"].min())
    t_dis = 2.0 * (df["diseaseAge"].max() - df["diseaseAge"].min())
    return {
        "age": (Kernel("se", 1.0, t_age / 8.0), 4, t_age),
        "diseaseAge": (Kernel("matern32", 1.0, 3.0), 3, t_dis),
        "phase": (Kernel("periodic", 1.0, 0.8, period=360.0), 4, 360.0),
        "sex:age": (Kernel("matern52", 0.5, 2.0), 4, t_age),
        "diseasePresence:diseaseAge": (Kernel("se", 2.0, t_dis / 8.0), 4, t_dis),
        "id:age": (Kernel("se", 1.0, 6.0), 5, t_age),
    }


@pytest.fixture(scope="module")
def rich(df):
    config = additive_gp(rich_components(), df, instance="id", n_frequencies=4, scale=SCALE)
    y = np.random.default_rng(1).normal(size=(len(df), 6)).astype(np.float32)
    model = LMMVAE(config.formula, data=df, y=y, latent_dim=2, **config.model_kwargs())
    return config, model


def test_bound_priors_match_regular_grid_scaling(df, rich):
    config, model = rich
    expected = expected_kernels(df)
    owner = {t: c.name for c in config.components for t in c.basis_terms}
    effects = model.model.effects
    for part, columns, prior in (
        ("fixed", model.design.fixed_bases, effects.fixed_prior),
        ("random", model.design.random_bases, effects.random_prior),
    ):
        lam = prior.column_variance().detach().double().numpy()
        assert lam.shape == (len(columns),)
        counts: dict[str, int] = {}
        for j, column in enumerate(columns):
            if column is None:
                assert lam[j] == pytest.approx(SCALE**2, rel=1e-6), (part, j)
                continue
            kernel, m, period = expected[owner[column.term]]
            assert column.n_frequencies == m and column.period == pytest.approx(period)
            scaling = regular_grid_scaling(kernel, m, period)
            want = scaling.pair_variance[column.harmonic - 1]
            assert lam[j] == pytest.approx(want, rel=1e-5, abs=1e-12), (part, column.term, j)
            counts[column.term] = counts.get(column.term, 0) + 1
        for term, n in counts.items():  # every basis term has its 2M columns
            assert n == 2 * expected[owner[term]][1], term
    # each level of the categorical x continuous interaction has its own block: I ⊗ Λ
    sex_age = [c for c in config.components if c.name == "sex:age"][0]
    assert sex_age.basis_terms == ("I(sex == 0):fourier(age, 4)", "I(sex == 1):fourier(age, 4)")


def test_implied_covariance_is_the_additive_kernel(df, rich):
    config, model = rich
    effects = model.model.effects
    matrices = model.design.transform(df)
    x = matrices.fixed.astype(np.float64)
    w = matrices.random.astype(np.float64)
    lam_f = effects.fixed_prior.column_variance().detach().double().numpy()
    lam_r = effects.random_prior.column_variance().detach().double().numpy()
    same_instance = matrices.group[:, None] == matrices.group[None, :]
    implied = (x * lam_f) @ x.T + same_instance * ((w * lam_r) @ w.T)

    def reduced_rank(name: str, column: str) -> np.ndarray:
        kernel, m, period = expected_kernels(df)[name]
        t = df[column].to_numpy(dtype=float)
        scaling = regular_grid_scaling(kernel, m, period)
        return implied_kernel_matrix(t, t, scaling) - scaling.intercept_variance

    def same(column: str) -> np.ndarray:
        values = df[column].to_numpy()
        return (values[:, None] == values[None, :]).astype(float)

    b = df["diseasePresence"].to_numpy(dtype=float)
    additive = (
        reduced_rank("age", "age")
        + reduced_rank("diseaseAge", "diseaseAge")
        + reduced_rank("phase", "phase")
        + SCALE**2 * same("location")
        + same("sex") * reduced_rank("sex:age", "age")
        + np.outer(b, b) * reduced_rank("diseasePresence:diseaseAge", "diseaseAge")
        + same("id") * reduced_rank("id:age", "age")
        + SCALE**2 * same("id")  # the random intercept: the instance's categorical kernel
    )
    # the columns outside the LVAE kernel: intercept and the z-scored linear covariates
    extra = np.full_like(additive, SCALE**2)
    for column in ("age", "diseaseAge"):
        values = df[column].to_numpy(dtype=float)
        z = (values - values.mean()) / values.std()
        extra += SCALE**2 * np.outer(z, z)
    np.testing.assert_allclose(implied - extra, additive, atol=2e-5, rtol=0)
    # the test has teeth: the categorical x continuous and binary pieces are not negligible
    assert np.abs(same("sex") * reduced_rank("sex:age", "age")).max() > 0.1
    assert (
        np.abs(np.outer(b, b) * reduced_rank("diseasePresence:diseaseAge", "diseaseAge")).max()
        > 0.1
    )


# --------------------------------------------------------------------------------------------
# validation
# --------------------------------------------------------------------------------------------


def _build(df, components, **kwargs):
    kwargs.setdefault("instance", "id")
    return additive_gp(components, df, n_frequencies=kwargs.pop("n_frequencies", 2), **kwargs)


@pytest.mark.parametrize(
    ("components", "kwargs", "match"),
    [
        ([continuous("weight")], {}, r"column 'weight' is not in data"),
        ([interaction("sex", "height")], {}, r"column 'height' is not in data"),
        ([continuous("sexstr")], {}, r"continuous covariate 'sexstr' must be numeric"),
        ([interaction("sex", "sexstr")], {}, r"'sex:sexstr'.*'sexstr' must be numeric"),
        ([interaction("sex", "sex")], {}, r"'sex:sex': a column cannot interact with itself"),
        ([continuous("const")], {}, r"'const' has a single value"),
        (
            [interaction("location3", "age", kind="binary")],
            {},
            r"binary column 'location3' must hold 0/1",
        ),
        (
            [interaction("location3", "age")],
            {},
            r"'location3' is numeric with values other than 0/1",
        ),
        ([categorical("age")], {}, r"factor column 'age' is numeric with 10 distinct values"),
        ([categorical("tag")], {}, r"factor column 'tag' has 60 levels"),
        ([categorical("id")], {}, r"'id' is the instance column"),
        ([interaction("id", "age", kind="binary")], {}, r"'id' is the instance column"),
        ([interaction("sex", "age", kind="instance")], {}, r"needs the instance column 'id'"),
        ([continuous("age")], {"instance": None}, r"instance is required"),
        ([continuous("age")], {"instance": "subject"}, r"instance column 'subject' is not in data"),
        ([continuous("age")], {"n_frequencies": 0}, r"^n_frequencies must be a positive integer"),
        ([continuous("age", n_frequencies=0)], {}, r"component 'age': n_frequencies"),
        (
            [continuous("age"), continuous("age", n_frequencies=3)],
            {},
            r"duplicated component age",
        ),
        (
            [interaction("sexstr", "age"), interaction("sexstr", "age", kind="categorical")],
            {},
            r"duplicated component sexstr:age",
        ),
        ([continuous("age", kernel="rbf")], {}, r"component 'age': kernel must be"),
        ([continuous("age")], {"kernel": "rbf"}, r"^kernel must be"),
        ([continuous("phase", kernel="periodic")], {}, r"'phase'.*periodic kernel needs"),
        (
            [continuous("age", kernel=Kernel("se", 1.0, 2.0), lengthscale=3.0)],
            {},
            r"component 'age': give variance and lengthscale inside the Kernel",
        ),
        ([continuous("age", lengthscale=-1.0)], {}, r"component 'age': lengthscale"),
        ([continuous("age")], {"scale": 0.0}, r"^scale must be"),
    ],
)
def test_bad_inputs_name_the_column_or_argument(df, components, kwargs, match):
    with pytest.raises(ValueError, match=match):
        _build(df, components, **kwargs)


def test_bad_component_objects(df):
    with pytest.raises(ValueError, match=r"interaction\('sex', 'age'\): kind must be"):
        interaction("sex", "age", kind="factor")
    with pytest.raises(TypeError, match=r"components\[1\] must be a Component"):
        _build(df, [continuous("age"), "sex"])
    with pytest.raises(TypeError, match="data must be a pandas DataFrame"):
        additive_gp([continuous("age")], df.to_dict(), instance="id")


# --------------------------------------------------------------------------------------------
# the configuration object and a short fit
# --------------------------------------------------------------------------------------------


def test_config_is_frozen_and_readable(df):
    config = additive_gp(health_mnist_iii(), df, instance="id", n_frequencies=4, learn="variance")
    with pytest.raises(AttributeError):
        config.formula = "~ 1"  # type: ignore[misc]
    text = str(config)
    assert config.formula in text and text == config.describe()
    assert "sex:age (categorical:continuous): se(σ²=1, ℓ=2.25), M=4, T=18" in text
    assert "diseasePresence:diseaseAge (binary:continuous)" in text
    assert "learned hyper-parameters: variance" in text
    kwargs = config.model_kwargs()
    assert set(kwargs) == {"fixed_prior", "random_prior", "instance"}
    assert kwargs["instance"] == "id" and config.learn == frozenset({"variance"})
    age = config.components[0]
    assert age.kernel == Kernel("se", 1.0, 18.0 / 8.0) and age.period == 18.0
    assert age.terms == ("age", "fourier(age, 4)")
    assert not math.isnan(age.period)


def test_short_fit_runs(df):
    config = additive_gp(health_mnist_iii(), df, instance="id", n_frequencies=3, learn=True)
    y = np.random.default_rng(2).random((len(df), 8)).astype(np.float32)
    model = LMMVAE(config.formula, data=df, y=y, latent_dim=2, seed=0, **config.model_kwargs())
    model.fit(max_epochs=2, batch_size=4, validation=None, progress=False)
    assert len(model.history.train_loss) == 2
    assert all(np.isfinite(model.history.train_loss))
    effects = model.model.effects
    fixed = {t for c in config.components if c.kind != "instance:continuous" for t in c.basis_terms}
    assert set(effects.fixed_prior.hyperparameters()) == fixed
    assert set(effects.random_prior.hyperparameters()) == {"fourier(age, 3)"}
    for prior in (effects.fixed_prior, effects.random_prior):
        for h in prior.hyperparameters().values():
            assert np.isfinite(h["variance"]) and np.isfinite(h["lengthscale"])
            assert h["learned"] == "lengthscale, variance"
