"""Property-based: random DataFrames, formulas, masks and fit arguments never fail mid-training.

Every generated case must either raise ``ValueError`` or ``TypeError`` before training, with a
one-line message, or train one epoch whose loss is finite and leave finite parameters. The
generators cover what a user plausibly passes: numeric, integer, 0/1, constant, huge and
categorical columns, NaN covariates, numbers-as-strings, formulas with functions, interactions
and (correlated or `||`) random terms, masks with empty rows and observations with NaN, inf or
very large values, and fit arguments in and out of range. Bounded (``max_examples``) to keep the
suite within its time; the seed is fixed (``derandomize``) so that CI runs the same cases.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import torch

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, event, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from pyro_lmmvae import LMMVAE  # noqa: E402

pytestmark = pytest.mark.usefixtures("isolated_pyro")

# Repeated entries weight the draws towards valid inputs, so that most cases reach training.
COLUMN_KINDS = ("normal",) * 4 + ("integer", "binary", "binary", "category", "category")
COLUMN_KINDS += ("constant", "huge", "nan", "text_num")
FIXED_TERMS = (
    "a",
    "b",
    "a:b",
    "np.log(a + 1)",
    "I(a ** 2)",
    "poly(a, 2)",
    "C(b)",
    "center(a)",
    "np.exp(a)",
    "missing_column",
)
RANDOM_TERMS = ("(1 | id)", "(1 + a | id)", "(1 + a || id)", "(0 + a | id)", "")


def _column(kind: str, rng: np.random.Generator, n: int):
    if kind == "normal":
        return rng.normal(size=n)
    if kind == "integer":
        return rng.integers(0, 5, size=n)
    if kind == "binary":
        return rng.integers(0, 2, size=n)
    if kind == "constant":
        return np.full(n, 3.0)
    if kind == "huge":
        return rng.normal(size=n) * 1e30
    if kind == "category":
        return rng.choice(["x", "y", "z"], size=n)
    if kind == "nan":
        values = rng.normal(size=n)
        values[0] = np.nan
        return values
    return np.array([str(v) for v in rng.normal(size=n).round(2)])  # numbers as text


@st.composite
def cases(draw):
    seed = draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    n_instances = draw(st.integers(1, 5))
    counts = rng.integers(1, 5, size=n_instances)
    n = int(counts.sum())
    data = pd.DataFrame(
        {
            "id": np.repeat([f"i{k}" for k in range(n_instances)], counts),
            "a": _column(draw(st.sampled_from(COLUMN_KINDS)), rng, n),
            "b": _column(draw(st.sampled_from(COLUMN_KINDS)), rng, n),
        }
    )
    terms = draw(st.lists(st.sampled_from(FIXED_TERMS), max_size=3, unique=True))
    random = draw(st.sampled_from(RANDOM_TERMS))
    formula = "~ " + " + ".join(["1", *terms] + ([random] if random else []))
    obs_dim = draw(st.integers(1, 3))
    y = rng.normal(size=(n, obs_dim))
    y_kinds = ("plain",) * 5 + ("nan", "nan", "inf_observed", "huge", "wrong_rows")
    y_kind = draw(st.sampled_from(y_kinds))
    mask = None
    if y_kind == "nan":
        y[rng.random(size=y.shape) < 0.3] = np.nan
    elif y_kind == "inf_observed":
        y[0, 0] = np.inf
    elif y_kind == "huge":
        y *= 1e20
    elif y_kind == "wrong_rows":
        y = y[:-1] if n > 1 else np.vstack([y, y])
    if draw(st.booleans()):
        mask = rng.random(size=y.shape) > 0.2
    fit_args = {
        "max_epochs": 1,
        "batch_size": draw(st.sampled_from((1, 2, 64, 64, 64, 0))),
        "lr": draw(st.sampled_from((1e-3, 1e-3, 1e-3, 1e-1, -1.0))),
    }
    return {
        "formula": formula,
        "data": data,
        "y": y,
        "mask": mask,
        "variant": draw(st.sampled_from(("olmm", "slmm"))),
        "objective": draw(st.sampled_from(("elbo", "gsnn"))),
        "fit_args": fit_args,
    }


@settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(case=cases())
def test_every_input_errors_before_training_or_trains_finitely(case):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            model = LMMVAE(
                case["formula"],
                case["data"],
                case["y"],
                case["mask"],
                latent_dim=2,
                variant=case["variant"],
                objective=case["objective"],
            )
        except (ValueError, TypeError) as err:
            assert str(err) and "\n" not in str(err), repr(err)
            event("refused at construction")
            return
        before = model.history.train_loss[:]
        try:
            model.fit(progress=False, **case["fit_args"])
        except (ValueError, TypeError) as err:
            assert str(err) and "\n" not in str(err), repr(err)
            assert model.history.train_loss == before  # refused before any step
            event("refused by fit")
            return
    event("trained")
    assert len(model.history.train_loss) == 1
    assert np.isfinite(model.history.train_loss[-1]), case["formula"]
    assert all(torch.isfinite(p).all() for p in model.pair.parameters())
