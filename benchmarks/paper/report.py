"""Report of the paper-replication benchmarks: summary tables (Markdown) and figures (PNG).

The tables are made here; the results table (:mod:`benchmarks.paper.results`) and the figures
(:mod:`benchmarks.paper.plots`) are defined there and re-exported, so that this module is the
report's whole API.

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

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from pyro_lmmvae.io import write_atomic, write_text_atomic

from .plots import plot_basis_sweep, plot_image_grid, plot_trajectories
from .results import (
    _HEADERS,
    BASELINE_PREFIX,
    CONFIG_COLUMNS,
    GROUP_COLUMNS,
    RESULT_COLUMNS,
    PathLike,
    is_baseline,
    metric_direction,
    read_results,
    summarize,
)

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

#: Appended to a model's cell whose mean is worse than the best baseline of the column.
LOSES_MARK = "†"
LOSES_HEADER = "loses to a baseline"

_DASH = "–"  # en dash: the "no value" mark in tables


# --------------------------------------------------------------------------------------------
# Tables
# --------------------------------------------------------------------------------------------


def _worse(value: float, reference: float, direction: str) -> bool:
    return value > reference if direction == "lower" else value < reference


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
