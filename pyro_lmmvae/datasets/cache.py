"""On-disk cache of :class:`~pyro_lmmvae.datasets.LongitudinalDataset` objects.

A dataset is stored as one compressed ``.npz`` file (:func:`numpy.savez_compressed`)
written atomically (:func:`pyro_lmmvae.io.write_atomic`): a reader sees either no file,
the previous file or the complete new one, never a partial file, and a failed write
leaves no temporary file behind. Nothing is pickled: every member is a plain numpy
array and the file is read back with ``allow_pickle=False``.

File layout (format version :data:`FORMAT_VERSION`):

- ``format_version``: 0-d unicode array, ``"pyro_lmmvae.dataset/1"``;
- ``header``: 0-d unicode array holding a JSON object with the dataset ``name``, its
  ``instance_column``, the DataFrame ``columns`` (name, encoding and dtype, in order),
  the ``index`` description, the ``truth`` keys (in order) and whether ``y_true`` exists;
- ``meta``: 0-d unicode array, the caller's ``meta`` as JSON (``sort_keys=True``);
- ``y``, ``mask`` and, when present, ``y_true``;
- ``column_<k>``: the values of the ``k``-th DataFrame column;
- ``truth_<k>``: the ``k``-th truth array;
- ``index``: the DataFrame index values, only when it is not a ``RangeIndex``.

:func:`cached` turns a dataset generator into a cached one: a file whose stored ``meta``
equals the requested one is loaded instead of building the dataset again.
"""

from __future__ import annotations

import json
import os
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..io import write_atomic
from .base import LongitudinalDataset

__all__ = ["FORMAT_VERSION", "cached", "load_dataset", "save_dataset"]

FORMAT_VERSION = "pyro_lmmvae.dataset/1"
"""Format version string stored in every cache file; :func:`load_dataset` accepts only it."""

_FORMAT_PREFIX = "pyro_lmmvae.dataset/"
_NUMERIC_KINDS = "biufcmM"  # bool, int, uint, float, complex, timedelta, datetime


# ---------------------------------------------------------------------- encoding
def _json_meta(meta: Any) -> str:
    """Serialize ``meta`` (a dict) to canonical JSON; ValueError if it cannot be."""
    if not isinstance(meta, dict):
        raise ValueError(f"meta must be a dict, got {type(meta).__name__}")
    try:
        return json.dumps(meta, sort_keys=True, allow_nan=True)
    except (TypeError, ValueError) as err:
        raise ValueError(f"meta must be JSON-serializable: {err}") from err


def _encode_values(values: pd.Series | pd.Index, what: str) -> tuple[np.ndarray, dict[str, Any]]:
    """Encode a column (or the index) as a plain numpy array plus a JSON dtype description."""
    dtype = values.dtype
    if isinstance(dtype, pd.StringDtype) or dtype == np.dtype(object):
        if values.isna().any():
            raise ValueError(f"{what} holds missing values; string columns must be complete")
        objects = values.to_numpy(dtype=object)
        bad = [v for v in objects if not isinstance(v, str)]
        if bad:
            raise ValueError(
                f"{what} has dtype {dtype} with non-string values such as {bad[0]!r} "
                f"({type(bad[0]).__name__}); only string values can be stored"
            )
        array = np.array(objects.tolist(), dtype=str) if objects.size else np.zeros(0, "<U1")
        if isinstance(dtype, pd.StringDtype):
            na = dtype.na_value
            na_name = "nan" if isinstance(na, float) and np.isnan(na) else "NA"
            return array, {"kind": "string", "storage": dtype.storage, "na_value": na_name}
        return array, {"kind": "object"}
    if isinstance(dtype, np.dtype) and dtype.kind in _NUMERIC_KINDS:
        return values.to_numpy(dtype=dtype), {"kind": "numpy", "dtype": dtype.str}
    raise ValueError(
        f"{what} has dtype {dtype}, which the dataset cache cannot store; supported are "
        "numpy bool/integer/float/complex/datetime dtypes and string (str or object) columns"
    )


