"""Checks of what a user passes, run before anything is trained: one-line errors.

Each names the argument, column, shape or value at fault and what to do. The design's own
checks (columns, factor levels, formula terms, non-finite design columns) live with the formula
in :mod:`pyro_lmmvae.design`; everything else is here:

* :func:`validate_observations` — ``y`` and ``mask``: shape, dtype, NaN/inf at observed
  entries, values beyond float32, rows without an observed entry;
* :func:`check_likelihood_support` — observed ``y`` in the likelihood's support (a
  Bernoulli likelihood needs [0, 1]);
* :func:`check_unit_scale` — the identity network warns when ``y`` is far from unit scale;
* :func:`check_fit_arguments` — ``fit()``'s numbers (epochs, batch size, learning rates, ...).
"""

from __future__ import annotations

import warnings

import numpy as np
import torch

MAX_ABS_OBSERVATION = 1e15
"""Largest |y| accepted: a Gaussian log-density squares (y - mu) / sigma in float32, whose
largest value is 3.4e38, so |y| must stay well below 1.8e19 even for a noise scale of 1e-3."""


def validate_observations(
    y: np.ndarray, mask: np.ndarray | None, n_rows: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Check observations and mask; return float32 y (unobserved set to 0) and a bool mask.

    Parameters
    ----------
    y : array-like, (N, D)
        Observations; NaN marks a missing entry when ``mask`` is omitted.
    mask : array-like of bool, (N, D), optional
        True where observed. Defaults to ``~isnan(y)``.
    n_rows : int, optional
        Expected N (the number of covariate rows).
    """
    if isinstance(y, torch.Tensor):
        y = y.detach().cpu().numpy()
    y = np.asarray(y)
    if not (np.issubdtype(y.dtype, np.number) or y.dtype == bool):
        raise TypeError(f"y must be numeric, got dtype {y.dtype}")
    if y.ndim != 2:
        raise ValueError(f"y must have shape (N, D), got {y.shape}; flatten images first")
    if n_rows is not None and y.shape[0] != n_rows:
        raise ValueError(f"y has {y.shape[0]} rows but data has {n_rows}; they must match")
    raw = y.astype(np.float64) if y.dtype != bool else y.astype(np.float32)
    with np.errstate(over="ignore"):
        y = y.astype(np.float32)
    if mask is None:
        mask = ~np.isnan(y)
    else:
        if isinstance(mask, torch.Tensor):
            mask = mask.detach().cpu().numpy()
        mask = np.asarray(mask)
        if mask.shape != y.shape:
            raise ValueError(f"mask has shape {mask.shape} but y has shape {y.shape}")
        if mask.dtype != bool:
            if not np.isin(mask, (0, 1)).all():
                raise ValueError("mask must be boolean or 0/1")
            mask = mask.astype(bool)
    observed_bad = mask & ~np.isfinite(y)
    if observed_bad.any() and np.isfinite(raw[observed_bad]).all():
        raise ValueError(
            f"y has values up to {np.abs(raw[mask]).max():.3g} in absolute value, beyond float32 "
            "(the precision of training): rescale y, e.g. z-score each feature"
        )
    if observed_bad.any():
        row, col = np.argwhere(observed_bad)[0]
        raise ValueError(
            f"y has {int(observed_bad.sum())} NaN/inf value(s) at observed entries "
            f"(first at row {row}, column {col}); mark them missing in the mask"
        )
    largest = float(np.abs(y[mask]).max()) if mask.any() else 0.0
    if largest > MAX_ABS_OBSERVATION:
        raise ValueError(
            f"y has values up to {largest:.3g} in absolute value; the likelihood squares them in "
            "float32, which overflows: rescale y, e.g. z-score each feature"
        )
    empty = ~mask.any(axis=1)
    if empty.any():
        rows = np.flatnonzero(empty)
        raise ValueError(
            f"{len(rows)} row(s) have no observed entry (first rows: {rows[:5].tolist()}); "
            "drop them before fitting"
        )
    return np.where(mask, y, 0.0).astype(np.float32), mask


def check_likelihood_support(
    support: tuple[float, float] | None, name: str, y: np.ndarray, mask: np.ndarray
) -> None:
    """The observed entries of y must lie in the likelihood's ``support`` (None: any value)."""
    if support is None:
        return
    low, high = support
    observed = y[mask]
    if observed.size and (observed.min() < low or observed.max() > high):
        raise ValueError(
            f"likelihood={name!r} needs observations in [{low:g}, {high:g}], but y has observed "
            f"values in [{observed.min():.3g}, {observed.max():.3g}]: rescale y to "
            f"[{low:g}, {high:g}] or use likelihood='gaussian'"
        )


def check_unit_scale(y, mask) -> None:
    """Warn when the identity network meets observations far from unit scale."""
    values = np.asarray(y, dtype=float)
    observed = np.isfinite(values) if mask is None else np.asarray(mask, dtype=bool)
    spread = float(values[observed].std()) if observed.any() else 1.0
    if not 0.1 <= spread <= 10.0:
        warnings.warn(
            f"network='identity' with observations of standard deviation {spread:.3g}: z-score "
            "y first; the default priors (Normal(0, 1) fixed effects), sigma_z's start (1) and "
            "the likelihood noise (0.01) assume unit scale",
            UserWarning,
            stacklevel=3,
        )


def check_fit_arguments(**values) -> None:
    """One-line errors for fit() arguments out of range, before anything is trained."""
    rules = {
        "max_epochs": (
            "an integer >= 1, or None (until converged)",
            lambda v: v is None or _int(v) and v >= 1,
        ),
        "batch_size": ("an integer >= 1 (instances per batch)", lambda v: _int(v) and v >= 1),
        "lr": ("a positive number (Adam's step size of the networks)", lambda v: _pos(v)),
        "effects_lr": ("a positive number (Adam's step size of the latent LMM)", lambda v: _pos(v)),
        "lr_decay": ("a number in (0, 1] (1: no decay)", lambda v: _num(v) and 0 < v <= 1),
        "local_lr": (
            "a number >= 0 (0 freezes the random effects), or None",
            lambda v: v is None or _num(v) and v >= 0,
        ),
        "patience": (
            "an integer >= 1 (epochs without improvement), or None",
            lambda v: v is None or _int(v) and v >= 1,
        ),
        "clip_norm": ("a positive number, or None", lambda v: v is None or _pos(v)),
    }
    for name, value in values.items():
        what, ok = rules[name]
        if not ok(value):
            raise ValueError(f"fit({name}={value!r}): {name} must be {what}")


def _int(value) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


def _num(value) -> bool:
    return (
        isinstance(value, int | float | np.number)
        and not isinstance(value, bool)
        and np.isfinite(value)
    )


def _pos(value) -> bool:
    return _num(value) and value > 0
