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
``2M = 0``). The time covariate is :data:`TIME_COVARIATES`'s entry of the data set, or
``[trivial_baselines] time = "...", period = ...`` of the configuration; ``enabled = false``
turns them off. :func:`baselines_only` adds them to stored results without training anything.

Tasks
-----
``imputation``: MSE on the masked entries of the training rows against the unmasked truth (a
GSNN has no encoder: its imputation is the covariate fill-in). ``prediction`` /
``interpolation``: MSE of conditional generation on the test rows (all entries where the truth is
known, the observed ones otherwise). ``mcc_seeds``: MCC between the posterior latents of the
training rows of every pair of seeds (spec §10). ``mcc_truth``: MCC against the true latents.
"""

from __future__ import annotations

import copy
import itertools
import json
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import tomllib
import torch
from torch import nn

from benchmarks.machine import machine as describe_machine
from pyro_lmmvae import LMMVAE, metrics
from pyro_lmmvae.datasets import (
    LongitudinalDataset,
    load_physionet,
    make_health_mnist,
    make_rotating_mnist,
    make_synthetic,
)
from pyro_lmmvae.gp import additive_gp, categorical, continuous, interaction
from pyro_lmmvae.io import write_atomic, write_text_atomic

from . import baselines, report
from .gp_vae import fit_gp_vae

CONFIG_DIR = Path(__file__).resolve().parent / "configs"
LMM_MODELS = {
    "oLMM": ("olmm", "elbo"),
    "sLMM": ("slmm", "elbo"),
    "oLMM-GSNN": ("olmm", "gsnn"),
    "sLMM-GSNN": ("slmm", "gsnn"),
}
LINEAR_BASELINE = "baseline: linear LMM"
BASELINES = ("VAE", "CVAE", "GP stand-in", LINEAR_BASELINE)
#: Trivial baselines (no training), one row per experiment and task: "baseline: " + name.
TRIVIAL_BASELINES = tuple(f"{report.BASELINE_PREFIX}{name}" for name in baselines.NAMES)
#: The tasks the trivial baselines take part in.
TRIVIAL_TASKS = ("imputation", "prediction", "interpolation")
#: Trivial baselines drawn beside the models in the image and trajectory figures.
FIGURE_BASELINES = TRIVIAL_BASELINES[:3]
#: Data set → (time covariate, its period or None) of the trivial baselines.
TIME_COVARIATES: dict[str, tuple[str, float | None]] = {
    "health_mnist": ("age", None),
    "rotating_mnist": ("angle", 2 * np.pi),
    "physionet": ("t", None),
    "synthetic": ("t", None),
}
TASKS = ("imputation", "prediction", "interpolation", "mcc_seeds", "mcc_truth")
KEY = ["experiment", "model", "covariates", "latent_dim", "n_basis", "seed"]


# ----------------------------------------------------------------------------- configuration
def deep_merge(base: Mapping, override: Mapping) -> dict:
    """``base`` with ``override`` merged in, recursively for nested tables."""
    merged = copy.deepcopy(dict(base))
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def parse_override(text: str) -> dict:
    """``"a.b=3"`` → ``{"a": {"b": 3}}``; the value is read as TOML (a bare word as a string)."""
    if "=" not in text:
        raise ValueError(f"--set expects KEY=VALUE (dotted KEY), got {text!r}")
    key, raw = text.split("=", 1)
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    out: dict = {}
    node = out
    parts = key.strip().split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value
    return out


def load_config(
    path: str | Path, preset: str | None = None, overrides: list[str] | tuple = ()
) -> dict:
    """Read a benchmark configuration, apply a preset and ``--set`` overrides, and check it.

    Parameters
    ----------
    path : str or Path
        A TOML file, or the name of one in ``benchmarks/paper/configs`` (``"health_mnist"``).
    preset : str, optional
        A table of ``[presets.<name>]`` merged over the configuration.
    overrides : sequence of str
        ``KEY=VALUE`` with a dotted key, e.g. ``training.max_epochs=5``, merged last.

    Raises
    ------
    ValueError
        For an unknown preset, model, task or covariate set, naming it.
    """
    path = Path(path)
    if not path.exists() and (CONFIG_DIR / f"{path.name}.toml").exists():
        path = CONFIG_DIR / f"{path.name}.toml"
    if not path.is_file():
        raise FileNotFoundError(f"benchmark configuration {path} not found")
    config = tomllib.loads(path.read_text())
    presets = config.pop("presets", {})
    if preset is not None:
        if preset not in presets:
            raise ValueError(f"{path.name} has no preset {preset!r}; presets: {sorted(presets)}")
        config = deep_merge(config, presets[preset])
    for text in overrides:
        config = deep_merge(config, parse_override(text))
    config["preset"] = preset
    config["config_path"] = str(path)
    _check_config(config)
    return config


def _check_config(config: dict) -> None:
    for key in ("dataset", "experiments", "training"):
        if key not in config:
            raise ValueError(f"benchmark configuration lacks [{key}]")
    if config["dataset"] not in LOADERS:
        raise ValueError(f"unknown dataset {config['dataset']!r}; choose from {sorted(LOADERS)}")
    sets = config.get("covariates", {})
    for name, exp in config["experiments"].items():
        for model in exp.get("models", []):
            if model not in LMM_MODELS:
                raise ValueError(f"experiment {name}: unknown model {model!r} ({list(LMM_MODELS)})")
        for model, cov in exp.get("baselines", {}).items():
            known = (*BASELINES, *MODEL_FITTERS)
            if model not in known:
                raise ValueError(f"experiment {name}: unknown baseline {model!r} ({known})")
            if model in ("CVAE", LINEAR_BASELINE) and cov not in sets:
                raise ValueError(f"experiment {name}: {model} covariate set {cov!r} is not defined")
        for cov in exp.get("covariates", []):
            if cov not in sets:
                raise ValueError(f"experiment {name}: covariate set {cov!r} is not defined")
        for task in exp.get("tasks", []):
            if task not in TASKS:
                raise ValueError(f"experiment {name}: unknown task {task!r} ({TASKS})")


# ----------------------------------------------------------------------------- datasets
def _mnist_root(root: Path) -> Path:
    return root / "mnist"


LOADERS = {
    "health_mnist": lambda root, args, cache: make_health_mnist(
        _mnist_root(root), cache=cache, **args
    ),
    "rotating_mnist": lambda root, args, cache: make_rotating_mnist(
        _mnist_root(root), cache=cache, **args
    ),
    "physionet": lambda root, args, cache: load_physionet(
        root / "physionet2012", cache=cache, **args
    ),
    "synthetic": lambda root, args, cache: make_synthetic(**args),
}


def load_dataset(config: dict, root: str | Path, cache: str | Path | None) -> LongitudinalDataset:
    """The configuration's dataset, from the shared data folder ``root``."""
    return LOADERS[config["dataset"]](Path(root), dict(config.get("data", {})), cache)


