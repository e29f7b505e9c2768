"""The figures of a benchmark run: which to draw from its results and example predictions.

Image data sets get reconstructions and imputations of example instances, PhysioNet predicted
against observed trajectories, a 2M sweep its metric against the number of basis functions
(drawn by :mod:`benchmarks.paper.plots`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from . import plots
from .data import Splits
from .plan import TRIVIAL_BASELINES

__all__ = ["FIGURE_BASELINES"]

#: Trivial baselines drawn beside the models in the image and trajectory figures.
FIGURE_BASELINES = TRIVIAL_BASELINES[:3]


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
                            plots.plot_basis_sweep(
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
            plots.plot_image_grid(
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
            plots.plot_image_grid(
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
    return plots.plot_trajectories(
        t[order],
        observed[order],
        mask[order],
        series,
        [names[i] for i in idx],
        path,
        title=f"Patient {first}: observed (points) and predicted (lines), standardized units",
        split_time=float(test.data[time_col][test_rows].min()),
    )
