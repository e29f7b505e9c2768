"""The Health MNIST epoch-time benchmark (benchmarks/epoch_time.py) end to end on tiny raw files."""

from __future__ import annotations

import math

import pandas as pd
import pytest
import torch
from raw_files import write_tiny_mnist

from benchmarks import epoch_time
from pyro_lmmvae import fitting
from pyro_lmmvae.training import loop

TIMES = [
    "first_epoch_s",
    "epoch_s_median",
    "epoch_cpu_s_median",
    "steps_s_median",
    "validate_s_median",
    "per_image_ms",
    "projected_epoch_20k_s",
    "speedup_vs_lvae",
    "fit_wall_s",
    "prediction_mse",
    "age_mean_mse",
]


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("shared_data")
    write_tiny_mnist(root / "mnist", n_per_digit=6)
    return root


@pytest.fixture()
def one_thread():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def _run(root, out, *extra):
    argv = [
        "--root",
        str(root),
        "--cache",
        str(out.parent / "health.npz"),
        "--n-per-digit",
        "6",
        "--n-times",
        "8",
        "--latent-dim",
        "2",
        "--batch-size",
        "4",
        "--out",
        str(out),
        *extra,
    ]
    assert epoch_time.main(argv) == 0
    return pd.read_csv(out / "epoch_time.csv"), pd.read_csv(out / "epochs.csv")


def test_cli_writes_epoch_times_and_mse(tiny_root, tmp_path, one_thread):
    out = tmp_path / "out"
    table, epochs = _run(tiny_root, out, "--epochs", "2", "--variants", "olmm,slmm,gp")
    assert list(table["variant"]) == ["oLMM", "sLMM", "GP stand-in"]
    assert (table["epochs"] == 2).all()
    assert not table["stopped_by_budget"].any()
    for column in TIMES:
        values = table[column].to_numpy(dtype=float)
        assert all(math.isfinite(v) and v > 0 for v in values), (column, values)
    assert (table["threads"] == 1).all() and (table["machine_threads"] == 1).all()
    assert table["command"].iloc[0].startswith("python -m benchmarks.epoch_time --root")
    assert epochs.groupby("variant").size().to_dict() == {"oLMM": 2, "sLMM": 2, "GP stand-in": 2}
    assert (epochs[["epoch_s", "steps_s", "validate_s"]].to_numpy() > 0).all()
    text = (out / "epoch_time.md").read_text()
    assert "| oLMM | 2 |" in text and "| GP stand-in | 2 |" in text
    assert "No published LVAE prediction MSE" in text
    assert sorted(p.name for p in out.iterdir()) == [
        "epoch_time.csv",
        "epoch_time.md",
        "epochs.csv",
    ]
    assert fitting.train is loop.train  # the timing wrapper is removed again


def test_budget_stops_fit_and_keeps_best_weights(tiny_root, tmp_path, one_thread):
    table, epochs = _run(
        tiny_root, tmp_path / "out", "--epochs", "2", "--variants", "olmm", "--budget-seconds", "1"
    )
    row = table.iloc[0]
    assert row["stopped_by_budget"] and row["epochs"] >= 2
    assert row["budget_s"] == 1.0
    assert 1 <= row["best_epoch"] <= row["epochs"]
    assert len(epochs) == row["epochs"]
    assert math.isfinite(row["prediction_mse"]) and row["prediction_mse"] > 0


def test_rejects_bad_arguments():
    with pytest.raises(SystemExit):
        epoch_time.parse_args(["--variants", "lvae"])
    with pytest.raises(SystemExit):
        epoch_time.parse_args(["--epochs", "1"])
