"""Reading the verbs' input files: covariate tables, arrays (observations, masks), checked.

Errors are one line naming the flag and the file: :class:`ValueError` (exit status 2),
:class:`FileNotFoundError` (2) or :class:`MissingPackageError` (1). numpy and pandas are
imported inside the readers.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

#: Extensions of the files the verbs read.
TABLE_EXTENSIONS = (".csv", ".parquet", ".pq")
ARRAY_EXTENSIONS = (".npy", ".npz", ".csv")


class MissingPackageError(ImportError):
    """An optional package that a file format needs is not installed (exit status 1)."""


def existing(path: str, flag: str) -> Path:
    """``path`` as a :class:`~pathlib.Path`; it must exist and not be a folder."""
    file = Path(path)
    if not file.exists():
        raise FileNotFoundError(f"{flag} {path}: no such file")
    if file.is_dir():
        raise ValueError(f"{flag} {path} is a folder, not a file")
    return file


def extension(path: str, flag: str, allowed: tuple[str, ...]) -> str:
    """The lower-case extension of ``path``, which must be one of ``allowed``."""
    ext = Path(path).suffix.lower()
    if ext not in allowed:
        raise ValueError(
            f"{flag} {path}: unknown file extension {ext or '(none)'!r}; use one of "
            f"{', '.join(allowed)}"
        )
    return ext


def read_covariates(path: str, flag: str = "--covariates") -> Any:
    """A covariate table (one row per observation) from ``.csv`` or ``.parquet``."""
    ext = extension(path, flag, TABLE_EXTENSIONS)
    file = existing(path, flag)
    import pandas as pd

    if ext == ".csv":
        reader = pd.read_csv
    else:
        if not any(importlib.util.find_spec(p) for p in ("pyarrow", "fastparquet")):
            raise MissingPackageError(
                f"{flag} {path}: reading parquet files needs the pyarrow package, which is not "
                "installed (pip install pyarrow), or give the covariates as .csv"
            )
        reader = pd.read_parquet
    try:
        table = reader(file)
    except (ValueError, OSError) as err:
        raise ValueError(f"{flag} {path}: cannot read the table: {err}") from err
    if table.empty:
        raise ValueError(f"{flag} {path}: the table has no rows")
    return table


def numeric_csv(file: Path, flag: str) -> Any:
    """A numeric CSV array; empty cells and ``nan`` are NaN.

    A first line that is not numeric, or that is pandas' default header ``0,1,...,D-1``
    (``DataFrame(array).to_csv(index=False)``), is read as column names.
    """
    import numpy as np
    import pandas as pd

    def numeric(frame: pd.DataFrame) -> bool:
        return all(
            pd.api.types.is_numeric_dtype(dtype) or pd.api.types.is_bool_dtype(dtype)
            for dtype in frame.dtypes
        )

    try:
        with open(file, encoding="utf-8") as handle:
            first = [token.strip().strip('"') for token in handle.readline().split(",")]
        header = 0 if first == [str(i) for i in range(len(first))] else None
        frame = pd.read_csv(file, header=header)
        if header is None and not numeric(frame):  # a line of column names?
            with_header = pd.read_csv(file, header=0)
            if numeric(with_header):
                frame, header = with_header, 0
    except (ValueError, OSError) as err:
        raise ValueError(f"{flag} {file}: cannot read the CSV file: {err}") from err
    for column in frame.columns:
        if not numeric(frame[[column]]):
            values = frame[column]
            bad = values[pd.to_numeric(values, errors="coerce").isna() & values.notna()]
            line = int(bad.index[0]) + (2 if header == 0 else 1)
            raise ValueError(
                f"{flag} {file}: column {column!r} holds non-numeric value(s) such as "
                f"{str(bad.iloc[0])!r} (line {line}); write numbers, leave missing entries "
                "empty or 'nan'"
            )
    return frame.to_numpy(dtype=np.float64)


def read_array(path: str, flag: str, *, key: str = "y") -> tuple[Any, Any]:
    """A 2-D array from ``.npy``, ``.npz`` (array ``key`` or the only one) or ``.csv``.

    Returns ``(array, extra)``, where ``extra`` is the ``mask`` array of an ``.npz`` holding
    one besides ``key`` (None otherwise).
    """
    import numpy as np

    ext = extension(path, flag, ARRAY_EXTENSIONS)
    file = existing(path, flag)
    extra = None
    try:
        if ext == ".npy":
            array = np.load(file, allow_pickle=False)
        elif ext == ".npz":
            with np.load(file, allow_pickle=False) as archive:
                names = list(archive.files)
                if key in names:
                    name = key
                elif len(names) == 1:
                    name = names[0]
                else:
                    raise ValueError(
                        f"{flag} {path} holds the arrays {names}; name the one to use {key!r}"
                    )
                array = archive[name]
                if name == key and "mask" in names and key != "mask":
                    extra = archive["mask"]
        else:
            array = numeric_csv(file, flag)
    except (ValueError, OSError, EOFError) as err:
        if str(err).startswith(flag):
            raise
        raise ValueError(f"{flag} {path}: cannot read the array: {err}") from err
    if array.ndim != 2:
        raise ValueError(
            f"{flag} {path} holds an array of shape {array.shape}; expected a 2-D (N, D) array, "
            "one row per observation (flatten images)"
        )
    return array, extra


def read_observations(
    observations: str, covariates_rows: int | None, covariates: str | None, mask: str | None
) -> tuple[Any, Any]:
    """Observations (NaN = missing) and an optional mask, checked against the covariate rows."""
    y, npz_mask = read_array(observations, "--observations", key="y")
    if mask is not None:
        mask_array, _ = read_array(mask, "--mask", key="mask")
        if mask_array.shape != y.shape:
            raise ValueError(
                f"--mask {mask} has shape {mask_array.shape} but --observations {observations} "
                f"has shape {y.shape}; they must match"
            )
    else:
        mask_array = npz_mask
    if covariates_rows is not None and y.shape[0] != covariates_rows:
        raise ValueError(
            f"--observations {observations} has {y.shape[0]} rows but --covariates "
            f"{covariates} has {covariates_rows}; they must match (one covariate row per "
            "observation)"
        )
    return y, mask_array
