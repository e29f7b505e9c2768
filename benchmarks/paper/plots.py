"""Plots of the paper benchmarks: basis sweeps, image grids, trajectories (PNG).

Figures are :class:`matplotlib.figure.Figure` objects built without pyplot (no backend change,
nothing left in pyplot's registry) and every file is written atomically through
:func:`pyro_lmmvae.io.write_atomic`, so an interrupted run never leaves a half-written file.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import NullLocator

from pyro_lmmvae.io import write_atomic

from .results import (
    _HEADERS,
    CONFIG_COLUMNS,
    RESULT_COLUMNS,
    PathLike,
    _check_columns,
    metric_direction,
    summarize,
)

__all__ = ["plot_basis_sweep", "plot_image_grid", "plot_trajectories"]

_DPI = 120


def _save(fig: Figure, path: PathLike) -> Path:
    return write_atomic(path, lambda tmp: fig.savefig(tmp, dpi=_DPI, format="png"))


def _series_label(key: Mapping[str, object]) -> str:
    label = str(key["model"])
    covariates = key.get("covariates")
    if covariates is not None and str(covariates) not in ("-", "", "nan"):
        label += f" {covariates}"
    extras = [f"{_HEADERS.get(c, c)}={v}" for c, v in key.items() if c not in CONFIG_COLUMNS]
    if "latent_dim" in key:
        extras.append(f"L={key['latent_dim']}")
    return label + (f" [{', '.join(extras)}]" if extras else "")


def _title_and_layout(fig: Figure, title: str | None) -> None:
    """Tight layout that keeps half an inch above the panels for the title."""
    if not title:
        fig.tight_layout()
        return
    fig.suptitle(title)
    fig.tight_layout(rect=(0.0, 0.0, 1.0, 1.0 - 0.5 / fig.get_figheight()))


def plot_basis_sweep(
    results: pd.DataFrame,
    metric: str,
    path: PathLike,
    title: str | None = None,
    baselines: Mapping[str, float] | None = None,
) -> Path:
    """Metric against the number of basis functions 2M, one line per (model, covariates).

    Only rows of ``metric`` with ``n_basis > 0`` are used. Each point is the mean over runs with
    ±1 standard deviation error bars; the x axis is log2 with ticks at the values present. If
    rows differ in dataset, experiment or latent dimension, those split the series too and are
    named in the legend.

    Parameters
    ----------
    results : pandas.DataFrame
        Long-format results table (see the module docstring).
    metric : str
        Metric to plot.
    path : str or os.PathLike
        PNG file to write.
    title : str, optional
        Figure title.
    baselines : Mapping of str to float, optional
        Baseline name → value of ``metric``, each drawn as a dashed horizontal line.

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    ValueError
        If no row of ``metric`` has ``n_basis > 0``.
    """
    _check_columns(results, RESULT_COLUMNS)
    rows = results[(results["metric"] == metric) & (results["n_basis"] > 0)]
    if rows.empty:
        raise ValueError(f"no rows of metric {metric!r} with n_basis > 0")
    summary = summarize(rows)
    series_columns = ["model", "covariates"] + [
        c for c in ("dataset", "experiment", "latent_dim") if summary[c].nunique(dropna=False) > 1
    ]
    fig = Figure(figsize=(6.0, 4.0))
    ax = fig.subplots()
    for key, block in summary.groupby(series_columns, sort=False, dropna=False):
        block = block.sort_values("n_basis")
        ax.errorbar(
            block["n_basis"].to_numpy(dtype=float),
            block["mean"].to_numpy(dtype=float),
            yerr=np.nan_to_num(block["std"].to_numpy(dtype=float), nan=0.0),
            marker="o",
            capsize=3,
            label=_series_label(dict(zip(series_columns, key, strict=True))),
        )
    for k, (name, value) in enumerate((baselines or {}).items()):
        if np.isfinite(value):
            style = ("--", ":", "-.", (0, (6, 2, 1, 2, 1, 2)))[k % 4]
            ax.axhline(value, color="0.35", ls=style, lw=1.1, label=str(name))
    ticks = sorted(int(v) for v in summary["n_basis"].unique())
    ax.set_xscale("log", base=2)
    ax.set_xticks(ticks, [str(v) for v in ticks])
    ax.xaxis.set_minor_locator(NullLocator())
    if len(ticks) == 1:
        ax.set_xlim(ticks[0] / 2, ticks[0] * 2)
    direction = metric_direction(metric)
    arrow = {"lower": " (lower is better)", "higher": " (higher is better)", None: ""}[direction]
    ax.set_xlabel("2M (number of basis functions)")
    ax.set_ylabel(metric + arrow)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return _save(fig, path)


def _as_images(name: str, array: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    array = np.asarray(array)
    height, width = shape
    if array.ndim == 1:
        array = array[None]
    if array.ndim not in (2, 3) or array[0].size != height * width:
        raise ValueError(
            f"row {name!r}: expected an array (n, {height * width}) or (n, {height}, {width}), "
            f"got shape {array.shape}"
        )
    return array.reshape(array.shape[0], height, width)


def plot_image_grid(
    images: Mapping[str, np.ndarray],
    shape: tuple[int, int],
    path: PathLike,
    title: str | None = None,
    mask: Mapping[str, np.ndarray] | None = None,
) -> Path:
    """Grid of images: one row per entry, one column per image.

    Parameters
    ----------
    images : Mapping of str to numpy.ndarray
        Row label → images ``(n_columns, D)`` (or ``(n_columns, H, W)``) with values in [0, 1]
        (values outside are clipped); rows may hold different numbers of images.
    shape : tuple of int
        Image shape ``(H, W)`` with ``H * W == D``.
    path : str or os.PathLike
        PNG file to write.
    title : str, optional
        Figure title.
    mask : Mapping of str to numpy.ndarray, optional
        Row label → boolean array of the same shape as that row's images, ``True`` where a
        pixel is observed (the project's convention); unobserved pixels are drawn in red. Rows
        without an entry are drawn plainly.

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    ValueError
        If ``images`` is empty, an array does not match ``shape``, or a mask does not match
        its images.
    """
    if not images:
        raise ValueError("images is empty")
    mask = mask or {}
    unknown = set(mask) - set(images)
    if unknown:
        raise ValueError(f"mask has rows that images lacks: {sorted(unknown)}")
    rows = {name: _as_images(name, array, shape) for name, array in images.items()}
    n_rows, n_cols = len(rows), max(array.shape[0] for array in rows.values())
    label_width = 0.1 * max(len(name) for name in rows) + 0.3
    fig = Figure(figsize=(label_width + 1.0 * max(n_cols, 1), 1.0 * n_rows + (0.4 if title else 0)))
    axes = fig.subplots(n_rows, max(n_cols, 1), squeeze=False)
    for r, (name, array) in enumerate(rows.items()):
        observed = None
        if name in mask:
            observed = np.asarray(mask[name]).astype(bool)
            if observed.size != np.asarray(images[name]).size:
                raise ValueError(
                    f"mask of row {name!r} has shape {observed.shape}, "
                    f"images have shape {np.asarray(images[name]).shape}"
                )
            observed = observed.reshape(array.shape)
        for c in range(axes.shape[1]):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c >= array.shape[0]:
                ax.set_axis_off()
                continue
            image = np.clip(np.nan_to_num(array[c].astype(float), nan=0.0), 0.0, 1.0)
            if observed is None:
                ax.imshow(image, cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
            else:
                rgb = np.repeat(image[..., None], 3, axis=-1)
                rgb[~observed[c]] = (0.85, 0.1, 0.1)
                ax.imshow(rgb, interpolation="nearest")
        axes[r, 0].set_ylabel(name, rotation=0, ha="right", va="center", fontsize=9)
    _title_and_layout(fig, title)
    return _save(fig, path)


def plot_trajectories(
    t: np.ndarray,
    observed: np.ndarray,
    observed_mask: np.ndarray,
    predicted: Mapping[str, np.ndarray],
    variables: Sequence[str],
    path: PathLike,
    title: str | None = None,
    split_time: float | None = None,
) -> Path:
    """Observed values and predicted trajectories of one instance, one panel per variable.

    Parameters
    ----------
    t : numpy.ndarray
        Times, ``(T,)``.
    observed : numpy.ndarray
        Observed values, ``(T, V)`` with ``V == len(variables)``; entries where
        ``observed_mask`` is False are ignored (they may be NaN).
    observed_mask : numpy.ndarray
        Boolean ``(T, V)``, True where a value is observed; only those are drawn (as points).
    predicted : Mapping of str to numpy.ndarray
        Series name → predictions ``(T, V)`` on the same times, each drawn as a line.
    variables : Sequence of str
        Panel titles, one per column.
    path : str or os.PathLike
        PNG file to write.
    title : str, optional
        Figure title.
    split_time : float, optional
        Drawn as a vertical dashed line in every panel (e.g. the start of the forecast window).

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    ValueError
        If the shapes disagree.
    """
    t = np.asarray(t, dtype=float).reshape(-1)
    observed = np.asarray(observed, dtype=float)
    observed_mask = np.asarray(observed_mask).astype(bool)
    n_vars = len(variables)
    expected = (t.shape[0], n_vars)
    if n_vars == 0:
        raise ValueError("variables is empty")
    if observed.shape != expected or observed_mask.shape != expected:
        raise ValueError(
            f"observed and observed_mask must have shape {expected}, "
            f"got {observed.shape} and {observed_mask.shape}"
        )
    series = {name: np.asarray(values, dtype=float) for name, values in predicted.items()}
    for name, values in series.items():
        if values.shape != expected:
            raise ValueError(f"predicted[{name!r}] must have shape {expected}, got {values.shape}")

    order = np.argsort(t, kind="stable")
    n_cols = min(n_vars, math.ceil(math.sqrt(n_vars)))
    n_rows = math.ceil(n_vars / n_cols)
    fig = Figure(figsize=(3.6 * n_cols, 2.6 * n_rows + (0.4 if title else 0)))
    axes = fig.subplots(n_rows, n_cols, squeeze=False).ravel()
    for j, ax in enumerate(axes):
        if j >= n_vars:
            ax.set_axis_off()
            continue
        seen = observed_mask[:, j]
        ax.scatter(t[seen], observed[seen, j], s=14, color="black", zorder=3, label="observed")
        for k, (name, values) in enumerate(series.items()):
            ax.plot(t[order], values[order, j], color=f"C{k}", lw=1.4, label=name)
        if split_time is not None:
            ax.axvline(split_time, color="grey", ls="--", lw=1.0)
        ax.set_title(str(variables[j]), fontsize=9)
        ax.tick_params(labelsize=8)
        if j >= n_vars - n_cols:  # the lowest panel of its column
            ax.set_xlabel("t", fontsize=8)
    axes[0].legend(fontsize=7)
    _title_and_layout(fig, title)
    return _save(fig, path)
