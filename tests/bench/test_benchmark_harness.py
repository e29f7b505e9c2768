"""The benchmark harness (benchmarks/paper) end to end on tiny configurations, as CI runs it."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from raw_files import write_tiny_mnist, write_tiny_physionet

from benchmarks.paper import harness
from benchmarks.paper.__main__ import main as bench_main
from pyro_lmmvae.datasets import LongitudinalDataset

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: one intra-op thread


@pytest.fixture(scope="module")
def shared_root(tmp_path_factory):
    """A data folder laid out as ../shared/data: mnist/ and physionet2012/."""
    root = tmp_path_factory.mktemp("shared")
    write_tiny_mnist(root / "mnist", n_per_digit=6)
    write_tiny_physionet(root / "physionet2012", n_patients=8)
    return root


def _check_outputs(out, results: pd.DataFrame, config: dict) -> None:
    planned = harness.plan_runs(config)
    assert len(planned) > 0
    runs = results.drop_duplicates(["experiment", "model", "covariates", "latent_dim", "n_basis"])
    cells = {(r.experiment, r.model, r.covariates, r.latent_dim, r.n_basis) for r in planned}
    assert set(map(tuple, runs[harness.KEY[:-1]].to_numpy().tolist())) == cells
    assert np.isfinite(results["value"]).all()
    for name in ("results.csv", "results.md", "run.json"):
        assert (out / name).stat().st_size > 0
    back = pd.read_csv(out / "results.csv", dtype={"seed": str})
    assert len(back) == len(results)
    info = json.loads((out / "run.json").read_text())
    assert info["runs_skipped_by_time_budget"] == 0 and info["wall_seconds"] > 0
    for figure in info["figures"]:
        assert (out / figure).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not [p for p in out.rglob("*") if p.name.startswith(".") or p.suffix == ".tmp"]


@pytest.mark.parametrize(
    "name, metrics",
    [
        ("health_mnist", {"imputation_mse", "prediction_mse", "mcc_seeds"}),
        ("rotating_mnist", {"interpolation_mse"}),
        ("physionet", {"prediction_mse"}),
        ("synthetic", {"imputation_mse", "prediction_mse", "mcc_truth", "mcc_seeds"}),
    ],
)
def test_tiny_preset_end_to_end(name, metrics, shared_root, tmp_path):
    config = harness.load_config(name, "tiny")
    out = tmp_path / name
    lines: list[str] = []
    results = harness.run_benchmark(
        config, out, root=shared_root, cache=tmp_path / "cache.npz", log=lines.append
    )
    assert set(results["metric"]) == metrics
    _check_outputs(out, results, config)
    assert (tmp_path / "cache.npz").exists() == (name != "synthetic")
    markdown = (out / "results.md").read_text()
    assert "**" in markdown and "±" in markdown
    if "mcc_seeds" in metrics:  # one row per pair of seeds, in [0, 1]
        mcc = results[results["metric"] == "mcc_seeds"]
        assert set(mcc["seed"]) == {"0-1"}
        assert ((mcc["value"] >= 0) & (mcc["value"] <= 1)).all()
    if name == "physionet":
        assert any(p.name.endswith("_vs_basis.png") for p in (out / "figures").iterdir())
        assert any(p.name.endswith("_trajectories.png") for p in (out / "figures").iterdir())
    if name == "health_mnist":
        assert (out / "figures" / "main_L2_imputation.png").exists()

    # Resume: every run is already in results.csv, so nothing is fitted again.
    again: list[str] = []
    resumed = harness.run_benchmark(
        config, out, root=shared_root, cache=tmp_path / "cache.npz", resume=True, log=again.append
    )
    assert len(again) == 2  # the data line and the closing line: no run lines
    key = ["experiment", "model", "covariates", "latent_dim", "n_basis", "seed", "metric"]
    # Resuming with other training settings would mix results: refused.
    changed = harness.load_config(name, "tiny", ["training.lr=0.01"])
    with pytest.raises(ValueError, match="settings.json differs"):
        harness.run_benchmark(changed, out, root=shared_root, resume=True, log=again.append)
    pd.testing.assert_frame_equal(
        resumed.sort_values(key).reset_index(drop=True)[key + ["value"]],
        results.sort_values(key).reset_index(drop=True)[key + ["value"]],
    )


def test_time_budget_skips_runs(shared_root, tmp_path):
    config = harness.load_config("synthetic", "tiny")
    results = harness.run_benchmark(
        config, tmp_path, root=shared_root, time_budget=0.0, log=lambda _: None
    )
    assert results.empty or len(results) == 0
    info = json.loads((tmp_path / "run.json").read_text())
    assert info["runs_skipped_by_time_budget"] == len(harness.plan_runs(config))


def test_command_line(shared_root, tmp_path, capsys):
    out = tmp_path / "cli"
    code = bench_main(
        [
            "physionet",
            "--preset",
            "tiny",
            "--out",
            str(out),
            "--root",
            str(shared_root),
            "--epochs",
            "1",
            "--seeds",
            "1",
            "--set",
            "experiments.basis_sweep.enabled=false",
        ]
    )
    assert code == 0
    results = pd.read_csv(out / "results.csv")
    assert set(results["experiment"]) == {"main"}
    assert "done in" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        bench_main(["physionet", "--preset", "nope", "--out", str(out)])
    assert "has no preset 'nope'" in capsys.readouterr().err


def test_formulas_follow_the_protocol():
    config = harness.load_config("health_mnist")
    train = _fake_health()

    def formula(model, cov="(ii)", n_basis=0):
        run = harness.Run("main", model, cov, 4, n_basis, 0, "mlp")
        return harness.model_arguments(run, config, train)

    f, kwargs = formula("oLMM")
    assert f == "~ 1 + age + sex:age + diseasePresence:diseaseAge_z + (1 | id)"
    assert kwargs["variant"] == "olmm" and kwargs["objective"] == "elbo"
    f, kwargs = formula("sLMM")  # eps_p is the random intercept of the ELBO-trained sLMM
    assert f == "~ 1 + age + sex:age + diseasePresence:diseaseAge_z"
    assert kwargs["instance"] == "id"
    f, kwargs = formula("sLMM-GSNN")
    assert f.endswith("+ (1 | id)") and kwargs["objective"] == "gsnn"
    assert formula("VAE")[0] == "~ 0"
    f, kwargs = formula("CVAE", "(i)")
    assert f == "~ 1 + age + C(id)" and kwargs["variant"] == "cvae"
    f, kwargs = formula("GP stand-in", "-")
    assert "fourier(age, 4)" in f and "| id)" in f and "fixed_prior" in kwargs

    physio = harness.load_config("physionet")
    run = harness.Run("main", "sLMM", "default", 8, 4, 0, "physionet")
    data = pd.DataFrame(
        {
            "id": [1, 1],
            "t": [0.0, 1.0],
            "age": [50.0, 50.0],
            "gender": [0, 0],
            "icu_type": ["1", "1"],
            "death": [0, 0],
        }
    )
    ds = LongitudinalDataset(data.assign(split="train"), np.zeros((2, 3)), np.ones((2, 3), bool))
    f, _ = harness.model_arguments(run, physio, ds)
    assert f == (
        "~ 1 + t + fourier(t, 2) + age + gender + icu_type + death + death:t + (0 + t | id)"
    )
    with pytest.raises(ValueError, match="even n_basis"):
        harness.model_arguments(harness.Run("main", "oLMM", "default", 8, 3, 0, "x"), physio, ds)


def _fake_health():
    data = pd.DataFrame(
        {
            "id": ["a", "a", "b", "b"],
            "age": [0, 1, 0, 1],
            "sex": [0, 0, 1, 1],
            "diseasePresence": [0, 0, 1, 1],
            "diseaseAge": [0, 0, -9, -8],
            "diseaseAge_z": [0.0, 0.0, -1.0, 1.0],
            "location": [0, 0, 1, 1],
            "split": ["train"] * 4,
        }
    )
    return LongitudinalDataset(data, np.zeros((4, 2)), np.ones((4, 2), bool))


def test_config_errors_name_the_fault(tmp_path):
    with pytest.raises(ValueError, match="has no preset 'huge'"):
        harness.load_config("synthetic", "huge")
    with pytest.raises(ValueError, match="unknown model 'oLMM2'"):
        harness.load_config("synthetic", overrides=['experiments.identifiability.models=["oLMM2"]'])
    with pytest.raises(ValueError, match="covariate set 'nope' is not defined"):
        harness.load_config(
            "synthetic", overrides=['experiments.identifiability.covariates=["nope"]']
        )
    with pytest.raises(ValueError, match="unknown task 'speed'"):
        harness.load_config("synthetic", overrides=['experiments.identifiability.tasks=["speed"]'])
    with pytest.raises(FileNotFoundError, match="not found"):
        harness.load_config(tmp_path / "missing.toml")
    with pytest.raises(ValueError, match="KEY=VALUE"):
        harness.parse_override("seeds")
    assert harness.parse_override("a.b=3") == {"a": {"b": 3}}
    assert harness.parse_override("a=word") == {"a": "word"}


def test_presets_scale_the_protocol():
    full = harness.plan_runs(harness.load_config("health_mnist", "full"))
    reduced = harness.plan_runs(harness.load_config("health_mnist", "reduced"))
    # full: main (4 models x 3 sets + VAE, CVAE, GP, linear LMM) x L in {16, 32},
    # identifiability (oLMM, VAE) x L in {8, 16, 32}; 5 seeds each; and the 4 trivial baselines
    # once per experiment (issue 18).
    assert len(full) == 5 * ((4 * 3 + 4) * 2 + 2 * 3) + 2 * 4
    assert len(reduced) < len(full)
    # Seed-major order: every cell gets seed 0 before any gets seed 1.
    seeds = [run.seed for run in full]
    assert seeds == sorted(seeds)
