"""Errors of imputed and predicted outcomes: imputation, prediction and observed-entry MSE.

Spec section 5 ("MSE"): a mean over rows of each row's mean squared error over the selected
entries.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from pyro_lmmvae.metrics.arrays import _check_2d, _check_same_shape, _to_mask, _to_numpy

__all__ = ["imputation_mse", "observed_mse", "prediction_mse"]


def _masked_row_mse(y_hat: np.ndarray, y: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Per-row mean of squared errors over entries where ``weight`` is True.

    Returns only rows with at least one selected entry. Entries outside
    ``weight`` never enter the computation, so they may hold NaN.
    """
    sq = np.where(weight, (y_hat - y) ** 2, 0.0)
    counts = weight.sum(axis=1)
    keep = counts > 0
    return sq[keep].sum(axis=1) / counts[keep]


def imputation_mse(y_hat: Any, y_true: Any, mask: Any) -> float:
    """Imputation MSE over the missing entries (spec section 5).

    ``mean_i [ sum_d (1 - m_id) (yhat_id - y_id)^2 / sum_d (1 - m_id) ]``, the
    mean taken over the rows with at least one missing entry; rows without a
    missing entry are skipped.

    Parameters
    ----------
    y_hat : array_like or torch.Tensor
        Reconstructions, shape ``(N, D)``.
    y_true : array_like or torch.Tensor
        Unmasked ground truth, shape ``(N, D)``.
    mask : array_like or torch.Tensor
        Observation mask, shape ``(N, D)``; True/1 = observed.

    Returns
    -------
    float
        The per-row imputation MSE averaged over rows with a missing entry.

    Raises
    ------
    ValueError
        If the shapes disagree or are not 2-D, or if no row has a missing entry.
    """
    y_hat = _to_numpy(y_hat, "y_hat")
    y_true = _to_numpy(y_true, "y_true")
    m = _to_mask(mask, "mask")
    _check_2d(y_hat, "y_hat")
    _check_same_shape(y_true, "y_true", y_hat, "y_hat")
    _check_same_shape(m, "mask", y_hat, "y_hat")
    per_row = _masked_row_mse(y_hat, y_true, ~m)
    if per_row.size == 0:
        raise ValueError("imputation_mse: mask has no missing entry, nothing to impute")
    return float(per_row.mean())


def prediction_mse(y_hat: Any, y_true: Any) -> float:
    """Prediction MSE over held-out rows (spec section 5).

    ``mean_i [ D^{-1} sum_d (yhat_id - y_id)^2 ]``.

    Parameters
    ----------
    y_hat : array_like or torch.Tensor
        Predictions, shape ``(N, D)``.
    y_true : array_like or torch.Tensor
        Targets, shape ``(N, D)``.

    Returns
    -------
    float
        Mean over rows of the per-row mean squared error.

    Raises
    ------
    ValueError
        If the shapes disagree, are not 2-D, or hold no entries.
    """
    y_hat = _to_numpy(y_hat, "y_hat")
    y_true = _to_numpy(y_true, "y_true")
    _check_2d(y_hat, "y_hat")
    _check_same_shape(y_true, "y_true", y_hat, "y_hat")
    if y_hat.size == 0:
        raise ValueError(f"prediction_mse: y_hat is empty (shape {y_hat.shape})")
    return float(((y_hat - y_true) ** 2).mean(axis=1).mean())


def observed_mse(y_hat: Any, y: Any, mask: Any) -> float:
    """MSE over the observed entries, PhysioNet variant (spec section 5).

    Per row ``sum_d m_id (yhat_id - y_id)^2 / sum_d m_id``, then the mean over
    rows with at least one observed entry.

    Parameters
    ----------
    y_hat : array_like or torch.Tensor
        Predictions, shape ``(N, D)``.
    y : array_like or torch.Tensor
        Observed targets, shape ``(N, D)``; unobserved entries are ignored.
    mask : array_like or torch.Tensor
        Observation mask, shape ``(N, D)``; True/1 = observed.

    Returns
    -------
    float
        The per-row observed-entry MSE averaged over rows with an observation.

    Raises
    ------
    ValueError
        If the shapes disagree or are not 2-D, or if no entry is observed.
    """
    y_hat = _to_numpy(y_hat, "y_hat")
    y = _to_numpy(y, "y")
    m = _to_mask(mask, "mask")
    _check_2d(y_hat, "y_hat")
    _check_same_shape(y, "y", y_hat, "y_hat")
    _check_same_shape(m, "mask", y_hat, "y_hat")
    per_row = _masked_row_mse(y_hat, y, m)
    if per_row.size == 0:
        raise ValueError("observed_mse: mask has no observed entry")
    return float(per_row.mean())