def _decode_values(array: np.ndarray, spec: dict[str, Any], index: pd.Index | None) -> pd.Series:
    kind = spec["kind"]
    if kind == "numpy":
        return pd.Series(array.astype(np.dtype(spec["dtype"]), copy=False), index=index)
    if kind == "object":
        return pd.Series(array.astype(object), index=index, dtype=object)
    if kind == "string":
        na_value = np.nan if spec["na_value"] == "nan" else pd.NA
        try:
            dtype = pd.StringDtype(spec["storage"], na_value=na_value)
        except (ImportError, TypeError):  # storage backend or na_value unsupported here
            dtype = pd.StringDtype()
        return pd.Series(array.astype(object), index=index, dtype=dtype)
    raise KeyError(f"unknown column encoding {kind!r}")


def _encode(ds: LongitudinalDataset, meta_json: str) -> dict[str, np.ndarray]:
    if not isinstance(ds, LongitudinalDataset):
        raise ValueError(f"ds must be a LongitudinalDataset, got {type(ds).__name__}")
    arrays: dict[str, np.ndarray] = {"y": ds.y, "mask": ds.mask}
    if ds.y_true is not None:
        arrays["y_true"] = ds.y_true

    frame = ds.data
    names = list(frame.columns)
    if len(set(names)) != len(names):
        raise ValueError(f"data has duplicate column names: {names}")
    columns = []
    for k, name in enumerate(names):
        if not isinstance(name, str):
            raise ValueError(f"data column names must be strings, got {name!r}")
        values, spec = _encode_values(frame[name], f"column {name!r}")
        arrays[f"column_{k}"] = values
        columns.append({"name": name, **spec})

    index = frame.index
    if isinstance(index, pd.RangeIndex):
        index_spec: dict[str, Any] = {
            "kind": "range",
            "start": int(index.start),
            "stop": int(index.stop),
            "step": int(index.step),
        }
    elif isinstance(index, pd.MultiIndex):
        raise ValueError("data has a MultiIndex, which the dataset cache cannot store")
    else:
        values, index_spec = _encode_values(index, "the data index")
        arrays["index"] = values
    index_name = index.name
    if index_name is not None and not isinstance(index_name, str):
        raise ValueError(f"the data index name must be a string or None, got {index_name!r}")
    index_spec["name"] = index_name

    truth_keys = list(ds.truth)
    for k, key in enumerate(truth_keys):
        if not isinstance(key, str):
            raise ValueError(f"truth keys must be strings, got {key!r}")
        value = np.asarray(ds.truth[key])
        if value.dtype.kind not in _NUMERIC_KINDS + "U":
            raise ValueError(
                f"truth[{key!r}] has dtype {value.dtype}, which the dataset cache cannot store "
                "without pickling; use a numeric or unicode (str) array"
            )
        arrays[f"truth_{k}"] = value

    header = {
        "name": ds.name,
        "instance_column": ds.instance_column,
        "columns": columns,
        "index": index_spec,
        "truth": truth_keys,
        "has_y_true": ds.y_true is not None,
    }
    arrays["header"] = np.array(json.dumps(header))
    arrays["meta"] = np.array(meta_json)
    arrays["format_version"] = np.array(FORMAT_VERSION)
    return arrays


