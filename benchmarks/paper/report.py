"""Report of the paper-replication benchmarks: summary tables (Markdown) and figures (PNG).

The harness writes a long-format results table, one row per (configuration, seed, metric):

============== ======= ==========================================================
column         type    meaning
============== ======= ==========================================================
dataset        str     data set name
experiment     str     ``"main"``, ``"basis_sweep"``, ``"identifiability"``, ...
model          str     ``"oLMM"``, ``"sLMM-GSNN"``, ``"VAE"``, ``"CVAE"``, ...
covariates     str     covariate set, ``"(i)"``, ``"(ii)"``, ``"(iii)"`` or ``"-"``
latent_dim     int     L
n_basis        int     2M, the number of basis functions (0 when not applicable)
seed           str     training seed (``"0"``) or seed pair (``"0-1"``)
metric         str     ``"imputation_mse"``, ``"mcc_truth"``, ...
value          float   the metric's value
epochs         int     (optional bookkeeping)
train_seconds  float   (optional bookkeeping)
============== ======= ==========================================================

A metric whose name ends in ``"mse"`` or ``"loss"`` is lower-is-better; one whose name starts
with ``"mcc"`` is higher-is-better (see :func:`metric_direction`).

A model whose name starts with :data:`BASELINE_PREFIX` (``"baseline: per-time mean"``, ...) is a
*baseline*: the tables list baselines under the models, never bold them, and mark with
:data:`LOSES_MARK` every model cell worse than the best baseline of its column, with a column
"loses to a baseline" naming those metrics (issue 18: a model that loses to a trivial baseline is
reported plainly).

Figures are :class:`matplotlib.figure.Figure` objects built without pyplot (no backend change,
nothing left in pyplot's registry) and every file is written atomically through
:func:`pyro_lmmvae.io.write_atomic`, so an interrupted run never leaves a half-written file.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import NullLocator

from pyro_lmmvae.io import write_atomic, write_text_atomic

__all__ = [
    "BASELINE_PREFIX",
    "CONFIG_COLUMNS",
    "LOSES_MARK",
    "GROUP_COLUMNS",
    "RESULT_COLUMNS",
    "markdown_tables",
    "metric_direction",
    "plot_basis_sweep",
    "plot_image_grid",
    "plot_trajectories",
    "is_baseline",
    "read_results",
    "summarize",
    "write_report",
]

#: Columns every results table must have.
RESULT_COLUMNS: tuple[str, ...] = (
    "dataset",
    "experiment",
    "model",
    "covariates",
    "latent_dim",
    "n_basis",
    "seed",
    "metric",
    "value",
)
#: Columns that identify one configuration within a (dataset, experiment) table.
CONFIG_COLUMNS: tuple[str, ...] = ("model", "covariates", "latent_dim", "n_basis")
#: Columns :func:`summarize` groups by.
GROUP_COLUMNS: tuple[str, ...] = ("dataset", "experiment", *CONFIG_COLUMNS, "metric")

#: Models whose name starts with this are baselines (see the module docstring).
BASELINE_PREFIX = "baseline: "
#: Appended to a model's cell whose mean is worse than the best baseline of the column.
LOSES_MARK = "†"
LOSES_HEADER = "loses to a baseline"

_STRING_COLUMNS = ("dataset", "experiment", "model", "covariates", "seed", "metric")
_HEADERS = {"model": "model", "covariates": "covariates", "latent_dim": "L", "n_basis": "2M"}
_DASH = "–"  # en dash: the "no value" mark in tables
_DPI = 120

PathLike = str | os.PathLike


# --------------------------------------------------------------------------------------------
# Tables
# --------------------------------------------------------------------------------------------


def metric_direction(metric: str) -> str | None:
    """Return whether a metric is ``"lower"``- or ``"higher"``-is-better.

    Parameters
    ----------
    metric : str
        Metric name.

    Returns
    -------
    str or None
        ``"lower"`` for names ending in ``"mse"`` or ``"loss"``, ``"higher"`` for names starting
        with ``"mcc"``, ``None`` for any other name (such a metric is not ranked).
    """
    if metric.endswith(("mse", "loss")):
        return "lower"
    if metric.startswith("mcc"):
        return "higher"
    return None


def is_baseline(model: object) -> bool:
    """Whether a model name is a baseline's (starts with :data:`BASELINE_PREFIX`).

    Parameters
    ----------
    model : object
        Model name.

    Returns
    -------
    bool
    """
    return str(model).startswith(BASELINE_PREFIX)


def _worse(value: float, reference: float, direction: str) -> bool:
    return value > reference if direction == "lower" else value < reference


def _check_columns(results: pd.DataFrame, required: Sequence[str]) -> None:
    missing = [c for c in required if c not in results.columns]
    if missing:
        raise ValueError(f"results table lacks the column(s) {missing}")


def summarize(results: pd.DataFrame) -> pd.DataFrame:
    """Mean, standard deviation and count of each metric per configuration.

    Parameters
    ----------
    results : pandas.DataFrame
        Long-format results table (see the module docstring); other columns are ignored.

    Returns
    -------
    pandas.DataFrame
        One row per (dataset, experiment, model, covariates, latent_dim, n_basis, metric), in
        the order in which the groups first appear in ``results`` (not sorted), with the columns
        of :data:`GROUP_COLUMNS` followed by ``mean``, ``std`` (ddof = 1; NaN for a single value)
        and ``n`` (number of non-missing values).

    Raises
    ------
    ValueError
        If a required column is missing.
    """
    _check_columns(results, RESULT_COLUMNS)
    keys = list(GROUP_COLUMNS)
    values = pd.to_numeric(results["value"], errors="raise").astype(float)
    frame = results[keys].assign(value=values)
    grouped = frame.groupby(keys, sort=False, dropna=False)["value"]
    summary = grouped.agg(mean="mean", std=lambda v: v.std(ddof=1), n="count").reset_index()
    summary["n"] = summary["n"].astype(int)
    return summary


def _format_number(x: float) -> str:
    """Four significant digits, ``-0`` shown as ``0``."""
    text = f"{x:.4g}"
    return "0" if text in ("-0", "-0.0") else text


def _format_cell(mean: float, std: float, n: int, show_n: bool) -> str:
    if n == 0 or not np.isfinite(mean):
        return _DASH
    spread = _DASH if n == 1 or not np.isfinite(std) else _format_number(std)
    cell = f"{_format_number(mean)} ± {spread}"
    if show_n:
        cell += f" (n={n})"
    return cell


def _escape(text: object) -> str:
    return str(text).replace("|", "\\|")


def _best_mask(means: pd.Series, stds: pd.Series, direction: str | None) -> pd.Series:
    """Cells of one metric column to print in bold (see :func:`markdown_tables`)."""
    bold = pd.Series(False, index=means.index)
    finite = means[np.isfinite(means.to_numpy(dtype=float))]
    if direction is None or finite.empty:
        return bold
    best_label = finite.idxmin() if direction == "lower" else finite.idxmax()
    best, spread = float(finite[best_label]), float(stds[best_label])
    if np.isfinite(spread) and spread > 0:
        # a relative slack of 1e-9 keeps a mean exactly one std away from being lost to rounding
        bold[finite.index] = (finite - best).abs() <= spread * (1.0 + 1e-9)
    else:
        bold[finite.index] = finite == best
    return bold


def _table(summary: pd.DataFrame) -> str:
    """Markdown of one (dataset, experiment) block of :func:`summarize`'s output."""
    configs = summary[list(CONFIG_COLUMNS)].drop_duplicates().reset_index(drop=True)
    base = configs["model"].map(is_baseline).to_numpy(dtype=bool).copy()
    if base.all():
        base[:] = False  # a table of baselines alone ranks them as models
    configs = pd.concat([configs[~base], configs[base]], ignore_index=True)
    base = np.sort(base)  # models first, then baselines
    models = configs[~base]
    varying = [c for c in CONFIG_COLUMNS if models[c].nunique(dropna=False) > 1]
    constant = [c for c in CONFIG_COLUMNS if c not in varying]
    label_columns = varying or ["model"]
    if base.any() and "model" not in label_columns:
        label_columns = ["model", *label_columns]  # the baselines' rows need their names
    metrics = list(dict.fromkeys(summary["metric"]))

    config_index = pd.MultiIndex.from_frame(configs)
    indexed = summary.set_index([*CONFIG_COLUMNS, "metric"])
    model_models = set(models["model"])
    ns = summary.loc[summary["model"].isin(model_models), "n"].unique()
    show_n = len(ns) > 1

    cells: dict[str, list[str]] = {}
    losses: list[list[str]] = [[] for _ in range(len(configs))]
    notes = []
    for metric in metrics:
        block = indexed.xs(metric, level="metric").reindex(config_index)
        means = block["mean"].astype(float).reset_index(drop=True)
        stds = block["std"].astype(float).reset_index(drop=True)
        counts = block["n"].fillna(0).astype(int).reset_index(drop=True)
        direction = metric_direction(metric)
        bold = _best_mask(means[~base], stds[~base], direction).reindex(
            means.index, fill_value=False
        )
        finite_base = means[base & np.isfinite(means.to_numpy(dtype=float))]
        best = None
        if direction is not None and not finite_base.empty:
            best = finite_base.idxmin() if direction == "lower" else finite_base.idxmax()
            name = str(configs["model"][best]).removeprefix(BASELINE_PREFIX)
            notes.append(f"{_escape(metric)}: {name} ({_format_number(means[best])})")
        column = []
        for i in range(len(configs)):
            if base[i] and counts[i] == 1:  # a deterministic baseline: one value
                cell = _format_number(means[i]) if np.isfinite(means[i]) else _DASH
            else:
                n_shown = show_n or (base[i] and len(ns) == 1 and counts[i] != ns[0])
                cell = _format_cell(means[i], stds[i], counts[i], n_shown)
            if bold[i] and cell != _DASH:
                cell = f"**{cell}**"
            if (
                best is not None
                and not base[i]
                and np.isfinite(means[i])
                and _worse(means[i], means[best], direction)
            ):
                cell += f" {LOSES_MARK}"
                losses[i].append(_escape(metric))
            column.append(cell)
        cells[metric] = column

    header = [_HEADERS[c] for c in label_columns] + [_escape(m) for m in metrics]
    with_baselines = bool(base.any())
    if with_baselines:
        header.append(LOSES_HEADER)
    aligns = [" --- "] * len(label_columns) + [" ---: "] * len(metrics)
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join(aligns + ([" --- "] if with_baselines else [])) + "|",
    ]
    for i, config in configs.iterrows():
        row = [_label(config, c, base[i]) for c in label_columns]
        row += [cells[m][i] for m in metrics]
        if with_baselines:
            row.append(
                "" if base[i] else ("**yes**: " + ", ".join(losses[i]) if losses[i] else "no")
            )
        lines.append("| " + " | ".join(row) + " |")

    fixed = [
        f"{_HEADERS[c]} = {_escape(models[c].iloc[0])}"
        for c in constant
        if c not in label_columns and not (c == "n_basis" and models[c].iloc[0] == 0)
    ]
    parts = []
    if fixed:
        parts.append("Fixed: " + ", ".join(fixed) + ".")
    parts.append("\n".join(lines))
    parts.append(_rule_line(metrics, None if show_n else int(ns[0]) if len(ns) else None))
    if with_baselines:
        n_losers = sum(bool(loss) for loss in losses)
        parts.append(
            "Baselines (rows named “baseline: …”, listed under the models) are not ranked; a "
            "baseline's single value is a deterministic trivial predictor. Best baseline per "
            f"column: {'; '.join(notes) if notes else 'none'}. {LOSES_MARK}: the model's mean is "
            f"worse than that best baseline; {n_losers} of {len(models)} model row(s) lose to a "
            "baseline on at least one metric."
        )
    return "\n\n".join(parts)