# ----------------------------------------------------------------------------- runs
@dataclass(frozen=True)
class Run:
    """One fit: a model on a covariate set at a latent size, basis size and training seed."""

    experiment: str
    model: str
    covariates: str
    latent_dim: int
    n_basis: int
    seed: int
    network: str

    def key(self) -> tuple:
        return (
            self.experiment,
            self.model,
            self.covariates,
            self.latent_dim,
            self.n_basis,
            str(self.seed),
        )

    def fit_key(self) -> tuple:
        """Runs with equal fit keys fit the same model: experiments share them."""
        return (self.model, self.covariates, self.latent_dim, self.n_basis, self.seed, self.network)


def _trivial_runs(config: dict) -> list[Run]:
    """One run per trivial baseline and experiment that has a task they take part in."""
    if not config.get("trivial_baselines", {}).get("enabled", True):
        return []
    return [
        Run(name, model, "-", 0, 0, 0, "-")
        for name, exp in config["experiments"].items()
        if exp.get("enabled", True) and set(exp.get("tasks", [])) & set(TRIVIAL_TASKS)
        for model in TRIVIAL_BASELINES
    ]


def plan_runs(config: dict) -> list[Run]:
    """Every run of the configuration, seed-major so that a time budget covers all cells.

    The trivial baselines come first (they take no training), then the fits.
    """
    runs = _trivial_runs(config)
    seeds = int(config.get("seeds", 1))
    for seed in range(seeds):
        for name, exp in config["experiments"].items():
            if not exp.get("enabled", True):
                continue
            network = exp.get("network", config.get("network", "mlp"))
            cells = [(m, c) for m in exp.get("models", []) for c in exp.get("covariates", [])]
            cells += list(exp.get("baselines", {}).items())
            for (model, cov), latent, n_basis in itertools.product(
                cells, exp["latent_dims"], exp.get("n_basis", [0])
            ):
                n_basis = 0 if model == "VAE" else int(n_basis)  # "~ 0" has no basis
                run = Run(name, model, cov, int(latent), n_basis, seed, network)
                if run not in runs:
                    runs.append(run)
    return runs


