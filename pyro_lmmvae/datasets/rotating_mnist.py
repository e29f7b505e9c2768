"""Rotating MNIST (spec section 7, "Rotating MNIST").

Source images of one digit of the MNIST training set (:mod:`~pyro_lmmvae.datasets.mnist_files`),
each shown at ``K`` equally spaced angles, with blocks of consecutive angles held out. The
conventions it shares with Health MNIST (one seeded generator, interpolation, rounding to
``uint8``, the val split) are in :mod:`~pyro_lmmvae.datasets.mnist_common`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from scipy import ndimage

from .. import defaults
from .base import LongitudinalDataset
from .cache import cached
from .mnist_common import _instance_labels, _random_val, _to_unit
from .mnist_files import DEFAULT_MNIST_ROOT, load_mnist_digits
from .synthetic import _check_int

__all__ = ["make_rotating_mnist", "rotate_image"]


def rotate_image(image: np.ndarray, angle_degrees: float) -> np.ndarray:
    """Rotating MNIST transform: rotate by ``angle_degrees`` (``reshape=False``) to ``uint8``."""
    return _to_unit(ndimage.rotate(image.astype(np.float64), float(angle_degrees), reshape=False))


def make_rotating_mnist(
    root: str | Path = DEFAULT_MNIST_ROOT,
    n_instances: int = defaults.ROTATING_MNIST_N_INSTANCES,
    n_angles: int = defaults.ROTATING_MNIST_N_ANGLES,
    digit: int = defaults.ROTATING_MNIST_DIGIT,
    n_test_instances: int = defaults.ROTATING_MNIST_N_TEST_INSTANCES,
    test_block: int = defaults.ROTATING_MNIST_TEST_BLOCK,
    seed: int = defaults.DATA_SEED,
    *,
    cache: str | Path | None = None,
) -> LongitudinalDataset:
    """Generate Rotating MNIST as in spec section 7.

    Parameters
    ----------
    root : str or pathlib.Path, optional
        MNIST folder (see :func:`~pyro_lmmvae.datasets.mnist_files.load_mnist_training`).
    n_instances : int, optional
        Number of source images P of ``digit``, drawn without replacement from
        the MNIST training images. Default 400.
    n_angles : int, optional
        Number of angles K; instance ``p`` is shown at ``theta_k = 2 pi k / K``,
        ``k = 0 .. K - 1``. Default 16.
    digit : int, optional
        Digit class. Default 3.
    n_test_instances : int, optional
        Number of instances with a held-out block of angles; at most
        ``n_instances``. Default 40.
    test_block : int, optional
        Length of the held-out block of cyclically consecutive angles, less
        than ``n_angles``. Default 4.
    seed : int, optional
        Data seed of the single generator used for every draw. Default 0.
    cache : str, pathlib.Path or None, optional
        Cache file (``.npz``), as in
        :func:`~pyro_lmmvae.datasets.health_mnist.make_health_mnist`: reused if it was
        built with the same arguments (``root`` excluded), else (re)built and
        written atomically. ``None`` (default) disables caching.

    Returns
    -------
    LongitudinalDataset
        ``N = P * K`` rows ordered by instance then angle, ``D = 28 * 28 =
        784``, no missingness (``mask`` all True, ``y_true`` equal to ``y``).
        ``data`` columns: ``id``, ``angle`` (radians, ``2 pi k / K``),
        ``angle_index`` (``k``), ``digit`` and ``split``. ``truth`` holds
        ``"mnist_index"`` (P,), ``"instance_labels"`` (P,), ``"angle_grid"``
        (K,) in radians and ``"test_start"`` (P,), the first angle index of
        each instance's test block (-1 for instances without one).

    Raises
    ------
    ValueError
        For an invalid argument (the message names it; checked before any file
        is read or written), a malformed MNIST file, or a ``cache`` path that
        holds a file other than a dataset cache.
    FileNotFoundError
        If the MNIST files are missing (the message says which file to put
        where; they must be placed by hand, nothing is downloaded).

    Notes
    -----
    - Each image is ``scipy.ndimage.rotate(image, degrees(theta_k),
      reshape=False)``, rounded and clipped to ``uint8`` and divided by 255;
      the ``k = 0`` image equals the source image / 255.
    - **Split.** ``n_test_instances`` random instances each hold out the
      angles ``(s + j) mod K``, ``j = 0 .. test_block - 1``, with start ``s``
      uniform on ``0 .. K - 1``. All other rows (including the remaining
      angles of test instances) are split 80/20 at random into "train"/"val".
      Defaults: 160 test, 1,248 val and 4,992 train rows.
    """
    n_instances = _check_int("n_instances", n_instances, 1)
    n_angles = _check_int("n_angles", n_angles, 2)
    digit = _check_int("digit", digit, 0)
    if digit > 9:
        raise ValueError(f"digit must be in 0..9, got {digit}")
    n_test_instances = _check_int("n_test_instances", n_test_instances, 0)
    if n_test_instances > n_instances:
        raise ValueError(
            f"n_test_instances must be <= n_instances ({n_instances}), got {n_test_instances}"
        )
    test_block = _check_int("test_block", test_block, 1)
    if test_block >= n_angles:
        raise ValueError(f"test_block must be smaller than n_angles ({n_angles}), got {test_block}")
    seed = _check_int("seed", seed, 0)
    meta = {
        "generator": "rotating_mnist",
        "version": 1,  # bump when the generated data change: old caches are rebuilt
        "n_instances": n_instances,
        "n_angles": n_angles,
        "digit": digit,
        "n_test_instances": n_test_instances,
        "test_block": test_block,
        "seed": seed,
    }
    return cached(
        cache,
        lambda: _build_rotating_mnist(
            root, n_instances, n_angles, digit, n_test_instances, test_block, seed
        ),
        meta,
    )


def _build_rotating_mnist(
    root: str | Path,
    n_instances: int,
    n_angles: int,
    digit: int,
    n_test_instances: int,
    test_block: int,
    seed: int,
) -> LongitudinalDataset:
    """Rotating MNIST from validated arguments (see :func:`make_rotating_mnist`)."""
    rng = np.random.default_rng(seed)

    source, mnist_index = load_mnist_digits(root, digit, n_instances, rng)
    side_h, side_w = source.shape[1:]

    angle_grid = 2.0 * np.pi * np.arange(n_angles) / n_angles
    n_rows = n_instances * n_angles
    inst = np.repeat(np.arange(n_instances), n_angles)
    k = np.tile(np.arange(n_angles, dtype=np.int64), n_instances)

    images = np.empty((n_instances, n_angles, side_h, side_w), dtype=np.uint8)
    images[:, 0] = source
    for j in range(1, n_angles):
        degrees = float(np.degrees(angle_grid[j]))
        for p in range(n_instances):
            images[p, j] = rotate_image(source[p], degrees)
    y = images.reshape(n_rows, side_h * side_w).astype(np.float32)
    y /= np.float32(255.0)
    del images

    # Split.
    test_inst = rng.choice(n_instances, size=n_test_instances, replace=False)
    starts = rng.integers(0, n_angles, size=n_test_instances)
    test_start = np.full(n_instances, -1, dtype=np.int64)
    test_start[test_inst] = starts
    start_row = test_start[inst]
    is_test = (start_row >= 0) & (((k - start_row) % n_angles) < test_block)
    split = np.full(n_rows, "train", dtype=object)
    split[is_test] = "test"
    _random_val(rng, split, np.flatnonzero(~is_test))

    labels = _instance_labels(n_instances)
    data = pd.DataFrame(
        {
            "id": labels[inst],
            "angle": angle_grid[k],
            "angle_index": k,
            "digit": np.full(n_rows, digit, dtype=np.int64),
            "split": split.astype(str),
        }
    )
    truth = {
        "mnist_index": mnist_index,
        "instance_labels": labels,
        "angle_grid": angle_grid,
        "test_start": test_start,
    }
    return LongitudinalDataset(
        data=data,
        y=y,
        mask=np.ones((n_rows, side_h * side_w), dtype=bool),
        y_true=y.copy(),
        truth=truth,
        name="rotating_mnist",
        instance_column="id",
    )
