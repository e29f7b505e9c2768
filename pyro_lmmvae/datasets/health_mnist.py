"""Health MNIST, the LVAE generator (spec section 7, "Health MNIST (LVAE generator)").

'3's and '6's of the MNIST training set (:mod:`~pyro_lmmvae.datasets.mnist_files`), zero-padded
to 36x36, rotated by a disease-dependent angle and shifted with age, with pixels missing at
random. The conventions it shares with Rotating MNIST (one seeded generator, interpolation,
rounding to ``uint8``, the val split) are in :mod:`~pyro_lmmvae.datasets.mnist_common`.
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
from .synthetic import _check_int, _check_rate

__all__ = ["health_transform", "make_health_mnist", "pad_image"]

HEALTH_PAD = 36
"""Side of the zero-padded Health MNIST image (D = 36 * 36 = 1296)."""

HEALTH_DIGITS = (3, 6)
"""Health MNIST digits; ``sex`` is 0 for the first and 1 for the second."""

HEALTH_ONSET = 9
"""Disease onset time: ``diseaseAge = t - 9`` and the angle uses ``sigmoid(t - 9)``."""

HEALTH_FIRST_TEST_TIME = 5
"""Test instances hold out their time points ``t >= 5``."""

HEALTH_ANGLE_STD = 2.0
HEALTH_HEALTHY_OFFSET = 5.0
HEALTH_DISEASE_AMPLITUDE = 45.0
HEALTH_TEST_INSTANCE_FRACTION = 0.1


def pad_image(image: np.ndarray, size: int = HEALTH_PAD) -> np.ndarray:
    """Zero-pad a ``(28, 28)`` image symmetrically to ``(size, size)``.

    Any odd remainder goes after the image (bottom/right).
    """
    h, w = image.shape
    if size < max(h, w):
        raise ValueError(f"size must be >= the image side {max(h, w)}, got {size}")
    top, left = (size - h) // 2, (size - w) // 2
    return np.pad(image, ((top, size - h - top), (left, size - w - left)))


def health_transform(padded: np.ndarray, angle: float, t: float) -> np.ndarray:
    """Health MNIST image transform: rotate by ``angle`` degrees, shift by ``t/10`` px.

    Parameters
    ----------
    padded : numpy.ndarray
        Zero-padded source image, ``(36, 36)`` ``uint8``.
    angle : float
        Rotation angle in degrees (counter-clockwise as displayed).
    t : float
        Time point; the image is shifted by ``t / 10`` pixels along both axes.

    Returns
    -------
    numpy.ndarray
        ``uint8`` image of the same shape (rounded and clipped once, after the
        shift).
    """
    rotated = ndimage.rotate(padded.astype(np.float64), float(angle), reshape=False)
    shifted = ndimage.shift(rotated, (t / 10.0, t / 10.0))
    return _to_unit(shifted)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def make_health_mnist(
    root: str | Path = DEFAULT_MNIST_ROOT,
    n_per_digit: int = defaults.HEALTH_MNIST_N_PER_DIGIT,
    n_times: int = defaults.HEALTH_MNIST_N_TIMES,
    missing_rate: float = defaults.HEALTH_MNIST_MISSING_RATE,
    balanced: bool = defaults.HEALTH_MNIST_BALANCED,
    seed: int = defaults.DATA_SEED,
    *,
    cache: str | Path | None = None,
) -> LongitudinalDataset:
    """Generate Health MNIST (LVAE generator) as in spec section 7.

    Parameters
    ----------
    root : str or pathlib.Path, optional
        MNIST folder (see :func:`~pyro_lmmvae.datasets.mnist_files.load_mnist_training`). Default
        ``"../shared/data/mnist"``.
    n_per_digit : int, optional
        Number of '3's and of '6's, drawn without replacement from the MNIST
        training images; P = ``2 * n_per_digit``. Default 500 (P = 1000).
    n_times : int, optional
        Time points ``t = 0 .. n_times - 1`` per instance; must exceed 5 so
        that test instances have held-out points. Default 20.
    missing_rate : float, optional
        Probability that a pixel is unobserved, i.i.d. per pixel and image
        (MCAR), in ``[0, 1)``. Default 0.25.
    balanced : bool, optional
        If True, exactly ``n_per_digit // 2`` instances of each digit are
        diseased (chosen at random); otherwise ``diseasePresence ~
        Bernoulli(0.5)`` independently. Default False.
    seed : int, optional
        Data seed of the single generator used for every draw. Default 0.
    cache : str, pathlib.Path or None, optional
        Cache file (``.npz``, see :func:`pyro_lmmvae.datasets.cache.cached`). If it
        exists and was built with the same arguments (every argument except
        ``root``, so moving the MNIST files does not invalidate it), the dataset is
        loaded from it and the MNIST files are not read; otherwise the dataset is
        built and written there atomically, replacing a cache built with other
        arguments. ``None`` (default) disables caching.

    Returns
    -------
    LongitudinalDataset
        ``N = P * n_times`` rows ordered by instance then time (the '3's
        first, then the '6's), ``D = 36 * 36 = 1296``. ``data`` columns:

        - ``id``: instance label ``"i000"``, ...;
        - ``age``: time point ``t`` (int);
        - ``sex``: 0 for a '3', 1 for a '6';
        - ``diseasePresence``: 0/1, constant per instance;
        - ``diseaseAge``: ``t - 9`` if diseased, else 0 (raw, int);
        - ``diseaseAge_z``: ``diseaseAge`` z-scored with the mean and
          (population) standard deviation of the diseased **training** rows;
          healthy rows stay 0;
        - ``location``: 0/1, constant per instance, no effect on the image;
        - ``angle``: the rotation angle in degrees actually applied;
        - ``digit``: 3 or 6;
        - ``split``: ``"train"``, ``"val"`` or ``"test"``.

        ``y_true`` is the unmasked image in ``[0, 1]``, ``y`` equals it on
        observed pixels and 0 elsewhere. ``truth`` holds ``"angle"`` (N,),
        ``"mnist_index"`` (P,) the training-set index of each instance's source
        image, ``"instance_labels"`` (P,), and ``"diseaseAge_mean"``,
        ``"diseaseAge_std"`` (scalars, the statistics used for
        ``diseaseAge_z``).

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
    - **Image** of instance ``p`` at time ``t``: angle ``a = e + 45 *
      sigmoid(t - 9)`` if diseased, else ``a = e + 5``, with ``e ~ N(0, 2^2)``
      drawn per row; zero-pad to 36x36; ``scipy.ndimage.rotate(reshape=False)``
      by ``a`` degrees; ``scipy.ndimage.shift`` by ``t / 10`` px on both axes;
      round and clip to ``uint8`` (once, after the shift); divide by 255.
    - **Split.** ``round(0.1 * P)`` random instances (100 for P = 1000) have
      their time points ``t >= 5`` in "test" and their earlier points in
      "train". The rows of the other instances are split 80/20 at random into
      "train"/"val" (``round(0.2 * rows)`` go to "val"). For the defaults:
      1,500 test, 3,600 val and 14,900 train rows.
    - **Scaling.** The covariates in ``data`` are raw; a
      :class:`~pyro_lmmvae.design.Design` z-scores continuous covariates with
      training statistics itself. The spec's "diseaseAge is z-scored on
      diseased training rows; healthy rows stay 0" is a scaling specific to
      this dataset that a generic design cannot know, so it is provided as the
      extra column ``diseaseAge_z``.
    """
    n_per_digit = _check_int("n_per_digit", n_per_digit, 1)
    n_times = _check_int("n_times", n_times, HEALTH_FIRST_TEST_TIME + 1)
    missing_rate = _check_rate("missing_rate", missing_rate)
    if not isinstance(balanced, (bool, np.bool_)):
        raise ValueError(f"balanced must be a bool, got {balanced!r}")
    seed = _check_int("seed", seed, 0)
    meta = {
        "generator": "health_mnist",
        "version": 1,  # bump when the generated data change: old caches are rebuilt
        "n_per_digit": n_per_digit,
        "n_times": n_times,
        "missing_rate": missing_rate,
        "balanced": bool(balanced),
        "seed": seed,
    }
    return cached(
        cache,
        lambda: _build_health_mnist(root, n_per_digit, n_times, missing_rate, bool(balanced), seed),
        meta,
    )


def _build_health_mnist(
    root: str | Path,
    n_per_digit: int,
    n_times: int,
    missing_rate: float,
    balanced: bool,
    seed: int,
) -> LongitudinalDataset:
    """Health MNIST from validated arguments (see :func:`make_health_mnist`)."""
    rng = np.random.default_rng(seed)

    # Source images: n '3's then n '6's, without replacement.
    sources, indices, digits = [], [], []
    for digit in HEALTH_DIGITS:
        images, idx = load_mnist_digits(root, digit, n_per_digit, rng)
        sources.append(images)
        indices.append(idx)
        digits.append(np.full(n_per_digit, digit, dtype=np.int64))
    source = np.concatenate(sources)
    mnist_index = np.concatenate(indices)
    digit_inst = np.concatenate(digits)
    n_inst = source.shape[0]
    sex_inst = (digit_inst == HEALTH_DIGITS[1]).astype(np.int64)

    # Per-instance covariates.
    if balanced:
        disease_inst = np.zeros(n_inst, dtype=np.int64)
        for k in range(len(HEALTH_DIGITS)):
            block = np.arange(k * n_per_digit, (k + 1) * n_per_digit)
            disease_inst[rng.permutation(block)[: n_per_digit // 2]] = 1
    else:
        disease_inst = rng.binomial(1, 0.5, size=n_inst).astype(np.int64)
    location_inst = rng.binomial(1, 0.5, size=n_inst).astype(np.int64)

    # Per-row covariates.
    n_rows = n_inst * n_times
    inst = np.repeat(np.arange(n_inst), n_times)
    t = np.tile(np.arange(n_times, dtype=np.int64), n_inst)
    diseased = disease_inst[inst].astype(bool)
    disease_age = np.where(diseased, t - HEALTH_ONSET, 0).astype(np.int64)
    offset = np.where(
        diseased,
        HEALTH_DISEASE_AMPLITUDE * _sigmoid((t - HEALTH_ONSET).astype(np.float64)),
        HEALTH_HEALTHY_OFFSET,
    )
    angle = rng.normal(0.0, HEALTH_ANGLE_STD, size=n_rows) + offset

    # Images.
    side = HEALTH_PAD
    images = np.empty((n_rows, side, side), dtype=np.uint8)
    padded = [pad_image(img, side) for img in source]
    for row in range(n_rows):
        images[row] = health_transform(padded[inst[row]], angle[row], float(t[row]))
    y_true = images.reshape(n_rows, side * side).astype(np.float32)
    y_true /= np.float32(255.0)
    del images

    mask = rng.random((n_rows, side * side), dtype=np.float32) >= np.float32(missing_rate)
    y = np.where(mask, y_true, np.float32(0.0))

    # Split.
    n_test_inst = round(HEALTH_TEST_INSTANCE_FRACTION * n_inst)
    test_inst = rng.permutation(n_inst)[:n_test_inst]
    in_test_inst = np.isin(inst, test_inst)
    split = np.full(n_rows, "train", dtype=object)
    split[in_test_inst & (t >= HEALTH_FIRST_TEST_TIME)] = "test"
    _random_val(rng, split, np.flatnonzero(~in_test_inst))

    # diseaseAge z-scored on diseased training rows.
    reference = disease_age[diseased & (split == "train")].astype(np.float64)
    mean = float(reference.mean()) if reference.size else 0.0
    std = float(reference.std()) if reference.size else 1.0
    if not np.isfinite(std) or std <= 0.0:
        std = 1.0
    disease_age_z = np.where(diseased, (disease_age - mean) / std, 0.0)

    labels = _instance_labels(n_inst)
    data = pd.DataFrame(
        {
            "id": labels[inst],
            "age": t,
            "sex": sex_inst[inst],
            "diseasePresence": disease_inst[inst],
            "diseaseAge": disease_age,
            "diseaseAge_z": disease_age_z,
            "location": location_inst[inst],
            "angle": angle,
            "digit": digit_inst[inst],
            "split": split.astype(str),
        }
    )
    truth = {
        "angle": angle.copy(),
        "mnist_index": mnist_index,
        "instance_labels": labels,
        "diseaseAge_mean": np.asarray(mean),
        "diseaseAge_std": np.asarray(std),
    }
    return LongitudinalDataset(
        data=data,
        y=y,
        mask=mask,
        y_true=y_true,
        truth=truth,
        name="health_mnist",
        instance_column="id",
    )
