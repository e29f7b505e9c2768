"""What the Health and Rotating MNIST generators share (spec section 7, "Common to all
generators"): rounding a transformed image to ``uint8``, the instance labels and the random
train/val split of rows.

Both generators draw every random quantity from one :func:`numpy.random.default_rng` generator
seeded with ``seed`` (the spec's ``data_seed``), so a dataset is a deterministic function of its
arguments. Images are interpolated with :func:`scipy.ndimage.rotate` (``reshape=False``, cubic
spline, zero fill) and, for Health MNIST, :func:`scipy.ndimage.shift`, in ``float64``; the result
is rounded and clipped to ``uint8`` (:func:`_to_unit`) and divided by 255. For a ``uint8`` input
this is exactly what scipy returns for a ``uint8`` output.
"""

from __future__ import annotations

import numpy as np

VAL_FRACTION = 0.2


def _to_unit(image: np.ndarray) -> np.ndarray:
    """Round and clip a float image to ``uint8``."""
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def _instance_labels(n: int) -> np.ndarray:
    width = max(3, len(str(n - 1)))
    return np.array([f"i{p:0{width}d}" for p in range(n)], dtype=str)


def _random_val(rng: np.random.Generator, split: np.ndarray, rows: np.ndarray) -> None:
    """Send ``round(0.2 * len(rows))`` random rows among ``rows`` to "val" (in place)."""
    n_val = round(VAL_FRACTION * rows.size)
    split[rng.permutation(rows)[:n_val]] = "val"
