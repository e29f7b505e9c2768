"""Design from a formula: terms, encodings remembered for new data, errors naming the culprit."""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest

from pyro_lmmvae import Design


@pytest.fixture()
def frame() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    n = 12
    return pd.DataFrame(
        {
            "age": rng.normal(50.0, 10.0, n),
            "sex": ["f", "m"] * (n // 2),
            "icu": list("abc") * (n // 3),
            "death": [0, 1, 1, 0] * (n // 4),
            "id": np.repeat(["p1", "p2", "p3", "p4"], n // 4),
        }
    )


def test_terms_and_columns(frame):
    d = Design("~ 1 + age + sex + sex:age + icu + death + (1 + age | id)", frame)
    assert d.fixed_terms == (  # main effects first, then interactions, as in R
        "Intercept",
        "age",
        "sex[m]",
        "icu[b]",
        "icu[c]",
        "death",
        "sex[m]:age",
    )
    assert d.random_terms == ("1", "age")
    assert d.group_factor == "id" and d.instance == "id"
    assert list(d.groups) == ["p1", "p2", "p3", "p4"]
    m = d.transform(frame)
    z_age = (frame["age"] - frame["age"].mean()) / frame["age"].std(ddof=0)
    np.testing.assert_allclose(m.fixed[:, 1], z_age, rtol=1e-5)
    np.testing.assert_allclose(m.fixed[:, 2], (frame["sex"] == "m").astype(float))
    # the interaction column is computed from raw age, then z-scored as a column
    raw = (frame["sex"] == "m") * frame["age"]
    np.testing.assert_allclose(m.fixed[:, 6], (raw - raw.mean()) / raw.std(ddof=0), rtol=1e-5)
    np.testing.assert_allclose(m.fixed[:, 5], frame["death"])  # binary: not standardised
    assert set(d.standardization) == {"age", "sex[m]:age", "age|id"}
    np.testing.assert_allclose(m.random[:, 0], 1.0)
    np.testing.assert_allclose(m.random[:, 1], z_age, rtol=1e-5)
    assert m.group.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]


def test_inputs_scaling_standardizes_covariates_before_the_formula(frame):
    """``scaling="inputs"`` (models saved by 0.2): the product of the z-scored covariate."""
    d = Design("~ 1 + age + sex + sex:age + (1 + age | id)", frame, scaling="inputs")
    m = d.transform(frame)
    np.testing.assert_allclose(m.fixed[:, 3], m.fixed[:, 1] * m.fixed[:, 2], rtol=1e-6)
    assert set(d.standardization) == {"age"}
    restored = pickle.loads(pickle.dumps(d))
    np.testing.assert_array_equal(restored.transform(frame).fixed, m.fixed)
    with pytest.raises(ValueError, match="scaling must be one of"):
        Design("~ 1 + age", frame, scaling="raw")


@pytest.mark.parametrize(
    ("term", "function"),
    [
        ("np.log(t + 1)", lambda t: np.log(t + 1)),
        ("np.sqrt(t)", np.sqrt),
        ("I(t ** 2)", lambda t: t**2),
    ],
)
def test_formula_functions_see_raw_columns(term, function):
    """Functions are evaluated on the raw values, then their column is z-scored (training stats).

    With t in [0, 1], z-scoring t first would make ``np.log(t + 1)`` the log of negative numbers.
    """
    rng = np.random.default_rng(1)
    train = pd.DataFrame({"id": np.repeat(list("abcd"), 5), "t": rng.uniform(0, 1, 20)})
    new = pd.DataFrame({"id": ["a", "b"], "t": [0.0, 2.5]})  # outside the training range
    design = Design(f"~ 1 + {term} + (1 | id)", train)
    values = function(train["t"].to_numpy())
    mean, std = values.mean(), values.std()
    assert design.standardization[design.fixed_terms[1]] == pytest.approx((mean, std))
    np.testing.assert_allclose(
        design.transform(train).fixed[:, 1], (values - mean) / std, rtol=1e-5
    )
    expected = (function(new["t"].to_numpy()) - mean) / std
    np.testing.assert_allclose(design.transform(new).fixed[:, 1], expected, rtol=1e-5)
    raw = Design(f"~ 1 + {term} + (1 | id)", train, standardize=False)
    np.testing.assert_allclose(raw.transform(new).fixed[:, 1], function(new["t"]), rtol=1e-5)


@pytest.mark.parametrize("call", ["poly(t, 2)", "bs(t, df=4)"])
def test_stateful_transforms_see_raw_columns(call):
    """poly and bs keep their training state (knots, centring) and see raw t at predict time."""
    rng = np.random.default_rng(2)
    train = pd.DataFrame({"id": np.repeat(list("abcd"), 6), "t": rng.uniform(10, 20, 24)})
    scaled = Design(f"~ 1 + {call} + (1 | id)", train)
    raw = Design(f"~ 1 + {call} + (1 | id)", train, standardize=False)
    new = train.iloc[[3, 7, 11]].reset_index(drop=True)
    x_raw = raw.transform(new).fixed[:, 1:]
    columns = scaled.fixed_terms[1:]
    stats = np.array([scaled.standardization[c] for c in columns])
    np.testing.assert_allclose(
        scaled.transform(new).fixed[:, 1:], (x_raw - stats[:, 0]) / stats[:, 1], rtol=1e-4
    )


def test_new_data_encoded_with_training_state(frame):
    d = Design("~ 1 + age + icu + (1 + age | id)", frame)
    new = frame.iloc[[5, 0]].copy()  # a subset lacking levels and with other statistics
    np.testing.assert_array_equal(d.transform(new).fixed, d.transform(frame).fixed[[5, 0]])
    np.testing.assert_array_equal(d.transform(new).group, [1, 0])
    restored = pickle.loads(pickle.dumps(d))
    np.testing.assert_array_equal(restored.transform(new).fixed, d.transform(new).fixed)


def test_lme4_conventions(frame):
    assert Design("~ 0", frame).fixed_terms == ()
    assert Design("~ age", frame).fixed_terms == ("Intercept", "age")
    assert Design("~ 0 + age", frame).fixed_terms == ("age",)
    d = Design("~ (0 + age | id)", frame)
    assert d.fixed_terms == ("Intercept",) and d.random_terms == ("age",)
    assert Design("~ 1", frame, instance="id").instance == "id"


def test_unseen_group_policy(frame):
    d = Design("~ 1 + (1 | id)", frame)
    new = frame.iloc[:2].copy()
    new["id"] = ["p9", "p1"]
    with pytest.raises(ValueError, match="'id'.*p9"):
        d.transform(new)
    assert d.transform(new, unseen="prior").group.tolist() == [-1, 0]


@pytest.mark.parametrize(
    ("formula", "mutate", "error", "match"),
    [
        ("y ~ age", None, ValueError, "response"),
        ("~ agee", None, KeyError, "agee"),
        ("~ 1 + (1 | id) + (1 | icu)", None, ValueError, "one grouping factor"),
        ("~ 1 + (1 + age | id", None, ValueError, "cannot parse"),
        ("~ age", "nan_age", ValueError, "'age'.*NaN"),
        ("~ age", "inf_age", ValueError, "'age'.*NaN/inf"),
        ("~ 1 + (1 | id)", "nan_id", ValueError, "'id'"),
    ],
)
def test_bad_formula_or_data(frame, formula, mutate, error, match):
    if mutate == "nan_age":
        frame.loc[3, "age"] = np.nan
    elif mutate == "inf_age":
        frame.loc[3, "age"] = np.inf
    elif mutate == "nan_id":
        frame.loc[3, "id"] = None
    with pytest.raises(error, match=match):
        Design(formula, frame)


def test_unseen_factor_level_named(frame):
    d = Design("~ 1 + icu", frame)
    new = frame.iloc[:1].copy()
    new["icu"] = "z"
    with pytest.raises(ValueError, match="'icu'.*'z'"):
        d.transform(new)


def test_contrast_names_are_not_data_columns():
    frame = pd.DataFrame({"sex": ["f", "m", "f", "m"], "x": [1.0, 2.0, 3.0, 4.0]})
    design = Design("~ 1 + C(sex, Treatment) + x", frame)
    assert design.fixed_terms == ("Intercept", "C(sex, Treatment)[m]", "x")
    with pytest.raises(KeyError, match=r"\['sex'\] not found"):
        design.transform(frame.drop(columns="sex"))


def test_standardize_list_ignores_columns_the_formula_does_not_use():
    data = pd.DataFrame({"id": ["a", "a", "b"], "t": [0.0, 1.0, 5.0], "age": [20.0, 20.0, 60.0]})
    design = Design("~ 1 + age + (1 | id)", data, standardize=["t", "age"])
    assert set(design.standardization) == {"age"}
    age = design.transform(data).fixed[:, design.fixed_terms.index("age")]
    np.testing.assert_allclose(age, (data["age"] - data["age"].mean()) / data["age"].std(ddof=0))
    with pytest.raises(KeyError, match="'height'"):
        Design("~ 1 + age", data, standardize=["height"])
