"""Benchmark configurations: TOML files, presets, ``--set`` overrides and their checks.

A configuration names a dataset, its networks, covariate sets and experiments
(``benchmarks/paper/configs/*.toml``); a *preset* (``[presets.<name>]``) is merged over it and
``KEY=VALUE`` overrides last. :func:`load_config` checks that every dataset, model, baseline,
covariate set and task it names is known.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path

import tomllib

from .data import LOADERS
from .models import MODEL_FITTERS
from .plan import BASELINES, LINEAR_BASELINE, LMM_MODELS, TASKS

__all__ = ["CONFIG_DIR", "deep_merge", "load_config", "parse_override"]

CONFIG_DIR = Path(__file__).resolve().parent / "configs"


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
