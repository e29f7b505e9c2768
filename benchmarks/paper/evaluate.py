"""Scoring a run: the tasks' metrics, the trivial baselines' predictions, the result rows.

:func:`evaluate` computes a fitted model's metrics on the tasks of its experiment (imputation,
prediction / interpolation, MCC against the truth); :func:`trivial_baselines` wraps the trivial
baselines' predictions (:mod:`benchmarks.paper.baselines`) as :class:`Precomputed` models it
scores the same way; :func:`_row` is one row of the long results table and :func:`_mcc_pairs`
the across-seed MCC rows (spec §10).
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass

import numpy as np

from pyro_lmmvae import LMMVAE, metrics
from pyro_lmmvae.datasets import LongitudinalDataset

from . import baselines
from .data import Splits
from .models import MODEL_FITTERS, fit_lmmvae
from .plan import Run
from .results import BASELINE_PREFIX

__all__ = ["TIME_COVARIATES", "Precomputed", "evaluate", "trivial_baselines"]

#: Data set → (time covariate, its period or None) of the trivial baselines.
TIME_COVARIATES: dict[str, tuple[str, float | None]] = {
    "health_mnist": ("age", None),
    "rotating_mnist": ("angle", 2 * np.pi),
    "physionet": ("t", None),
    "synthetic": ("t", None),
}


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
        From :func:`~benchmarks.paper.config.load_config`: the data set picks the time covariate of
        :data:`TIME_COVARIATES`, which ``[trivial_baselines] time`` / ``period`` override.
    splits : Splits

    Returns
    -------
    dict of str to Precomputed
        :data:`~benchmarks.paper.plan.TRIVIAL_BASELINES` → predictions, scored by :func:`evaluate`
        like a model's.
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
        f"{BASELINE_PREFIX}{name}": Precomputed(
            baselines.impute(fits[name], train.y, train.mask), held_out[name]
        )
        for name in baselines.NAMES
    }


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
