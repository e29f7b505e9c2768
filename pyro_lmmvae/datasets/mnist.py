"""MNIST-based longitudinal datasets: Health MNIST and Rotating MNIST.

Implements spec section 7 ("Common to all generators", "Health MNIST (LVAE
generator)", "Rotating MNIST"). MNIST is read from the IDX files in
``../shared/data/mnist`` with numpy (:func:`read_idx`); torchvision is not used
because its checksum rejects the repacked ``train-images`` archive. Nothing is
downloaded: ``train-images-idx3-ubyte.gz`` and ``train-labels-idx1-ubyte.gz`` (the
MNIST training set, IDX format, gzip-compressed or raw) must be placed in the
folder by hand.

Both generators draw every random quantity from one
:func:`numpy.random.default_rng` generator seeded with ``seed`` (the spec's
``data_seed``), so a dataset is a deterministic function of its arguments.
Images are interpolated with :func:`scipy.ndimage.rotate` (``reshape=False``,
cubic spline, zero fill) and, for Health MNIST, :func:`scipy.ndimage.shift`, in
``float64``; the result is rounded and clipped to ``uint8`` and divided by 255.
For a ``uint8`` input this is exactly what scipy returns for a ``uint8`` output.
"""

from __future__ import annotations

import functools
import gzip
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import ndimage

from .base import LongitudinalDataset
from .cache import cached
from .synthetic import _check_int, _check_rate

__all__ = [
    "DEFAULT_MNIST_ROOT",
    "load_mnist_digits",
    "make_health_mnist",
    "make_rotating_mnist",
    "read_idx",
]

DEFAULT_MNIST_ROOT = "../shared/data/mnist"
"""Default MNIST folder, relative to the working directory or to the repository root."""

TRAIN_IMAGES = "train-images-idx3-ubyte.gz"
TRAIN_LABELS = "train-labels-idx1-ubyte.gz"

IMAGE_MAGIC = 2051
LABEL_MAGIC = 2049

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
VAL_FRACTION = 0.2

# IDX type codes -> big-endian numpy dtypes.
_IDX_DTYPES: dict[int, str] = {
    0x08: "u1",
    0x09: "i1",
    0x0B: ">i2",
    0x0C: ">i4",
    0x0D: ">f4",
    0x0E: ">f8",
}


# --------------------------------------------------------------------------- IDX reading


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (MNIST format), gzipped or raw.

    Parameters
    ----------
    path : str or pathlib.Path
        File to read. Gzip compression is detected from the content (the
        ``1f 8b`` signature), not from the file name.

    Returns
    -------
    numpy.ndarray
        The array with the shape given by the header, in native byte order and
        the header's element type: ``(N, 28, 28)`` ``uint8`` for MNIST images
        (magic 2051) and ``(N,)`` ``uint8`` for labels (magic 2049). The array
        is a fresh writable copy.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist (the message names it).
    ValueError
        If the file is not valid gzip, is shorter than its header, has a bad
        magic number (the first two bytes must be zero, the third a known type
        code, the fourth the number of dimensions, at least 1), or if the data
        size does not match the dimensions in the header.

    Notes
    -----
    The header is big-endian: a 4-byte magic ``0x0000TTDD`` (``TT`` the type
    code, 0x08 for ``uint8``; ``DD`` the number of dimensions) followed by one
    4-byte size per dimension, then the data in C order.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"IDX file not found: {str(path)!r}")
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:
            raise ValueError(f"{str(path)!r} is not a valid gzip file: {exc}") from exc
    if len(raw) < 4:
        raise ValueError(f"{str(path)!r} is too short ({len(raw)} bytes) to hold an IDX header")
    magic = int.from_bytes(raw[:4], "big")
    type_code, ndim = raw[2], raw[3]
    if raw[0] != 0 or raw[1] != 0 or type_code not in _IDX_DTYPES or ndim < 1:
        raise ValueError(
            f"{str(path)!r} has a bad IDX magic number {magic} (0x{magic:08x}); expected "
            f"0x0000TTDD with a known type code TT, e.g. {IMAGE_MAGIC} for images or "
            f"{LABEL_MAGIC} for labels"
        )
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(
            f"{str(path)!r} is truncated: its {ndim}-dimensional IDX header needs {header} "
            f"bytes, the file has {len(raw)}"
        )
    shape = tuple(int.from_bytes(raw[4 + 4 * k : 8 + 4 * k], "big") for k in range(ndim))
    dtype = np.dtype(_IDX_DTYPES[type_code])
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(raw) - header != expected:
        raise ValueError(
            f"{str(path)!r}: IDX header announces shape {shape} of {dtype.name} "
            f"({expected} data bytes) but the file holds {len(raw) - header} data bytes"
        )
    array = np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)
    return array.astype(dtype.newbyteorder("="), copy=True)


