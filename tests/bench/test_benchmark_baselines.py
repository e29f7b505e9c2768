"""Trivial baselines of the paper benchmarks (issue 18): known answers, harness and report."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from benchmarks.paper import baselines as bl

# --------------------------------------------------------------------------- the baselines


def test_population_mean_respects_the_mask():
    y = np.array([[1.0, 9.0, 5.0], [3.0, 2.0, 7.0]])
    mask = np.array([[1, 0, 0], [1, 1, 0]], bool)
    out = bl.population_mean(y, mask, n_rows=3)
    np.testing.assert_allclose(out, [[2.0, 2.0, 0.0]] * 3)  # 9 is masked; the last: never seen


def test_per_time_mean_nearest_time_ties_and_fallback():
    t = np.array([0.0, 0.0, 1.0, 3.0])
    y = np.array([[1.0, 8.0], [3.0, 0.0], [5.0, 6.0], [7.0, 0.0]])
    mask = np.array([[1, 1], [1, 0], [1, 1], [1, 0]], bool)
    query = np.array([0.0, 0.4, 0.5, 2.0, 3.0, 9.0])
    out = bl.per_time_mean(t, y, mask, query)
    population_1 = (8.0 + 6.0) / 2  # feature 1 is never observed at t = 3
    expected = [
        [2.0, 8.0],  # t = 0: mean of 1 and 3; feature 1 observed once
        [2.0, 8.0],  # 0.4: nearest training time 0
        [2.0, 8.0],  # 0.5: a tie between 0 and 1, the earlier wins
        [5.0, 6.0],  # 2.0: a tie between 1 and 3, the earlier wins
        [7.0, population_1],
        [7.0, population_1],  # beyond the last time: the last time
    ]
    np.testing.assert_allclose(out, expected)


def test_per_time_mean_on_the_circle():
    t, y, mask = np.array([0.0, 3.0]), np.array([[1.0], [2.0]]), np.ones((2, 1), bool)
    assert bl.per_time_mean(t, y, mask, np.array([3.6]))[0, 0] == 2.0
    assert bl.per_time_mean(t, y, mask, np.array([3.6]), period=4.0)[0, 0] == 1.0  # 0.4 away


def test_last_observed_carries_each_entry_forward():
    ids = np.array(["a", "a", "a", "b"])
    t = np.array([2.0, 0.0, 1.0, 0.0])  # rows need not be sorted by time
    y = np.array([[30.0, 0.0], [10.0, 11.0], [20.0, 0.0], [99.0, 98.0]])
    mask = np.array([[1, 0], [1, 1], [1, 0], [1, 1]], bool)
    query_ids = np.array(["a", "a", "a", "c", "b"])
    query_t = np.array([5.0, 1.5, -1.0, 5.0, 0.0])
    out = bl.last_observed(ids, t, y, mask, query_ids, query_t)
    population = bl.population_mean(y, mask, 1)[0]
    np.testing.assert_allclose(out[0], [30.0, 11.0])  # feature 1 last observed at t = 0
    np.testing.assert_allclose(out[1], [20.0, 11.0])  # at or before 1.5
    np.testing.assert_allclose(out[2], population)  # nothing before t = -1
    np.testing.assert_allclose(out[3], population)  # unseen instance "c"
    np.testing.assert_allclose(out[4], [99.0, 98.0])  # the same time counts
    wrapped = bl.last_observed(ids[:3], t[:3], y[:3], mask[:3], ["a"], [-0.5], period=3.0)
    np.testing.assert_allclose(wrapped, [[30.0, 11.0]])  # -0.5 = 2.5 on the circle: after t = 2


def test_nearest_observed_fills_from_the_nearest_frame_where_the_entry_is_observed():
    ids = np.array([1, 1, 1, 1, 2])
    t = np.array([0.0, 1.0, 2.0, 4.0, 0.0])
    y = np.array([[1.0, 2.0], [0.0, 4.0], [5.0, 0.0], [7.0, 8.0], [50.0, 60.0]])
    mask = np.array([[1, 1], [0, 1], [1, 0], [1, 1], [1, 1]], bool)
    # Imputation: query the training rows themselves.
    out = bl.nearest_observed(ids, t, y, mask, ids, t)
    filled = bl.impute(out, y, mask)
    np.testing.assert_allclose(filled[1], [1.0, 4.0])  # t=0 and t=2 tie for feature 0: earlier
    np.testing.assert_allclose(filled[2], [5.0, 4.0])  # feature 1: t=1 (1 away) beats t=4
    np.testing.assert_allclose(filled[[0, 3, 4]], y[[0, 3, 4]])  # nothing missing: unchanged
    # Held-out rows: 3.2 is nearest to t = 4; an unseen instance falls back to the per-time mean.
    held = bl.nearest_observed(ids, t, y, mask, np.array([1, 3]), np.array([3.2, 0.0]))
    np.testing.assert_allclose(held[0], [7.0, 8.0])
    np.testing.assert_allclose(held[1], bl.per_time_mean(t, y, mask, np.array([0.0]))[0])
    fallback = np.full((1, 2), -1.0)
    np.testing.assert_allclose(
        bl.nearest_observed(ids, t, y, mask, [3], [0.0], fallback=fallback), fallback
    )


def _brute_force(ids, t, y, mask, query_ids, query_t, mode, fallback):
    out = fallback.copy()
    for q in range(len(query_ids)):
        for d in range(y.shape[1]):
            best = None
            for i in range(len(ids)):
                if ids[i] != query_ids[q] or not mask[i, d]:
                    continue
                if mode == "last":
                    key = None if t[i] > query_t[q] else (-t[i], -i)
                else:  # nearest, ties to the earlier time, then to the later row
                    key = (abs(t[i] - query_t[q]), t[i], -i)
                if key is not None and (best is None or key < best[0]):
                    best = (key, i)
            if best is not None:
                out[q, d] = y[best[1], d]
    return out


@pytest.mark.parametrize("mode", ["last", "nearest"])
def test_vectorised_matches_a_loop(mode):
    rng = np.random.default_rng(3)
    n, d = 40, 5
    ids = rng.integers(0, 6, n)
    t = rng.integers(0, 7, n).astype(float)  # integer times: many ties and repeated times
    y = rng.standard_normal((n, d))
    mask = rng.random((n, d)) < 0.6
    query_ids, query_t = rng.integers(0, 8, 30), rng.integers(-1, 8, 30).astype(float)
    fallback = np.full((30, d), np.nan)
    function = bl.last_observed if mode == "last" else bl.nearest_observed
    out = function(ids, t, y, mask, query_ids, query_t, fallback=fallback)
    expected = _brute_force(ids, t, y, mask, query_ids, query_t, mode, fallback)
    np.testing.assert_array_equal(np.isnan(out), np.isnan(expected))
    np.testing.assert_allclose(out[~np.isnan(out)], expected[~np.isnan(expected)])
    assert not np.isnan(expected).all()


def test_predict_all_and_shape_errors():
    ids, t = np.array([0, 0]), np.array([0.0, 1.0])
    y, mask = np.array([[1.0], [3.0]]), np.array([[1], [0]], bool)
    out = bl.predict_all(ids, t, y, mask, np.array([0, 5]), np.array([1.0, 1.0]))
    assert list(out) == list(bl.NAMES)
    np.testing.assert_allclose(out["nearest observed frame"], [[1.0], [1.0]])  # 5: per-time
    np.testing.assert_allclose(out["per-time mean"], [[1.0], [1.0]])  # nothing at t=1: population
    with pytest.raises(ValueError, match="one shape"):
        bl.population_mean(y, mask[:1])
    with pytest.raises(ValueError, match="row covariate"):
        bl.per_time_mean(t[:1], y, mask, t)


# --------------------------------------------------------------------------- the report


def _result(model, metric, values, covariates="(i)", latent_dim=2):
    return [
        dict(
            dataset="synth",
            experiment="main",
            model=model,
            covariates=covariates,
            latent_dim=latent_dim,
            n_basis=0,
            seed=str(seed),
            metric=metric,
            value=value,
        )
        for seed, value in enumerate(values)
    ]


def test_report_marks_models_that_lose_to_a_baseline():
    from benchmarks.paper import report

    rows = _result("A", "imputation_mse", [1.0, 1.2]) + _result("A", "mcc_truth", [0.5, 0.6])
    rows += _result("B", "imputation_mse", [3.0, 3.2]) + _result("B", "mcc_truth", [0.7, 0.8])
    rows += _result("baseline: nearest observed frame", "imputation_mse", [2.0], "-", 0)
    rows += _result("baseline: population mean", "imputation_mse", [5.0], "-", 0)
    markdown = report.markdown_tables(pd.DataFrame(rows))
    lines = {line.split("|")[1].strip(): line for line in markdown.splitlines() if "|" in line}
    assert "**1.1 ± 0.1414**" in lines["A"] and report.LOSES_MARK not in lines["A"]
    assert "3.1 ± 0.1414 †" in lines["B"] and "**yes**: imputation_mse" in lines["B"]
    assert lines["A"].rstrip(" |").endswith("no")
    # baselines are listed after the models, plain (never bold), their L and covariates dashed
    base = lines["baseline: nearest observed frame"]
    assert "| 2 |" in base and "**" not in base and "| – |" in base
    assert list(lines).index("baseline: population mean") > list(lines).index("B")
    assert "Best baseline per column: imputation_mse: nearest observed frame (2)" in markdown
    assert "1 of 2 model row(s) lose to a baseline" in markdown
    # without baselines the table is as before: no extra column
    plain = report.markdown_tables(pd.DataFrame([r for r in rows if r["latent_dim"]]))
    assert report.LOSES_HEADER not in plain and report.LOSES_MARK not in plain


# --------------------------------------------------------------------------- the harness


@pytest.fixture(scope="module")
def tiny_synthetic_run(tmp_path_factory):
    """The tiny synthetic preset run once, with one seed."""
    import torch

    from benchmarks.paper import harness

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        out = tmp_path_factory.mktemp("synthetic")
        config = harness.load_config("synthetic", "tiny", ["seeds=1"])
        results = harness.run_benchmark(config, out, root=out, log=lambda _: None)
    finally:
        torch.set_num_threads(threads)
    return config, out, results


def test_harness_rows_include_the_baselines(tiny_synthetic_run):
    from benchmarks.paper import harness
    from pyro_lmmvae import metrics

    config, out, results = tiny_synthetic_run
    models = set(results["model"])
    assert set(harness.TRIVIAL_BASELINES) <= models and harness.LINEAR_BASELINE in models
    trivial = results[results["model"].isin(harness.TRIVIAL_BASELINES)]
    assert set(trivial["metric"]) == {"imputation_mse", "prediction_mse"}  # not the MCCs
    assert len(trivial) == 2 * len(harness.TRIVIAL_BASELINES)
    assert (trivial["seed"] == "0").all() and (trivial["latent_dim"] == 0).all()
    markdown = (out / "results.md").read_text()
    assert "baseline: nearest observed frame" in markdown and "Best baseline per column" in markdown
    # the trivial baselines equal the module's functions on the training rows
    splits = harness._split(harness.load_dataset(config, out, None))
    train = splits.train
    ids, t = train.data["id"].to_numpy(), train.data["t"].to_numpy()
    nearest = bl.impute(
        bl.nearest_observed(ids, t, train.y, train.mask, ids, t), train.y, train.mask
    )
    expected = metrics.imputation_mse(nearest, train.y_true, train.mask)
    row = trivial[
        (trivial["model"] == "baseline: nearest observed frame")
        & (trivial["metric"] == "imputation_mse")
    ]
    assert row["value"].item() == pytest.approx(expected)


def test_baselines_only_rebuilds_the_rows_without_training(tiny_synthetic_run, tmp_path):
    from benchmarks.paper import harness
    from benchmarks.paper.__main__ import main as bench_main
    from benchmarks.paper.baselines_only import baselines_only

    config, out, results = tiny_synthetic_run
    folder = tmp_path / "stored"
    folder.mkdir()
    for name in ("results.csv", "run.json"):
        (folder / name).write_bytes((out / name).read_bytes())
    stored = pd.read_csv(folder / "results.csv", dtype={"seed": str})
    models_only = stored[~stored["model"].isin(harness.TRIVIAL_BASELINES)]
    models_only.to_csv(folder / "results.csv", index=False)  # as results stored before issue 18
    assert bench_main(["--baselines-only", str(folder), "--root", str(tmp_path)]) == 0
    added = pd.read_csv(folder / "baselines.csv", dtype={"seed": str})
    key = ["experiment", "model", "metric"]
    expected = stored[stored["model"].isin(harness.TRIVIAL_BASELINES)]
    pd.testing.assert_frame_equal(
        added.sort_values(key).reset_index(drop=True)[key + ["value"]],
        expected.sort_values(key).reset_index(drop=True)[key + ["value"]],
    )
    assert pd.read_csv(folder / "results.csv").shape == models_only.shape  # left as it was
    assert "baseline: per-time mean" in (folder / "results.md").read_text()
    assert json.loads((folder / "baselines.json").read_text())["time"] == "t"
    # --linear also fits the linear LMM; a later call without it keeps those rows
    baselines_only(folder, root=tmp_path, linear=True, log=lambda _: None)
    linear = pd.read_csv(folder / "baselines.csv", dtype={"seed": str})
    linear = linear[linear["model"] == harness.LINEAR_BASELINE]
    assert set(linear["metric"]) == {"imputation_mse", "prediction_mse", "mcc_truth"}
    assert (linear["covariates"] == "true").all() and (linear["epochs"] > 0).all()
    baselines_only(folder, root=tmp_path, log=lambda _: None)
    kept = pd.read_csv(folder / "baselines.csv", dtype={"seed": str})
    assert (kept["model"] == harness.LINEAR_BASELINE).sum() == len(linear)
    assert "baseline: linear LMM" in (folder / "results.md").read_text()


def test_linear_lmm_uses_the_library_estimator_with_a_linear_decoder():
    from torch import nn

    from benchmarks.paper import harness
    from pyro_lmmvae import LMMVAE
    from pyro_lmmvae.datasets import make_synthetic

    config = harness.load_config("synthetic")
    train = make_synthetic(n_instances=4, n_times=6, obs_dim=5, seed=0).split("train")
    run = harness.Run("identifiability", harness.LINEAR_BASELINE, "true", 3, 0, 0, "mlp")
    formula, kwargs = harness.model_arguments(run, config, train)
    olmm_run = harness.Run("identifiability", "oLMM", "true", 3, 0, 0, "mlp")
    olmm = harness.model_arguments(olmm_run, config, train)
    assert formula == olmm[0] and kwargs["variant"] == "olmm" and kwargs["objective"] == "elbo"
    decoder = kwargs["decoder"]
    assert type(decoder) is nn.Linear and (decoder.in_features, decoder.out_features) == (3, 5)
    again = harness.model_arguments(run, config, train)[1]["decoder"]
    assert (again.weight == decoder.weight).all()  # seeded
    model = LMMVAE(formula, train.data, train.y, train.mask, **kwargs)
    assert any(m is decoder for m in model.pair.modules())


def test_registered_model_and_disabled_trivial_baselines(monkeypatch, tmp_path):
    from benchmarks.paper import harness

    def fit(run, config, splits, device, progress):
        train, test = splits.train, splits.test
        model = harness.Precomputed(train.y.copy(), np.zeros_like(test.y))
        return model, 3

    overrides = ["seeds=1", "experiments.identifiability.models=[]"]
    with pytest.raises(ValueError, match="unknown baseline 'Zero'"):
        harness.load_config(
            "synthetic", "tiny", [*overrides, 'experiments.identifiability.baselines={Zero="-"}']
        )
    monkeypatch.setitem(harness.MODEL_FITTERS, "Zero", fit)
    config = harness.load_config(
        "synthetic", "tiny", [*overrides, 'experiments.identifiability.baselines={Zero="-"}']
    )
    results = harness.run_benchmark(config, tmp_path, root=tmp_path, log=lambda _: None)
    zero = results[results["model"] == "Zero"]
    assert (
        set(zero["metric"]) == {"imputation_mse", "prediction_mse"} and (zero["epochs"] == 3).all()
    )
    off = harness.load_config("synthetic", "tiny", ["trivial_baselines.enabled=false"])
    assert not any(r.model in harness.TRIVIAL_BASELINES for r in harness.plan_runs(off))
    assert sum(r.model in harness.TRIVIAL_BASELINES for r in harness.plan_runs(config)) == 4
