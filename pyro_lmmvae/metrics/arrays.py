"""Conversion and shape checks of the metrics' inputs (numpy, array-likes, torch tensors)."""

from __future__ import annotations

from typing import Any

import numpy as np


def _to_numpy(x: Any, name: str, dtype: type = np.float64) -> np.ndarray:
    """Convert a torch tensor or array-like to a numpy array of ``dtype``."""
    if x is None:
        raise ValueError(f"{name} must be an array, got None")
    if hasattr(x, "detach") and hasattr(x, "cpu"):
        x = x.detach().cpu().numpy()
    try:
        return np.asarray(x, dtype=dtype)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} could not be converted to a {np.dtype(dtype)} array") from err


def _to_mask(x: Any, name: str) -> np.ndarray:
    if hasattr(x, "detach") and hasattr(x, "cpu"):
        x = x.detach().cpu().numpy()
    m = np.asarray(x)
    if m.dtype != np.bool_:
        if m.size and not np.isin(m, (0, 1)).all():
            raise ValueError(f"{name} must be boolean or contain only 0/1 values")
        m = m.astype(bool)
    return m


def _check_2d(x: np.ndarray, name: str) -> None:
    if x.ndim != 2:
        raise ValueError(f"{name} must be 2-D of shape (N, D), got shape {x.shape}")


def _check_same_shape(a: np.ndarray, a_name: str, b: np.ndarray, b_name: str) -> None:
    if a.shape != b.shape:
        raise ValueError(f"{a_name} has shape {a.shape} but {b_name} has shape {b.shape}")