# ---------------------------------------------------------------------- public API
def save_dataset(
    ds: LongitudinalDataset, path: str | os.PathLike, meta: dict | None = None
) -> Path:
    """Write ``ds`` to ``path`` as one compressed ``.npz`` file, atomically.

    Parameters
    ----------
    ds : LongitudinalDataset
        Dataset to store: ``y``, ``mask``, ``y_true`` (if any), every ``truth`` array,
        ``name``, ``instance_column`` and every ``data`` column, in order.
    path : str or os.PathLike
        Destination file. It is written exactly under this name (no ``.npz`` suffix is
        appended); missing parent folders are created.
    meta : dict or None, optional
        JSON-serializable description of how the dataset was built (for example the
        generator name and arguments), stored as JSON and compared by :func:`cached`.
        ``None`` stores ``{}``.

    Returns
    -------
    pathlib.Path
        ``path``.

    Raises
    ------
    ValueError
        If ``meta`` is not a JSON-serializable dict, or a column, the index or a truth
        array has a dtype that cannot be stored without pickling (see Notes). Nothing is
        written in that case.

    Notes
    -----
    Columns with a numpy dtype (bool, integers, floats, complex, datetime, timedelta) are
    stored as they are. String columns, of pandas' ``str``/``string`` dtype or of
    ``object`` dtype holding only ``str`` values, are stored as unicode arrays and
    restored with their original dtype (``object`` columns as ``object`` arrays of
    ``str``); they must not hold missing values. Categorical and other extension dtypes
    are rejected. The index is restored exactly if it is a ``RangeIndex`` or a
    one-level index of a supported dtype. Truth values are stored as
    ``numpy.asarray(value)`` and come back as numpy arrays (a Python scalar becomes a
    0-d array).

    The file is written to a temporary file in the destination folder and moved over
    ``path`` only once complete, so an existing file is replaced only by a complete new
    one, and a failure leaves neither a partial file nor the temporary file.
    """
    arrays = _encode(ds, _json_meta({} if meta is None else meta))

    def writer(tmp: Path) -> None:
        # A file handle, not a name: savez would append ".npz" to the temporary name.
        with open(tmp, "wb") as handle:
            np.savez_compressed(handle, **arrays)

    return write_atomic(path, writer)


def _not_a_cache(path: Path, reason: str) -> ValueError:
    return ValueError(f"{path} is not a pyro_lmmvae dataset cache ({reason})")


class _Reader:
    """An open ``.npz`` file with errors turned into ValueErrors naming the path."""

    def __init__(self, path: Path):
        self.path = path
        if not path.exists():
            raise FileNotFoundError(f"dataset cache not found: {path}")
        if not path.is_file():
            raise _not_a_cache(path, "not a regular file")
        try:
            npz = np.load(path, allow_pickle=False)
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
            raise _not_a_cache(path, f"not a readable .npz file: {err}") from err
        if not isinstance(npz, np.lib.npyio.NpzFile):
            raise _not_a_cache(path, "a single .npy array, not an .npz archive")
        self.npz = npz

    def __enter__(self) -> _Reader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.npz.close()

    def array(self, key: str) -> np.ndarray:
        if key not in self.npz.files:
            raise _not_a_cache(self.path, f"member {key!r} is missing")
        try:
            return self.npz[key]
        except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zlib.error) as err:
            raise _not_a_cache(self.path, f"member {key!r} is unreadable: {err}") from err

    def text(self, key: str) -> str:
        value = self.array(key)
        if value.shape != () or value.dtype.kind != "U":
            raise _not_a_cache(self.path, f"member {key!r} is not a string")
        return str(value)

    def json(self, key: str) -> Any:
        try:
            return json.loads(self.text(key))
        except json.JSONDecodeError as err:
            raise _not_a_cache(self.path, f"member {key!r} is not valid JSON: {err}") from err

    def version(self) -> str:
        """The stored format version; ValueError if the file does not look like a cache."""
        if "format_version" not in self.npz.files:
            raise _not_a_cache(self.path, "it has no 'format_version' member")
        return self.text("format_version")

    def check_version(self) -> None:
        version = self.version()
        if version != FORMAT_VERSION:
            raise ValueError(
                f"{self.path} is a dataset cache of format version {version!r}; this version "
                f"of pyro_lmmvae reads only {FORMAT_VERSION!r}. Delete the file to rebuild it."
            )


