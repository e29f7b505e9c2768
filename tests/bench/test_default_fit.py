"""The design of ``benchmarks/default_fit.py`` follows its rules, and the benchmark runs.

The generator is checked at its default size (numpy only, milliseconds); the end-to-end run uses
a few instances and a few epochs, so it checks the plumbing, not the 0.5x bar (that is measured
in BENCHMARKS.md). Statistical checks use 5 binomial or normal standard errors.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from benchmarks.default_fit import (
    BASELINES,
    FIXED_TERMS,
    MODELS,
    SITES,
    DesignData,
    baseline_predictions,
    fixed_columns,
    main,
    make_design,
    masked_mse,
    run,
)

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: one intra-op thread


@pytest.fixture(scope="module")
def design() -> DesignData:
    return make_design(seed=0)


def test_shapes_and_covariates(design: DesignData) -> None:
    data = design.data
    n = len(data)
    assert design.y.shape == design.y_clean.shape == design.mask.shape == (n, 20)
    assert design.z.shape == (n, 3)
    assert design.mask.dtype == bool
    assert list(data.columns) == ["id", "age", "site", "t", "visit", "split"]
    visits = data.groupby("id").size()
    assert len(visits) == 200
    assert visits.between(4, 15).all() and visits.nunique() > 5  # irregular counts
    assert data["t"].between(0.0, 5.0).all()
    assert set(data["site"]) == set(SITES) and data["site"].map(type).eq(str).all()
    per_instance = data.groupby("id")
    assert per_instance["age"].nunique().eq(1).all()  # age at baseline
    assert per_instance["site"].nunique().eq(1).all()
    assert per_instance["t"].apply(lambda t: bool(np.all(np.diff(t.to_numpy()) >= 0))).all()
    assert per_instance["visit"].apply(lambda v: list(v) == list(range(len(v)))).all()
    # times differ between instances: not a common grid
    assert data["t"].round(6).nunique() > 0.99 * n
    assert fixed_columns(data).shape == (n, len(FIXED_TERMS))


def test_missingness_and_noise(design: DesignData) -> None:
    mask = design.mask
    assert mask.any(axis=1).all()  # every row has an observed entry
    assert np.all(design.y[~mask] == 0.0)
    entries = mask.size
    # MCAR at rate 0.2: 5 binomial standard errors
    assert abs((1.0 - mask.mean()) - 0.2) < 5 * np.sqrt(0.2 * 0.8 / entries)
    # the noiseless targets are standardised per feature over the sample
    np.testing.assert_allclose(design.y_clean.mean(axis=0), 0.0, atol=1e-10)
    np.testing.assert_allclose(design.y_clean.std(axis=0), 1.0, rtol=1e-10)
    # observation noise of sd 0.1: the sample sd of n normals has relative sd 1/sqrt(2n)
    residual = (design.y - design.y_clean)[mask]
    assert abs(residual.std() / 0.1 - 1.0) < 5 / np.sqrt(2 * residual.size)
    assert abs(residual.mean()) < 5 * 0.1 / np.sqrt(residual.size)


def test_future_rows_are_the_last_two_visits_of_30_percent(design: DesignData) -> None:
    data = design.data
    future = design.rows("future")
    assert set(data["split"]) == {"train", "future"}
    future_ids = set(data.loc[future, "id"])
    assert len(future_ids) == 60  # round(0.3 * 200)
    for label, rows in data.groupby("id"):
        is_future = (rows["split"] == "future").to_numpy()
        if label in future_ids:
            assert is_future.sum() == 2 and is_future[-2:].all()  # the last two visits
            assert (~is_future).sum() >= 2  # earlier visits stay in training
            assert rows["t"][is_future].min() >= rows["t"][~is_future].max()
        else:
            assert not is_future.any()


def test_seeded(design: DesignData) -> None:
    again = make_design(seed=0)
    np.testing.assert_array_equal(again.y, design.y)
    assert again.data.equals(design.data)
    assert not np.array_equal(make_design(seed=1).mask, design.mask)
    with pytest.raises(ValueError, match="min_visits"):
        make_design(min_visits=3)


def test_baselines(design: DesignData) -> None:
    preds = baseline_predictions(design)
    train, future = design.rows("train"), design.rows("future")
    n_future = int(future.sum())
    assert list(preds) == list(BASELINES)
    for pred in preds.values():
        assert pred.shape == (n_future, 20) and np.isfinite(pred).all()
    y, mask = design.y[train], design.mask[train]
    population = np.array([y[mask[:, d], d].mean() for d in range(20)])
    np.testing.assert_allclose(preds["population mean"][0], population)
    # last frame: the instance's latest training visit, gaps filled by the population mean
    data = design.data
    first = data.loc[future, "id"].iloc[0]
    last = np.flatnonzero(train & (data["id"] == first).to_numpy())[-1]
    expected = np.where(design.mask[last], design.y[last], population)
    np.testing.assert_allclose(preds["last frame"][0], expected)
    # per-time mean within its bin of t
    t0 = data.loc[future, "t"].iloc[0]
    in_bin = train & (np.floor(data["t"].to_numpy() / 0.5) == min(np.floor(t0 / 0.5), 9))
    bin_mean = np.array([design.y[in_bin & design.mask[:, d], d].mean() for d in range(20)])
    np.testing.assert_allclose(preds["per-time mean"][0], bin_mean)


def test_ridge_recovers_a_linear_signal(design: DesignData) -> None:
    beta = np.random.default_rng(1).normal(size=(len(FIXED_TERMS), 20))
    linear = fixed_columns(design.data) @ beta
    exact = DesignData(
        design.data, np.where(design.mask, linear, 0.0), linear, design.mask, design.z, 0.0
    )
    ridge = baseline_predictions(exact)["ridge"]
    future = design.rows("future")
    assert masked_mse(ridge, linear[future], design.mask[future]) < 1e-4


def test_masked_mse() -> None:
    pred, target = np.zeros((2, 2)), np.array([[1.0, 3.0], [2.0, 100.0]])
    mask = np.array([[True, True], [True, False]])
    assert masked_mse(pred, target, mask) == pytest.approx((1 + 9 + 4) / 3)


def test_benchmark_runs_end_to_end(capsys, tmp_path) -> None:
    result = run(seed=0, n_instances=10, max_epochs=3, obs_dim=5)
    assert list(result["scores"]) == [*BASELINES, *MODELS]
    assert result["design"]["future_instances"] == 3
    assert result["scores"]["population mean"]["ratio_clean"] == 1.0
    for name in MODELS:
        s = result["scores"][name]
        assert np.isfinite([s["mse_clean"], s["mse_noisy"]]).all()
        assert s["info"]["epochs"] == 3 and s["info"]["stop_reason"] == "max_epochs"
    assert "(0 + t | id)" in result["scores"]["slmm-elbo"]["info"]["formula"]
    assert "(1 + t | id)" in result["scores"]["olmm-gsnn"]["info"]["formula"]

    out = tmp_path / "default_fit.json"
    argv = ["--seeds", "0", "--instances", "8", "--obs-dim", "4", "--max-epochs", "2"]
    assert main([*argv, "--models", "olmm-elbo", "--markdown", "--out", str(out)]) == 0
    table = capsys.readouterr().out
    assert "| 0 | olmm-elbo |" in table and "| population mean |" in table
    assert json.loads(out.read_text())[0]["scores"]["olmm-elbo"]["info"]["epochs"] == 2