def _label(config: pd.Series, column: str, baseline: bool) -> str:
    """A label cell; a baseline's "not applicable" covariates, L or 2M read as a dash."""
    value = config[column]
    if baseline and column != "model" and str(value) in ("-", "0", ""):
        return _DASH
    return _escape(value)


def _rule_line(metrics: Sequence[str], n: int | None) -> str:
    arrows = {"lower": "lower is better ↓", "higher": "higher is better ↑", None: "not ranked"}
    directions = "; ".join(f"{m}: {arrows[metric_direction(m)]}" for m in metrics)
    if n is None:
        over = "over n runs (shown per cell)"
    else:
        over = f"over n = {n} run{'' if n == 1 else 's'}"
    return (
        f"Cells: mean ± standard deviation (ddof = 1; {_DASH} for a single run) {over}. "
        "**Bold**: mean within one standard deviation of the column's best mean, where the "
        "standard deviation is the best configuration's (if it is undefined or zero, only "
        f"means equal to the best). Directions: {directions}."
    )


def markdown_tables(results: pd.DataFrame, title: str | None = None) -> str:
    """Markdown summary tables, one per (dataset, experiment).

    Each table has one row per configuration (model, covariates, L, 2M; a column whose value is
    constant within the table is omitted and its value stated above the table, except 2M = 0,
    "not applicable") and one column per metric, both in order of first appearance. A cell
    reads ``"mean ± std"`` with four significant digits (``"mean ± –"`` for a single run);
    ``" (n=k)"`` is appended to every cell when the number of runs differs across the table's
    cells.

    In each metric column, every cell whose mean lies within one standard deviation of the best
    mean is bold, the standard deviation being the best configuration's; when that is NaN or 0,
    only cells equal to the best are bold. Metrics of unknown direction (see
    :func:`metric_direction`) are not ranked. A line under each table states this rule and
    each metric's direction.

    Parameters
    ----------
    results : pandas.DataFrame
        Long-format results table (see the module docstring).
    title : str, optional
        Written as a level-1 heading at the top.

    Returns
    -------
    str
        The Markdown text, ending in a newline.
    """
    summary = summarize(results)
    blocks = [f"# {title}"] if title else []
    for (dataset, experiment), block in summary.groupby(
        ["dataset", "experiment"], sort=False, dropna=False
    ):
        blocks.append(f"## {dataset} — {experiment}")
        blocks.append(_table(block.reset_index(drop=True)))
    return "\n\n".join(blocks) + "\n"


