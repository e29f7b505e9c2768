"""Add the trivial baselines (and the linear LMM) to a stored benchmark result.

``python -m benchmarks.paper --baselines-only RESULTS_DIR [--linear]`` calls
:func:`baselines_only`: the data are rebuilt from the stored configuration and the baselines
scored as :func:`benchmarks.paper.harness.run_benchmark` would, without refitting the models.
"""

from __future__ import annotations

import itertools
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

from pyro_lmmvae.io import write_atomic, write_text_atomic

from . import report
from .data import Splits, _split, load_dataset
from .evaluate import (
    TIME_COVARIATES,
    _fit_and_evaluate,
    _mcc_pairs,
    _row,
    evaluate,
    trivial_baselines,
)
from .figures import _figures
from .harness import _command
from .plan import LINEAR_BASELINE, TRIVIAL_TASKS, Run, _trivial_runs

__all__ = ["baselines_only", "linear_runs"]


def baselines_only(
    results_dir: str | Path,
    *,
    root: str | Path = "../shared/data",
    cache: str | Path | None = None,
    linear: bool = False,
    device: str = "cpu",
    log=print,
) -> pd.DataFrame:
    """Add the trivial baselines (and optionally the linear LMM) to a stored benchmark result.

    The data are rebuilt from the resolved configuration in ``results_dir/run.json``; the trivial
    baselines of every experiment are scored as
    :func:`~benchmarks.paper.harness.run_benchmark` would (no training). With
    ``linear=True`` the ``baseline: linear LMM`` of :func:`linear_runs` is also fitted, with the
    stored ``[training]`` settings and seeds. Written:

    * ``baselines.csv``: their rows (the columns of ``results.csv``; linear LMM rows of an earlier
      call are kept when ``linear`` is False);
    * ``baselines.json``: the command, the time covariate and the data set's size;
    * ``results.md``: rewritten from ``results.csv`` plus those rows (trivial baseline rows already
      in ``results.csv`` are replaced), so every table shows the baselines and marks the models
      that lose to them;
    * ``figures/*_vs_basis.png``: redrawn with the baselines as horizontal lines.

    ``results.csv`` and ``run.json`` are left as they are.

    Parameters
    ----------
    results_dir : str or Path
        A folder written by :func:`~benchmarks.paper.harness.run_benchmark`.
    root : str or Path, default "../shared/data"
        The shared data folder.
    cache : str or Path, optional
        Compressed dataset cache file.
    linear : bool, default False
        Also fit the linear LMM (this trains: minutes per preset on a CPU).
    device : str, default "cpu"
        Device of the linear LMM's fits.
    log : callable
        Receives one line per baseline.

    Returns
    -------
    pandas.DataFrame
        The baseline rows.
    """
    out = Path(results_dir)
    config = json.loads((out / "run.json").read_text())["config"]
    started = time.perf_counter()
    splits = _split(load_dataset(config, root, cache))
    trivial = trivial_baselines(config, splits)
    rows = []
    for run in _trivial_runs(config):
        scores, _ = evaluate(
            trivial[run.model], config["experiments"][run.experiment].get("tasks", []), splits, True
        )
        rows += [_row(config, run, metric, value, 0.0, 0) for metric, value in scores.items()]
        log(
            f"{run.experiment:>15} {run.model:>32}  "
            + "  ".join(f"{k}={v:.5f}" for k, v in scores.items())
        )
    if linear:
        rows += _fit_runs(linear_runs(config), config, splits, device, log)
    elif (out / "baselines.csv").exists():
        before = report.read_results(out / "baselines.csv")
        rows += before[before["model"] == LINEAR_BASELINE].to_dict("records")
    added = pd.DataFrame(rows)
    write_atomic(out / "baselines.csv", lambda tmp: added.to_csv(tmp, index=False))
    time_column, period = TIME_COVARIATES.get(config["dataset"], (None, None))
    options = config.get("trivial_baselines", {})
    info = {
        "command": _command(),
        "time": options.get("time", time_column),
        "period": options.get("period", period),
        "rows": {"train": splits.train.n_obs, "test": splits.test.n_obs},
        "seconds": round(time.perf_counter() - started, 1),
    }
    write_text_atomic(out / "baselines.json", json.dumps(info, indent=2))
    stored = report.read_results(out / "results.csv")
    combined = pd.concat(
        [stored[~stored["model"].isin(set(added["model"]))], added], ignore_index=True
    )
    title = config.get("title", config["dataset"])
    if config.get("preset"):
        title += f" ({config['preset']} preset)"
    write_text_atomic(out / "results.md", report.markdown_tables(combined, title=title))
    _figures(config, splits, {}, combined, out / "figures")
    return added


def linear_runs(config: dict) -> list[Run]:
    """The ``baseline: linear LMM`` runs :func:`baselines_only` adds to a stored result.

    One per seed, L and 2M of every enabled experiment with a task of :data:`TRIVIAL_TASKS`,
    except 2M sweeps, on the covariate set the experiment gives the linear LMM, else the CVAE's,
    else its last (richest) covariate set.
    """
    runs = []
    for seed in range(int(config.get("seeds", 1))):
        for name, exp in config["experiments"].items():
            sweep = len(exp.get("n_basis", [0])) > 1
            if not exp.get("enabled", True) or sweep:
                continue
            if not set(exp.get("tasks", [])) & set(TRIVIAL_TASKS):
                continue
            given = exp.get("baselines", {})
            cov = given.get(LINEAR_BASELINE) or given.get("CVAE") or exp.get("covariates", [""])[-1]
            network = exp.get("network", config.get("network", "mlp"))
            for latent, n_basis in itertools.product(exp["latent_dims"], exp.get("n_basis", [0])):
                runs.append(
                    Run(name, LINEAR_BASELINE, cov, int(latent), int(n_basis), seed, network)
                )
    return runs


def _fit_runs(runs: list[Run], config: dict, splits: Splits, device: str, log) -> list[dict]:
    """Fit and score runs (one fit per fit key), with the across-seed MCC rows."""
    rows: list[dict] = []
    fitted: dict[tuple, tuple[dict, float, int]] = {}
    latents: dict[tuple, dict[int, np.ndarray]] = {}
    for run in runs:
        if run.fit_key() not in fitted:
            exp = config["experiments"][run.experiment]
            scores, arrays, seconds, epochs = _fit_and_evaluate(
                run, config, exp, splits, device, False
            )
            fitted[run.fit_key()] = (scores, seconds, epochs)
            if "latents" in arrays:
                cell = (run.experiment, run.model, run.covariates, run.latent_dim, run.n_basis)
                latents.setdefault(cell, {})[run.seed] = arrays["latents"]
        scores, seconds, epochs = fitted[run.fit_key()]
        rows += [_row(config, run, m, v, seconds, epochs) for m, v in scores.items()]
        log(
            f"{run.experiment:>15} {run.model:>32} {run.covariates} L={run.latent_dim} "
            f"seed={run.seed} {seconds:6.1f} s  "
            + "  ".join(f"{k}={v:.5f}" for k, v in scores.items())
        )
    return rows + _mcc_pairs(config, latents)
