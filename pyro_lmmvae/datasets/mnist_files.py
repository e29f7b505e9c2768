"""The MNIST training set on disk: locating the folder, reading the IDX files, drawing digits.

MNIST is read from the IDX files in ``../shared/data/mnist`` with numpy (:func:`read_idx`);
torchvision is not used because its checksum rejects the repacked ``train-images`` archive.
Nothing is downloaded: ``train-images-idx3-ubyte.gz`` and ``train-labels-idx1-ubyte.gz`` (the
MNIST training set, IDX format, gzip-compressed or raw) must be placed in the folder by hand.
:func:`load_mnist_digits` draws the source images of the Health and Rotating MNIST generators
(:mod:`~pyro_lmmvae.datasets.health_mnist`, :mod:`~pyro_lmmvae.datasets.rotating_mnist`).
"""

from __future__ import annotations

import functools
import gzip
import zlib
from pathlib import Path

import numpy as np

from .. import defaults
from .synthetic import _check_int

__all__ = [
    "DEFAULT_MNIST_ROOT",
    "load_mnist_digits",
    "load_mnist_training",
    "read_idx",
]

DEFAULT_MNIST_ROOT = defaults.MNIST_ROOT
"""Default MNIST folder, relative to the working directory or to the repository root."""

TRAIN_IMAGES = "train-images-idx3-ubyte.gz"
TRAIN_LABELS = "train-labels-idx1-ubyte.gz"

IMAGE_MAGIC = 2051
LABEL_MAGIC = 2049

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