def _fill(template: str, n_basis: int) -> str:
    if "{M}" in template:
        if n_basis < 2 or n_basis % 2:
            raise ValueError(f"{template!r} needs an even n_basis = 2M >= 2, got {n_basis}")
        return template.replace("{M}", str(n_basis // 2))
    return template


def _without_intercept(random: str) -> str | None:
    """The random part without its ``1`` (the sLMM's ε_p takes the random intercept's place)."""
    terms = [t.strip() for t in random.split("+") if t.strip() not in ("1", "")]
    return " + ".join(["0"] + terms) if terms else None


def model_arguments(run: Run, config: dict, train: LongitudinalDataset) -> tuple[str, dict]:
    """The formula and the :class:`LMMVAE` keyword arguments of a run."""
    instance = train.instance_column
    common = {
        "latent_dim": run.latent_dim,
        "network": run.network,
        "instance": instance,
        "standardize": config.get("standardize", True),
        "noise_scale": config.get("noise_scale"),
        "seed": run.seed,
    }
    if run.model == "VAE":
        return "~ 0", common
    if run.model == "GP stand-in":
        gp = config["gp"]
        components = [_component(text, gp.get("period")) for text in gp["components"]]
        frequencies = run.n_basis // 2 if run.n_basis else gp.get("n_frequencies", 4)
        setup = additive_gp(
            components,
            train.data,
            instance=instance,
            n_frequencies=frequencies,
            kernel=gp.get("kernel", "se"),
            lengthscale=gp.get("lengthscale"),
        )
        return setup.formula, common | setup.model_kwargs()
    cov = config["covariates"][run.covariates]
    fixed = _fill(cov["fixed"], run.n_basis)
    if run.model == "CVAE":
        return f"~ {fixed} + C({instance})", common | {"variant": "cvae"}
    variant, objective = LMM_MODELS.get(run.model, ("olmm", "elbo"))  # the linear LMM: an oLMM
    random = _fill(cov.get("random", "1"), run.n_basis)
    if variant == "slmm" and objective == "elbo":
        random = _without_intercept(random)
    formula = f"~ {fixed}" + (f" + ({random} | {instance})" if random else "")
    kwargs = common | {"variant": variant, "objective": objective}
    if run.model == LINEAR_BASELINE:
        kwargs["decoder"] = linear_decoder(run.latent_dim, train.n_features, run.seed)
    return formula, kwargs


def linear_decoder(latent_dim: int, obs_dim: int, seed: int) -> nn.Module:
    """``g(z) = W z + b``, initialised from ``seed`` (the decoder of ``baseline: linear LMM``)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return nn.Linear(latent_dim, obs_dim)


def _component(text: str, period: float | None = None):
    """``"continuous:age"``, ``"categorical:sex"``, ``"interaction:id:age[:kind]"``."""
    kind, *columns = text.split(":")
    if kind == "continuous" and len(columns) == 1:
        return continuous(columns[0], period=period)
    if kind == "categorical" and len(columns) == 1:
        return categorical(columns[0])
    if kind == "interaction" and len(columns) in (2, 3):
        extra = {"kind": columns[2]} if len(columns) == 3 else {}
        return interaction(columns[0], columns[1], period=period, **extra)
    raise ValueError(f"bad GP component {text!r}: use continuous:t, categorical:c, interaction:a:t")


# ----------------------------------------------------------------------------- tasks
@dataclass
class Splits:
    train: LongitudinalDataset
    val: LongitudinalDataset
    test: LongitudinalDataset


def _test_mse(pred: np.ndarray, test: LongitudinalDataset) -> float:
    if test.y_true is not None:
        return metrics.prediction_mse(pred, test.y_true)
    return metrics.observed_mse(pred, test.y, test.mask)


def evaluate(model: LMMVAE, tasks: list[str], splits: Splits, gsnn: bool) -> tuple[dict, dict]:
    """The run's metrics and the arrays kept for figures and across-seed MCC."""
    out: dict[str, float] = {}
    arrays: dict[str, np.ndarray] = {}
    train, test = splits.train, splits.test
    if "imputation" in tasks and train.y_true is not None and not train.mask.all():
        recon = model.impute(train.y, train.mask, train.data, keep_observed=False)
        out["imputation_mse"] = metrics.imputation_mse(recon, train.y_true, train.mask)
        arrays["imputation"] = recon
    held_out = [task for task in ("prediction", "interpolation") if task in tasks]
    if held_out:  # the same conditional generation, named after the protocol's task
        arrays["prediction"] = model.predict(test.data)
        for task in held_out:
            out[f"{task}_mse"] = _test_mse(arrays["prediction"], test)
    if not gsnn and ("mcc_seeds" in tasks or "mcc_truth" in tasks):
        latents = model.latents(train.y, train.mask, train.data)
        arrays["latents"] = latents
        if "mcc_truth" in tasks:
            z = train.truth["z"][train.data["row"].to_numpy()]
            out["mcc_truth"] = metrics.mcc(latents, z)
    return out, arrays


@dataclass(frozen=True)
class Precomputed:
    """Predictions computed beforehand, behind the part of the LMMVAE interface that
    :func:`evaluate` uses (the trivial baselines)."""

    imputation: np.ndarray
    prediction: np.ndarray

    def impute(self, y, mask, data, keep_observed: bool = False) -> np.ndarray:
        """The imputed training rows."""
        return self.imputation

    def predict(self, data) -> np.ndarray:
        """The predicted test rows."""
        return self.prediction


def trivial_baselines(config: dict, splits: Splits) -> dict[str, Precomputed]:
    """The trivial baselines' imputations of the training rows and predictions of the test rows.

    Parameters
    ----------
    config : dict
        From :func:`load_config`: the data set picks the time covariate of
        :data:`TIME_COVARIATES`, which ``[trivial_baselines] time`` / ``period`` override.
    splits : Splits

    Returns
    -------
    dict of str to Precomputed
        :data:`TRIVIAL_BASELINES` → predictions, scored by :func:`evaluate` like a model's.
    """
    time_column, period = TIME_COVARIATES.get(config["dataset"], (None, None))
    options = config.get("trivial_baselines", {})
    time_column = options.get("time", time_column)
    period = options.get("period", period if "time" not in options else None)
    train, test = splits.train, splits.test
    if time_column is None or time_column not in train.data:
        raise ValueError(
            f"trivial baselines: no time covariate {time_column!r} in the data; set "
            "[trivial_baselines] time = COLUMN (or enabled = false)"
        )

    def rows(ds: LongitudinalDataset) -> tuple[np.ndarray, np.ndarray]:
        ids = ds.data[ds.instance_column].to_numpy()
        return ids, ds.data[time_column].to_numpy(dtype=float)

    ids, t = rows(train)
    fits = baselines.predict_all(ids, t, train.y, train.mask, ids, t, period=period)
    held_out = baselines.predict_all(ids, t, train.y, train.mask, *rows(test), period=period)
    return {
        f"{report.BASELINE_PREFIX}{name}": Precomputed(
            baselines.impute(fits[name], train.y, train.mask), held_out[name]
        )
        for name in baselines.NAMES
    }


# ----------------------------------------------------------------------------- driver
def machine() -> dict:
    """The machine a benchmark ran on (see :func:`benchmarks.machine.machine`)."""
    return describe_machine()


def _split(ds: LongitudinalDataset) -> Splits:
    data = ds.data.assign(row=np.arange(ds.n_obs))
    full = LongitudinalDataset(
        data, ds.y, ds.mask, ds.y_true, ds.truth, ds.name, ds.instance_column
    )
    return Splits(full.split("train"), full.split("val"), full.split("test"))


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
    baselines of every experiment are scored as :func:`run_benchmark` would (no training). With
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
        A folder written by :func:`run_benchmark`.
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


def fit_lmmvae(
    run: Run, config: dict, splits: Splits, device: str, progress: bool
) -> tuple[LMMVAE, int]:
    """Fit the :class:`LMMVAE` of a run (:func:`model_arguments`) with ``[training]``.

    Parameters
    ----------
    run : Run
    config : dict
        From :func:`load_config`.
    splits : Splits
        Fits on ``splits.train``, validates on ``splits.val``.
    device : str
    progress : bool

    Returns
    -------
    (LMMVAE, int)
        The fitted model and the number of epochs trained.
    """
    train, val = splits.train, splits.val
    formula, kwargs = model_arguments(run, config, train)
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    training = config["training"]
    model = LMMVAE(formula, train.data, train.y, train.mask, **kwargs)
    if training.get("until_converged", False):
        # fit()'s own defaults: learning rates, KL estimator, lazy updates, and training until
        # the validation objective stops improving (the convergence rule), best weights kept
        model.fit(
            batch_size=int(training.get("batch_size", 32)),
            validation=(val.data, val.y, val.mask),
            device=device,
            progress=progress,
            seed=run.seed,
        )
        return model, len(model.history.train_loss)
    model.fit(
        max_epochs=int(training["max_epochs"]),
        batch_size=int(training.get("batch_size", 32)),
        lr=float(training.get("lr", 1e-3)),
        lr_decay=float(training.get("lr_decay", 0.99)),
        local_lr=training.get("local_lr"),
        kl=training.get("kl", "auto"),
        sparse_updates=bool(training.get("sparse_updates", True)),
        validation=(val.data, val.y, val.mask),
        patience=training.get("patience"),
        device=device,
        progress=progress,
        seed=run.seed,
    )
    return model, len(model.history.train_loss)


ModelFitter = Callable[[Run, dict, Splits, str, bool], tuple[Any, int]]
"""``(run, config, splits, device, progress) → (fitted model, epochs)``, like :func:`fit_lmmvae`.

The model needs ``impute(y, mask, data, keep_observed=False)`` and ``predict(data)`` returning
``(n, D)`` arrays (:func:`evaluate`), and ``latents(y, mask, data)`` for the MCC tasks (a model
without it, or with ``pair.gsnn = True``, gets no MCC rows).
"""

#: Register another model here: name → fitter. A name listed here may appear in an experiment's
#: ``baselines = { NAME = "-" }`` (its covariate set is passed as ``run.covariates``); every other
#: model is fitted by :func:`fit_lmmvae`.
MODEL_FITTERS: dict[str, ModelFitter] = {"GP-prior VAE": fit_gp_vae}  # benchmarks/paper/gp_vae.py


def _fit_and_evaluate(
    run: Run, config: dict, exp: dict, splits: Splits, device: str, progress: bool
):
    begin = time.perf_counter()
    model, epochs = MODEL_FITTERS.get(run.model, fit_lmmvae)(run, config, splits, device, progress)
    seconds = time.perf_counter() - begin
    gsnn = bool(getattr(getattr(model, "pair", None), "gsnn", False))
    no_latents = gsnn or not hasattr(model, "latents")
    scores, arrays = evaluate(model, exp.get("tasks", []), splits, no_latents)
    return scores, arrays, seconds, epochs


def _row(config: dict, run: Run, metric: str, value: float, seconds: float, epochs: int) -> dict:
    return {
        "dataset": config["dataset"],
        "experiment": run.experiment,
        "model": run.model,
        "covariates": run.covariates,
        "latent_dim": run.latent_dim,
        "n_basis": run.n_basis,
        "seed": str(run.seed),
        "metric": metric,
        "value": float(value),
        "epochs": epochs,
        "train_seconds": round(seconds, 2),
    }


def _mcc_pairs(config: dict, latents: dict) -> list[dict]:
    """MCC between the posterior latents of every pair of seeds of a cell (spec §10)."""
    rows = []
    for (experiment, model, cov, latent, n_basis), by_seed in latents.items():
        if "mcc_seeds" not in config["experiments"][experiment].get("tasks", []):
            continue
        for a, b in itertools.combinations(sorted(by_seed), 2):
            run = Run(experiment, model, cov, latent, n_basis, 0, "")
            row = _row(config, run, "mcc_seeds", metrics.mcc(by_seed[a], by_seed[b]), 0.0, 0)
            rows.append(row | {"seed": f"{a}-{b}"})
    return rows


def _write_results(rows: list[dict], out: Path, config: dict) -> pd.DataFrame:
    results = pd.DataFrame(rows)
    if not results.empty:
        title = config.get("title", config["dataset"])
        if config.get("preset"):
            title += f" ({config['preset']} preset)"
        report.write_report(results, out, title)
    return results


# ----------------------------------------------------------------------------- figures
def _figures(config, splits: Splits, examples: dict, results: pd.DataFrame, folder: Path):
    paths = []
    figs = config.get("figures", {})
    if not results.empty:
        for metric in sorted(results["metric"].unique()):
            sweep = results[(results["metric"] == metric) & (results["n_basis"] > 0)]
            if sweep["n_basis"].nunique() > 1:
                for experiment in sweep["experiment"].unique():
                    part = sweep[sweep["experiment"] == experiment]
                    trivial = results[
                        (results["metric"] == metric)
                        & (results["experiment"] == experiment)
                        & results["model"].isin(TRIVIAL_BASELINES)
                    ]
                    if part["n_basis"].nunique() > 1:
                        paths.append(
                            report.plot_basis_sweep(
                                part,
                                metric,
                                folder / f"{experiment}_{metric}_vs_basis.png",
                                title=f"{config.get('title', '')}: {metric} vs 2M",
                                baselines=trivial.groupby("model", sort=False)["value"]
                                .mean()
                                .to_dict(),
                            )
                        )
    shape = figs.get("image_shape")
    groups: dict[tuple, dict[str, dict]] = {}
    trivial: dict[str, dict[str, dict]] = {}  # drawn beside the models of their experiment
    for (experiment, model, cov, latent, _), arrays in examples.items():
        if len(config["experiments"][experiment].get("n_basis", [0])) > 1:
            continue  # sweeps are summarised by their MSE-vs-2M figure
        if model in TRIVIAL_BASELINES:
            if model in FIGURE_BASELINES:
                trivial.setdefault(experiment, {})[model] = arrays
            continue
        label = model if cov in ("-", "") else f"{model} {cov}"
        groups.setdefault((experiment, latent), {})[label] = arrays
    for (experiment, latent), by_model in groups.items():
        by_model = by_model | trivial.get(experiment, {})
        stem = f"{experiment}_L{latent}"
        if shape:
            paths += _image_figures(splits, by_model, tuple(shape), figs, folder, stem, latent)
        else:
            predicted = {k: a["prediction"] for k, a in by_model.items() if "prediction" in a}
            if predicted:
                paths.append(
                    _trajectory_figure(
                        config, splits, predicted, folder / f"{stem}_trajectories.png"
                    )
                )
    return [p for p in paths if p is not None]


def _image_figures(
    splits: Splits, by_model: dict, shape, figs: dict, folder: Path, stem: str, latent: int
) -> list[Path]:
    """Held-out frames and imputations of example instances, one row per model."""
    paths = []
    test, train = splits.test, splits.train
    frames = int(figs.get("frames", 8))
    predicted = {k: a["prediction"] for k, a in by_model.items() if "prediction" in a}
    if predicted:
        first = test.data[test.instance_column].iloc[0]
        rows = np.flatnonzero((test.data[test.instance_column] == first).to_numpy())[:frames]
        truth = test.y_true if test.y_true is not None else test.y
        grid = {"truth": truth[rows]} | {k: v[rows] for k, v in predicted.items()}
        paths.append(
            report.plot_image_grid(
                grid,
                shape,
                folder / f"{stem}_prediction.png",
                title=f"Held-out frames of test instance {first} (L = {latent})",
            )
        )
    imputed = {k: a["imputation"] for k, a in by_model.items() if "imputation" in a}
    if imputed:
        rows = np.flatnonzero(~train.mask.all(1))[:frames]
        grid = {"truth": train.y_true[rows], "observed": train.y[rows]}
        grid |= {k: v[rows] for k, v in imputed.items()}
        paths.append(
            report.plot_image_grid(
                grid,
                shape,
                folder / f"{stem}_imputation.png",
                title=f"Imputation of the masked pixels of training frames (L = {latent})",
                mask={"observed": train.mask[rows]},
            )
        )
    return paths


def _trajectory_figure(config, splits: Splits, predictions: dict, path: Path):
    """Observed against predicted trajectories of the first test instance (PhysioNet)."""
    test, train = splits.test, splits.train
    col, time_col = test.instance_column, config.get("figures", {}).get("time", "t")
    if time_col not in test.data:
        return None
    first = test.data[col].iloc[0]
    test_rows = (test.data[col] == first).to_numpy()
    train_rows = (train.data[col] == first).to_numpy()
    names = [str(v) for v in test.truth.get("variables", range(test.n_features))]
    wanted = config.get("figures", {}).get("variables", names[:6])
    idx = [names.index(v) for v in wanted if v in names]
    t = np.concatenate(
        [train.data[time_col].to_numpy()[train_rows], test.data[time_col].to_numpy()[test_rows]]
    )
    order = np.argsort(t, kind="stable")
    observed = np.concatenate([train.y[train_rows], test.y[test_rows]])[:, idx]
    mask = np.concatenate([train.mask[train_rows], test.mask[test_rows]])[:, idx]
    series = {}
    for model, prediction in predictions.items():
        predicted = np.full((len(t), len(idx)), np.nan)
        predicted[train_rows.sum() :] = prediction[test_rows][:, idx]
        series[model] = predicted[order]
    return report.plot_trajectories(
        t[order],
        observed[order],
        mask[order],
        series,
        [names[i] for i in idx],
        path,
        title=f"Patient {first}: observed (points) and predicted (lines), standardized units",
        split_time=float(test.data[time_col][test_rows].min()),
    )
