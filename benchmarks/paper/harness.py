"""The paper's evaluation protocol (spec §9) driven by a TOML configuration.

A configuration names a dataset, its networks, covariate sets and experiments; a *preset* scales
it (``tiny`` for CI, ``reduced`` for about an hour per dataset on 2 CPU cores, ``full`` for a
GPU). :func:`run_benchmark` fits every (experiment × model × covariate set × latent size × 2M ×
seed), evaluates the experiment's tasks and writes

* ``results.csv``: the long table (one row per run and metric), rewritten atomically after every
  run so an interrupted benchmark keeps what it finished (``resume=True`` skips those runs);
* ``results.md``: mean ± std tables, best bolded (:mod:`benchmarks.paper.report`);
* ``figures/``: reconstructions and imputations of example instances, predicted against true
  trajectories, MSE against the number of basis functions;
* ``run.json``: the resolved configuration, the machine, the command and the wall time.

Models
------
``oLMM``, ``sLMM``, ``oLMM-GSNN``, ``sLMM-GSNN`` take a covariate set ``{fixed, random}``: the
prior is ``~ fixed + (random | instance)``. The ELBO-trained sLMM-VAE's per-instance offset is its
random intercept (spec §9: "u_p, or ε_p in ELBO-trained sLMM"), so its formula drops the ``1`` of
the random term. Baselines: ``VAE`` (``~ 0``), ``CVAE`` (the fixed columns of a covariate set plus
the instance one-hot ``C(instance)`` on the networks, spec §8) and ``GP stand-in`` (the LVAE's
additive GP as SE-scaled Fourier features, :func:`pyro_lmmvae.gp.additive_gp`, spec §9).
``baseline: linear LMM`` is the oLMM-VAE of a covariate set with a linear decoder ``g(z) = Wz + b``
(PPCA with an LMM prior; the encoder is the data set's named one): the library's own estimator,
``LMMVAE(..., decoder=torch.nn.Linear(L, D))``. Another model is registered in
:data:`MODEL_FITTERS`.

Trivial baselines
-----------------
Every experiment with an imputation, prediction or interpolation task also reports the trivial
baselines of :mod:`benchmarks.paper.baselines` (``baseline: per-time mean``, ``baseline: last
observed frame``, ``baseline: nearest observed frame``, ``baseline: population mean``), computed
from the training rows' observed entries, once (they are deterministic: seed 0 only, ``L = 0``,
``2M = 0``). The time covariate is :data:`~benchmarks.paper.evaluate.TIME_COVARIATES`'s entry of
the data set, or ``[trivial_baselines] time = "...", period = ...`` of the configuration;
``enabled = false`` turns them off. :func:`benchmarks.paper.baselines_only.baselines_only` adds
them to stored results without training anything.

Tasks
-----
``imputation``: MSE on the masked entries of the training rows against the unmasked truth (a
GSNN has no encoder: its imputation is the covariate fill-in). ``prediction`` /
``interpolation``: MSE of conditional generation on the test rows (all entries where the truth is
known, the observed ones otherwise). ``mcc_seeds``: MCC between the posterior latents of the
training rows of every pair of seeds (spec §10). ``mcc_truth``: MCC against the true latents.

Modules
-------
This module is the driver (:func:`run_benchmark`) and re-exports the harness's API from
:mod:`~benchmarks.paper.config` (TOML configurations), :mod:`~benchmarks.paper.data` (data
sets and splits), :mod:`~benchmarks.paper.plan` (model names and the runs),
:mod:`~benchmarks.paper.models` (a run's model and its fitter), :mod:`~benchmarks.paper.evaluate`
(the tasks' metrics) and :mod:`~benchmarks.paper.figures` (the figures of a run);
:mod:`~benchmarks.paper.baselines_only` adds baselines to a stored result.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks.machine import machine as describe_machine
from pyro_lmmvae.io import write_text_atomic

from . import report
from .config import load_config, parse_override
from .data import Splits, _split, load_dataset
from .evaluate import (
    Precomputed,
    _fit_and_evaluate,
    _mcc_pairs,
    _row,
    evaluate,
    trivial_baselines,
)
from .figures import _figures
from .models import MODEL_FITTERS, fit_lmmvae, linear_decoder, model_arguments
from .plan import KEY, LINEAR_BASELINE, TRIVIAL_BASELINES, Run, plan_runs

__all__ = [
    "FINGERPRINT",
    "KEY",
    "LINEAR_BASELINE",
    "MODEL_FITTERS",
    "TRIVIAL_BASELINES",
    "Precomputed",
    "Run",
    "Splits",
    "evaluate",
    "fingerprint",
    "fit_lmmvae",
    "linear_decoder",
    "load_config",
    "load_dataset",
    "machine",
    "model_arguments",
    "parse_override",
    "plan_runs",
    "run_benchmark",
    "trivial_baselines",
]


def machine() -> dict:
    """The machine a benchmark ran on (see :func:`benchmarks.machine.machine`)."""
    return describe_machine()


def run_benchmark(
    config: dict,
    out_dir: str | Path,
    *,
    root: str | Path = "../shared/data",
    cache: str | Path | None = None,
    device: str = "cpu",
    time_budget: float | None = None,
    resume: bool = False,
    progress: bool = False,
    log=print,
) -> pd.DataFrame:
    """Run a benchmark configuration and write its results, tables and figures.

    Parameters
    ----------
    config : dict
        From :func:`load_config`.
    out_dir : str or Path
        Output folder (created).
    root : str or Path, default "../shared/data"
        The shared data folder (``mnist/``, ``physionet2012/``).
    cache : str or Path, optional
        Compressed dataset cache file (built on the first run).
    device : str, default "cpu"
    time_budget : float, optional
        Minutes after which no new run starts; the tables say which cells are missing.
    resume : bool, default False
        Keep the runs already in ``out_dir/results.csv`` and skip them.
    progress : bool, default False
        Progress bars of the fits.
    log : callable
        Receives one line per run.

    Returns
    -------
    pandas.DataFrame
        The long results table.
    """
    out = Path(out_dir)
    (out / "figures").mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    splits = _split(load_dataset(config, root, cache))
    data_seconds = time.perf_counter() - started
    log(
        f"data: {splits.train.n_obs} train / {splits.val.n_obs} val / {splits.test.n_obs} test "
        f"rows, D = {splits.train.n_features} ({data_seconds:.1f} s)"
    )

    rows: list[dict] = []
    csv = out / "results.csv"
    settings = out / "settings.json"
    if resume and csv.exists():
        stored = json.loads(settings.read_text()) if settings.exists() else None
        if stored != fingerprint(config):
            raise ValueError(
                f"{out} holds results of other data or training settings (settings.json "
                f"differs from this configuration): use another --out, or run without --resume"
            )
        rows = report.read_results(csv).to_dict("records")
    write_text_atomic(settings, json.dumps(fingerprint(config), indent=2))
    done = {tuple(str(r[k]) for k in KEY) for r in rows}
    fitted: dict[tuple, tuple[dict, float, int]] = {}
    latents: dict[tuple, dict[int, np.ndarray]] = {}
    examples: dict[tuple, dict[str, np.ndarray]] = {}
    trivial: dict[str, Precomputed] = {}
    skipped = 0
    for run in plan_runs(config):
        exp = config["experiments"][run.experiment]
        if tuple(str(v) for v in run.key()) in done:
            continue
        elapsed = (time.perf_counter() - started) / 60
        if time_budget is not None and elapsed > time_budget:
            skipped += 1
            continue
        if run.model in TRIVIAL_BASELINES:
            trivial = trivial or trivial_baselines(config, splits)
            scores, arrays = evaluate(trivial[run.model], exp.get("tasks", []), splits, True)
            seconds, epochs = 0.0, 0
            examples[(run.experiment, run.model, run.covariates, 0, 0)] = arrays
        elif run.fit_key() in fitted:
            scores, seconds, epochs = fitted[run.fit_key()]
        else:
            scores, arrays, seconds, epochs = _fit_and_evaluate(
                run, config, exp, splits, device, progress
            )
            fitted[run.fit_key()] = (scores, seconds, epochs)
            cell = (run.experiment, run.model, run.covariates, run.latent_dim, run.n_basis)
            if "latents" in arrays:
                latents.setdefault(cell, {})[run.seed] = arrays.pop("latents")
            if run.seed == 0:
                examples[cell] = arrays
        for metric, value in scores.items():
            rows.append(_row(config, run, metric, value, seconds, epochs))
        log(
            f"{run.experiment:>15} {run.model:>11} {run.covariates:>8} L={run.latent_dim:<3} "
            f"2M={run.n_basis:<3} seed={run.seed} {seconds:6.1f} s  "
            + "  ".join(f"{k}={v:.5f}" for k, v in scores.items())
        )
        _write_results(rows, out, config)
    rows += _mcc_pairs(config, latents)
    results = _write_results(rows, out, config)
    figures = _figures(config, splits, examples, results, out / "figures")
    wall = time.perf_counter() - started
    info = {
        "config": config,
        "machine": machine(),
        "command": _command(),
        "device": device,
        "wall_seconds": wall,
        "data_seconds": data_seconds,
        "runs_skipped_by_time_budget": skipped,
        "figures": [str(p.relative_to(out)) for p in figures],
    }
    write_text_atomic(out / "run.json", json.dumps(info, indent=2, default=str))
    log(f"done in {wall / 60:.1f} min; {skipped} run(s) skipped by the time budget; wrote {out}")
    return results


FINGERPRINT = (
    "dataset",
    "data",
    "training",
    "covariates",
    "gp",
    "network",
    "noise_scale",
    "standardize",
)


def fingerprint(config: dict) -> dict:
    """The settings a stored result depends on besides its run key (resume checks them)."""
    out = {key: config.get(key) for key in FINGERPRINT}
    out["networks"] = {
        name: exp.get("network", config.get("network"))
        for name, exp in config["experiments"].items()
    }
    return json.loads(json.dumps(out, default=str))


def _command() -> str:
    """The command line, as typed (``python -m benchmarks.paper ...``)."""
    argv = list(sys.argv)
    if argv and argv[0].endswith("__main__.py"):
        argv[0] = "python -m benchmarks.paper"
    return " ".join(argv)


def _write_results(rows: list[dict], out: Path, config: dict) -> pd.DataFrame:
    results = pd.DataFrame(rows)
    if not results.empty:
        title = config.get("title", config["dataset"])
        if config.get("preset"):
            title += f" ({config['preset']} preset)"
        report.write_report(results, out, title)
    return results
