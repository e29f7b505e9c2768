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
additive GP as SE-scaled Fourier features, :func:`pyro_lmmvae.additive_gp.additive_gp`, spec §9).

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
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import tomllib

from benchmarks.machine import machine as describe_machine
from pyro_lmmvae import LMMVAE, metrics
from pyro_lmmvae.additive_gp import additive_gp, categorical, continuous, interaction
from pyro_lmmvae.datasets import (
    LongitudinalDataset,
    load_physionet,
    make_health_mnist,
    make_rotating_mnist,
    make_synthetic,
)
from pyro_lmmvae.io import write_text_atomic

from . import report

CONFIG_DIR = Path(__file__).resolve().parent / "configs"
LMM_MODELS = {
    "oLMM": ("olmm", "elbo"),
    "sLMM": ("slmm", "elbo"),
    "oLMM-GSNN": ("olmm", "gsnn"),
    "sLMM-GSNN": ("slmm", "gsnn"),
}
BASELINES = ("VAE", "CVAE", "GP stand-in")
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
            if model not in BASELINES:
                raise ValueError(f"experiment {name}: unknown baseline {model!r} ({BASELINES})")
            if model == "CVAE" and cov not in sets:
                raise ValueError(f"experiment {name}: CVAE covariate set {cov!r} is not defined")
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


def plan_runs(config: dict) -> list[Run]:
    """Every run of the configuration, seed-major so that a time budget covers all cells."""
    runs = []
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
    variant, objective = LMM_MODELS[run.model]
    random = _fill(cov.get("random", "1"), run.n_basis)
    if variant == "slmm" and objective == "elbo":
        random = _without_intercept(random)
    formula = f"~ {fixed}" + (f" + ({random} | {instance})" if random else "")
    return formula, common | {"variant": variant, "objective": objective}


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
    skipped = 0
    for run in plan_runs(config):
        exp = config["experiments"][run.experiment]
        if tuple(str(v) for v in run.key()) in done:
            continue
        elapsed = (time.perf_counter() - started) / 60
        if time_budget is not None and elapsed > time_budget:
            skipped += 1
            continue
        if run.fit_key() in fitted:
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


def _fit_and_evaluate(
    run: Run, config: dict, exp: dict, splits: Splits, device: str, progress: bool
):
    train, val = splits.train, splits.val
    formula, kwargs = model_arguments(run, config, train)
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    training = config["training"]
    begin = time.perf_counter()
    model = LMMVAE(formula, train.data, train.y, train.mask, **kwargs)
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
    seconds = time.perf_counter() - begin
    scores, arrays = evaluate(model, exp.get("tasks", []), splits, model.pair.gsnn)
    return scores, arrays, seconds, len(model.history.train_loss)


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
                    if part["n_basis"].nunique() > 1:
                        paths.append(
                            report.plot_basis_sweep(
                                part,
                                metric,
                                folder / f"{experiment}_{metric}_vs_basis.png",
                                title=f"{config.get('title', '')}: {metric} vs 2M",
                            )
                        )
    shape = figs.get("image_shape")
    groups: dict[tuple, dict[str, dict]] = {}
    for (experiment, model, cov, latent, _), arrays in examples.items():
        if len(config["experiments"][experiment].get("n_basis", [0])) > 1:
            continue  # sweeps are summarised by their MSE-vs-2M figure
        label = model if cov in ("-", "") else f"{model} {cov}"
        groups.setdefault((experiment, latent), {})[label] = arrays
    for (experiment, latent), by_model in groups.items():
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
