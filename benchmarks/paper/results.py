"""The long results table of the paper benchmarks: its columns, reading it, summarising it.

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
*baseline* (:func:`is_baseline`); :mod:`benchmarks.paper.report` tables it apart.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import pandas as pd

__all__ = [
    "BASELINE_PREFIX",
    "CONFIG_COLUMNS",
    "GROUP_COLUMNS",
    "RESULT_COLUMNS",
    "is_baseline",
    "metric_direction",
    "read_results",
    "summarize",
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

_STRING_COLUMNS = ("dataset", "experiment", "model", "covariates", "seed", "metric")
_HEADERS = {"model": "model", "covariates": "covariates", "latent_dim": "L", "n_basis": "2M"}

PathLike = str | os.PathLike


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


def read_results(path: PathLike) -> pd.DataFrame:
    """Read a results CSV written by :func:`~benchmarks.paper.report.write_report`, with the
    column types restored.

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