def load_dataset(path: str | os.PathLike) -> LongitudinalDataset:
    """Read a dataset written by :func:`save_dataset`.

    Parameters
    ----------
    path : str or os.PathLike
        The ``.npz`` file.

    Returns
    -------
    LongitudinalDataset
        The stored dataset; every array, dtype, column (in order), the index, ``truth``
        (in order), ``name`` and ``instance_column`` are as they were saved.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If ``path`` is not a dataset cache (not an ``.npz`` file, a foreign or corrupted
        one) or was written in another format version; the message names the path.
    """
    path = Path(path)
    with _Reader(path) as reader:
        reader.check_version()
        header = reader.json("header")
        try:
            index_spec = header["index"]
            if index_spec["kind"] == "range":
                index = pd.RangeIndex(index_spec["start"], index_spec["stop"], index_spec["step"])
            else:
                index = pd.Index(_decode_values(reader.array("index"), index_spec, None))
            index.name = index_spec["name"]
            columns = {
                spec["name"]: _decode_values(reader.array(f"column_{k}"), spec, index)
                for k, spec in enumerate(header["columns"])
            }
            truth = {key: reader.array(f"truth_{k}") for k, key in enumerate(header["truth"])}
            y_true = reader.array("y_true") if header["has_y_true"] else None
            fields = {"name": header["name"], "instance_column": header["instance_column"]}
        except (KeyError, TypeError, AttributeError) as err:
            raise _not_a_cache(path, f"malformed header: {err!r}") from err
        y, mask = reader.array("y"), reader.array("mask")
    try:
        return LongitudinalDataset(
            data=pd.DataFrame(columns, index=index),
            y=y,
            mask=mask,
            y_true=y_true,
            truth=truth,
            **fields,
        )
    except ValueError as err:
        raise ValueError(f"{path}: the stored dataset is inconsistent: {err}") from err


def cached(
    path: str | os.PathLike | None,
    build: Callable[[], LongitudinalDataset],
    meta: dict,
) -> LongitudinalDataset:
    """Return the dataset cached at ``path`` if it was built with ``meta``, else build it.

    Parameters
    ----------
    path : str, os.PathLike or None
        Cache file. ``None`` disables caching: ``build()`` is returned.
    build : callable
        Zero-argument function returning the dataset; called only when the cache cannot
        be used.
    meta : dict
        JSON-serializable description of the build (generator name and arguments). The
        cache is used only if the stored meta equals ``meta`` after a JSON round trip
        (so tuples compare equal to lists).

    Returns
    -------
    LongitudinalDataset
        The loaded or freshly built dataset.

    Raises
    ------
    ValueError
        If ``meta`` is not a JSON-serializable dict, if ``path`` exists but is not a
        dataset cache (a foreign or corrupted file is never overwritten; delete it or
        choose another path), or if ``build`` raises it.

    Notes
    -----
    - Missing file: the dataset is built, saved (atomically) and returned.
    - File whose stored meta differs from ``meta``, or written in another format
      version: the dataset is rebuilt and the file **overwritten** (atomically; until the
      new file is complete the old one stays in place).
    - If ``build`` raises, nothing is written and an existing file is left unchanged.
    - The returned dataset is the one built, not re-read from the file; both are equal.
    """
    if path is None:
        return build()
    if not isinstance(path, (str, os.PathLike)):
        raise ValueError(f"cache path must be a str, a path or None, got {path!r}")
    meta_json = _json_meta(meta)
    path = Path(path)
    if path.exists():
        with _Reader(path) as reader:
            same_version = reader.version() == FORMAT_VERSION
            if same_version and reader.json("meta") == json.loads(meta_json):
                use_cache = True
            else:
                use_cache = False
        if use_cache:
            return load_dataset(path)
    ds = build()
    if not isinstance(ds, LongitudinalDataset):
        raise ValueError(f"build() must return a LongitudinalDataset, got {type(ds).__name__}")
    save_dataset(ds, path, json.loads(meta_json))
    return ds