# --------------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------------


def read_results(path: PathLike) -> pd.DataFrame:
    """Read a results CSV written by :func:`write_report`, with the column types restored.

    String columns (``seed`` included, so ``"0"`` and ``"0-1"`` stay strings) are read
    verbatim: no value such as ``"NA"`` or ``"None"`` is turned into a missing value; empty
    fields of the other columns are read as NaN.

    Parameters
    ----------
    path : str or os.PathLike
        CSV file.

    Returns
    -------
    pandas.DataFrame
    """
    header = pd.read_csv(path, nrows=0).columns
    strings = [c for c in header if c in _STRING_COLUMNS]
    others = [c for c in header if c not in _STRING_COLUMNS]
    return pd.read_csv(
        path,
        dtype=dict.fromkeys(strings, str),
        keep_default_na=False,
        na_values={c: ["", "nan", "NaN"] for c in others},
    )


def write_report(results: pd.DataFrame, out_dir: PathLike, title: str) -> dict[str, Path]:
    """Write the results table and its Markdown summary, each atomically.

    Parameters
    ----------
    results : pandas.DataFrame
        Long-format results table (see the module docstring).
    out_dir : str or os.PathLike
        Folder to write into (created if needed).
    title : str
        Heading of the Markdown file.

    Returns
    -------
    dict of str to Path
        ``{"csv": out_dir / "results.csv", "markdown": out_dir / "results.md"}``.
    """
    out = Path(out_dir)
    markdown = markdown_tables(results, title=title)  # validates before anything is written
    csv_path = write_atomic(out / "results.csv", lambda tmp: results.to_csv(tmp, index=False))
    md_path = write_text_atomic(out / "results.md", markdown)
    return {"csv": csv_path, "markdown": md_path}


def _save(fig: Figure, path: PathLike) -> Path:
    return write_atomic(path, lambda tmp: fig.savefig(tmp, dpi=_DPI, format="png"))


# --------------------------------------------------------------------------------------------
# Figures
# --------------------------------------------------------------------------------------------


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
