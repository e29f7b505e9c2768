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
    assert d.fixed_terms == (
        "Intercept",
        "age",
        "sex[m]",
        "sex[m]:age",
        "icu[b]",
        "icu[c]",
        "death",
    )
    assert d.random_terms == ("1", "age")
    assert d.group_factor == "id" and d.instance == "id"
    assert list(d.groups) == ["p1", "p2", "p3", "p4"]
    m = d.transform(frame)
    z_age = (frame["age"] - frame["age"].mean()) / frame["age"].std(ddof=0)
    np.testing.assert_allclose(m.fixed[:, 1], z_age, rtol=1e-5)
    np.testing.assert_allclose(m.fixed[:, 2], (frame["sex"] == "m").astype(float))
    np.testing.assert_allclose(m.fixed[:, 3], m.fixed[:, 1] * m.fixed[:, 2], rtol=1e-6)
    np.testing.assert_allclose(m.fixed[:, 6], frame["death"])  # binary: not standardised
    np.testing.assert_allclose(m.random[:, 0], 1.0)
    np.testing.assert_allclose(m.random[:, 1], z_age, rtol=1e-5)
    assert m.group.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]


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