def _resolve_root(root: str | Path) -> Path:
    """Resolve ``root`` against the working directory, then against the repository root."""
    candidate = Path(root)
    if candidate.is_dir() or candidate.is_absolute():
        return candidate
    repo_root = Path(__file__).resolve().parents[2]
    fallback = repo_root / candidate
    if fallback.is_dir():
        return fallback
    return candidate


_MNIST_FILES = {
    TRAIN_IMAGES: ("MNIST training images", "the MNIST training set images"),
    TRAIN_LABELS: ("MNIST training labels", "the MNIST training set labels"),
}


def _locate(folder: Path, name: str) -> Path:
    """Return ``folder / name``, or the uncompressed name without ``.gz``; else explain.

    The FileNotFoundError says which file to put where.
    """
    for candidate in (folder / name, folder / name.removesuffix(".gz")):
        if candidate.is_file():
            return candidate
    what, description = _MNIST_FILES[name]
    where = folder.resolve()
    note = "" if where.is_dir() else " (the folder does not exist)"
    raise FileNotFoundError(
        f"{what} not found: put {name} ({description}, IDX format, gzip or raw; also "
        f"accepted as {name.removesuffix('.gz')}) in {where}{note}, or pass root=. "
        "Nothing is downloaded."
    )


def _stamp(path: Path) -> tuple[int, int]:
    stat = path.stat()
    return stat.st_mtime_ns, stat.st_size


@functools.lru_cache(maxsize=2)
def _training_set(
    images_path: str, labels_path: str, _stamps: tuple[tuple[int, int], ...]
) -> tuple[np.ndarray, np.ndarray]:
    """Cached, read-only MNIST training images ``(60000, 28, 28)`` and labels ``(60000,)``.

    ``_stamps`` (modification time and size of both files) is part of the cache key, so
    a file replaced in place is read again.
    """
    images = read_idx(images_path)
    labels = read_idx(labels_path)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise ValueError(
            f"{images_path!r} must hold uint8 images (N, H, W), got "
            f"{images.dtype.name} array of shape {images.shape}"
        )
    if labels.shape != images.shape[:1]:
        raise ValueError(
            f"{labels_path!r} holds {labels.shape} labels for "
            f"{images.shape[0]} images in {images_path!r}"
        )
    images.setflags(write=False)
    labels.setflags(write=False)
    return images, labels


def load_mnist_training(root: str | Path = DEFAULT_MNIST_ROOT) -> tuple[np.ndarray, np.ndarray]:
    """Return the MNIST training images and labels from ``root``.

    Parameters
    ----------
    root : str or pathlib.Path, optional
        Folder holding ``train-images-idx3-ubyte.gz`` and
        ``train-labels-idx1-ubyte.gz`` (IDX format, gzip-compressed or raw; the
        names without ``.gz`` are accepted too). A relative path is tried against
        the working directory first, then against the repository root. The files
        must be placed there by hand; nothing is downloaded.

    Returns
    -------
    images : numpy.ndarray
        ``(60000, 28, 28)`` ``uint8``, read-only (cached between calls).
    labels : numpy.ndarray
        ``(60000,)`` ``uint8``, read-only.

    Raises
    ------
    FileNotFoundError
        If a file is missing (the message names the file and the folder to put
        it in).
    ValueError
        If a file is malformed or images and labels disagree in number.
    """
    folder = _resolve_root(root)
    images_path = _locate(folder, TRAIN_IMAGES).resolve()
    labels_path = _locate(folder, TRAIN_LABELS).resolve()
    stamps = (_stamp(images_path), _stamp(labels_path))
    return _training_set(str(images_path), str(labels_path), stamps)


