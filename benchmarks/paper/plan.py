"""What a benchmark fits: the model, baseline and task names, and the runs of a configuration.

A :class:`Run` is one fit (experiment × model × covariate set × L × 2M × seed);
:func:`plan_runs` lists every run of a configuration, the trivial baselines first.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from . import baselines
from .results import BASELINE_PREFIX

__all__ = [
    "BASELINES",
    "KEY",
    "LINEAR_BASELINE",
    "LMM_MODELS",
    "TASKS",
    "TRIVIAL_BASELINES",
    "TRIVIAL_TASKS",
    "Run",
    "plan_runs",
]

LMM_MODELS = {
    "oLMM": ("olmm", "elbo"),
    "sLMM": ("slmm", "elbo"),
    "oLMM-GSNN": ("olmm", "gsnn"),
    "sLMM-GSNN": ("slmm", "gsnn"),
}
LINEAR_BASELINE = "baseline: linear LMM"
BASELINES = ("VAE", "CVAE", "GP stand-in", LINEAR_BASELINE)
#: Trivial baselines (no training), one row per experiment and task: "baseline: " + name.
TRIVIAL_BASELINES = tuple(f"{BASELINE_PREFIX}{name}" for name in baselines.NAMES)
#: The tasks the trivial baselines take part in.
TRIVIAL_TASKS = ("imputation", "prediction", "interpolation")
TASKS = ("imputation", "prediction", "interpolation", "mcc_seeds", "mcc_truth")
KEY = ["experiment", "model", "covariates", "latent_dim", "n_basis", "seed"]


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