def _as_rng(seed: int | np.random.Generator) -> np.random.Generator:
    if isinstance(seed, np.random.Generator):
        return seed
    return np.random.default_rng(_check_int("seed", seed, 0))


def load_mnist_digits(
    root: str | Path = DEFAULT_MNIST_ROOT,
    digit: int = 3,
    n: int = 500,
    seed: int | np.random.Generator = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Draw ``n`` training images of one digit without replacement.

    Parameters
    ----------
    root : str or pathlib.Path, optional
        MNIST folder (see :func:`load_mnist_training`).
    digit : int, optional
        Digit class, 0..9. Default 3.
    n : int, optional
        Number of images, at most the number of training images of ``digit``.
        Default 500.
    seed : int or numpy.random.Generator, optional
        Seed of a fresh :func:`numpy.random.default_rng`, or a generator to
        draw from (advanced in place). Default 0.

    Returns
    -------
    images : numpy.ndarray
        ``(n, 28, 28)`` ``uint8`` (a writable copy), in the drawn order.
    indices : numpy.ndarray
        ``(n,)`` ``int64`` positions of the images in the training set.

    Raises
    ------
    ValueError
        If ``digit`` is not in 0..9, ``n`` is not a positive integer or exceeds
        the number of available images, or ``seed`` is invalid.
    FileNotFoundError
        If the MNIST files are missing.
    """
    digit = _check_int("digit", digit, 0)
    if digit > 9:
        raise ValueError(f"digit must be in 0..9, got {digit}")
    n = _check_int("n", n, 1)
    rng = _as_rng(seed)
    images, labels = load_mnist_training(root)
    pool = np.flatnonzero(labels == digit)
    if n > pool.size:
        raise ValueError(f"n={n} exceeds the {pool.size} MNIST training images of digit {digit}")
    indices = rng.choice(pool, size=n, replace=False).astype(np.int64)
    return images[indices].copy(), indices


# --------------------------------------------------------------------------- image transforms


def _to_unit(image: np.ndarray) -> np.ndarray:
    """Round and clip a float image to ``uint8``."""
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


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


def rotate_image(image: np.ndarray, angle_degrees: float) -> np.ndarray:
    """Rotating MNIST transform: rotate by ``angle_degrees`` (``reshape=False``) to ``uint8``."""
    return _to_unit(ndimage.rotate(image.astype(np.float64), float(angle_degrees), reshape=False))


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _instance_labels(n: int) -> np.ndarray:
    width = max(3, len(str(n - 1)))
    return np.array([f"i{p:0{width}d}" for p in range(n)], dtype=str)


def _random_val(rng: np.random.Generator, split: np.ndarray, rows: np.ndarray) -> None:
    """Send ``round(0.2 * len(rows))`` random rows among ``rows`` to "val" (in place)."""
    n_val = round(VAL_FRACTION * rows.size)
    split[rng.permutation(rows)[:n_val]] = "val"


# --------------------------------------------------------------------------- Health MNIST


def make_health_mnist(
    root: str | Path = DEFAULT_MNIST_ROOT,
    n_per_digit: int = 500,
    n_times: int = 20,
    missing_rate: float = 0.25,
    balanced: bool = False,
    seed: int = 0,
    *,
    cache: str | Path | None = None,
) -> LongitudinalDataset:
    """Generate Health MNIST (LVAE generator) as in spec section 7.

    Parameters
    ----------
    root : str or pathlib.Path, optional
        MNIST folder (see :func:`load_mnist_training`). Default
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


# --------------------------------------------------------------------------- Rotating MNIST


def make_rotating_mnist(
    root: str | Path = DEFAULT_MNIST_ROOT,
    n_instances: int = 400,
    n_angles: int = 16,
    digit: int = 3,
    n_test_instances: int = 40,
    test_block: int = 4,
    seed: int = 0,
    *,
    cache: str | Path | None = None,
) -> LongitudinalDataset:
    """Generate Rotating MNIST as in spec section 7.

    Parameters
    ----------
    root : str or pathlib.Path, optional
        MNIST folder (see :func:`load_mnist_training`).
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
        Cache file (``.npz``), as in :func:`make_health_mnist`: reused if it was
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
