"""The raw PhysioNet/CinC Challenge 2012 files: locating them, parsing the records, reading
the outcomes (spec section 7, "PhysioNet 2012, set A").

Each record of ``set-<x>.tar.gz`` is a CSV file ``set-<x>/<RecordID>.txt`` with the header
``Time,Parameter,Value``; ``Time`` is ``HH:MM`` elapsed since ICU admission (00:00 to 48:00).
The general descriptors RecordID, Age, Gender, Height and ICUType sit at 00:00; the other
37 parameter names (:data:`VARIABLES`, Weight included) are the time-varying outcomes.
The records are read straight from the archive (nothing is extracted to disk) and every
variable is binned into hourly sums and counts; ``Outcomes-<x>.txt`` gives the in-hospital
death of each record. :mod:`~pyro_lmmvae.datasets.physionet` builds the dataset from them.
"""

from __future__ import annotations

import tarfile
import zlib
from pathlib import Path

import numpy as np
import pandas as pd

from .mnist_files import _resolve_root

__all__ = ["DESCRIPTORS", "N_HOURS", "VARIABLES"]

VARIABLES: tuple[str, ...] = (
    "ALP",
    "ALT",
    "AST",
    "Albumin",
    "BUN",
    "Bilirubin",
    "Cholesterol",
    "Creatinine",
    "DiasABP",
    "FiO2",
    "GCS",
    "Glucose",
    "HCO3",
    "HCT",
    "HR",
    "K",
    "Lactate",
    "MAP",
    "MechVent",
    "Mg",
    "NIDiasABP",
    "NIMAP",
    "NISysABP",
    "Na",
    "PaCO2",
    "PaO2",
    "Platelets",
    "RespRate",
    "SaO2",
    "SysABP",
    "Temp",
    "TroponinI",
    "TroponinT",
    "Urine",
    "WBC",
    "Weight",
    "pH",
)
"""The 37 time-varying variables, in the column order of ``y`` (ASCII order of the names)."""

DESCRIPTORS: tuple[str, ...] = ("RecordID", "Age", "Gender", "Height", "ICUType")
"""Static descriptors; they are covariates (or unused: Height), never outcome columns."""

N_HOURS = 48
"""Number of hourly bins; the final timestamp 48:00 is merged into bin 47."""

HEADER = "Time,Parameter,Value"
MISSING_CODE = -1.0
ICU_TYPES: tuple[str, ...] = ("1", "2", "3", "4")

_VARIABLE_INDEX = {name: j for j, name in enumerate(VARIABLES)}
_TEMP = _VARIABLE_INDEX["Temp"]


# ---------------------------------------------------------------------- parsing
class _Record:
    """One parsed patient: descriptors plus the hourly sums/counts of every variable."""

    __slots__ = ("age", "counts", "gender", "icu_type", "record_id", "sums")

    def __init__(self, record_id, age, gender, icu_type, sums, counts):
        self.record_id = record_id
        self.age = age
        self.gender = gender
        self.icu_type = icu_type
        self.sums = sums
        self.counts = counts


def _parse_minutes(text: str, where: str) -> int:
    hours, sep, minutes = text.partition(":")
    if not sep or not hours.isdigit() or not minutes.isdigit() or len(minutes) != 2:
        raise ValueError(f"{where}: malformed time {text!r}; expected HH:MM")
    total = int(hours) * 60 + int(minutes)
    if int(minutes) >= 60 or total > N_HOURS * 60:
        raise ValueError(f"{where}: time {text!r} is outside 00:00..{N_HOURS}:00")
    return total


def _parse_record(name: str, text: str) -> _Record:
    """Parse one record file; raises ValueError naming ``name`` and the line on bad input."""
    lines = text.splitlines()
    if not lines or lines[0].strip().lstrip("\ufeff") != HEADER:
        first = lines[0] if lines else ""
        raise ValueError(f"{name}, line 1: expected header {HEADER!r}, got {first!r}")
    bin_cache: dict[str, int] = {}
    keys: list[int] = []
    values: list[float] = []
    descriptors: dict[str, float] = {}
    n_var = len(VARIABLES)
    for lineno, line in enumerate(lines[1:], start=2):
        line = line.strip()
        if not line:
            continue
        fields = line.split(",")
        if len(fields) != 3:
            raise ValueError(
                f"{name}, line {lineno}: expected 3 comma-separated fields "
                f"(Time,Parameter,Value), got {line!r}"
            )
        time_text, param, value_text = fields
        try:
            value = float(value_text)
        except ValueError:
            raise ValueError(
                f"{name}, line {lineno}: value {value_text!r} is not a number"
            ) from None
        if not np.isfinite(value):
            raise ValueError(f"{name}, line {lineno}: value {value_text!r} is not finite")
        hour = bin_cache.get(time_text)
        if hour is None:
            minutes = _parse_minutes(time_text, f"{name}, line {lineno}")
            hour = bin_cache[time_text] = min(minutes // 60, N_HOURS - 1)
        j = _VARIABLE_INDEX.get(param)
        if j is None:
            if param in DESCRIPTORS:
                descriptors[param] = value
                continue
            raise ValueError(f"{name}, line {lineno}: unknown parameter {param!r}")
        if value == MISSING_CODE or (j == _TEMP and value <= 0.0):
            continue
        keys.append(hour * n_var + j)
        values.append(value)
    if "RecordID" not in descriptors:
        raise ValueError(f"{name}: no RecordID descriptor")
    record_id = int(descriptors["RecordID"])
    icu = descriptors.get("ICUType")
    if icu is None or icu not in (1.0, 2.0, 3.0, 4.0):
        raise ValueError(f"{name}: ICUType must be 1, 2, 3 or 4, got {icu!r}")
    age = descriptors.get("Age", MISSING_CODE)
    gender = descriptors.get("Gender", MISSING_CODE)
    key_arr = np.asarray(keys, dtype=np.int64)
    size = N_HOURS * n_var
    sums = np.bincount(key_arr, weights=np.asarray(values, dtype=np.float64), minlength=size)
    counts = np.bincount(key_arr, minlength=size)
    return _Record(
        record_id=record_id,
        age=np.nan if age == MISSING_CODE else age,
        gender=np.nan if gender not in (0.0, 1.0) else gender,
        icu_type=str(int(icu)),
        sums=sums.reshape(N_HOURS, n_var),
        counts=counts.reshape(N_HOURS, n_var),
    )


def _read_archive(path: Path, limit: int | None) -> list[_Record]:
    records: list[_Record] = []
    try:
        archive = tarfile.open(path, mode="r:gz")
    except (tarfile.TarError, OSError) as err:
        raise ValueError(f"cannot read {path} as a gzip-compressed tar archive: {err}") from err
    with archive:
        try:
            for member in archive:
                if not (member.isfile() and member.name.endswith(".txt")):
                    continue
                handle = archive.extractfile(member)
                if handle is None:  # pragma: no cover - isfile() members always have data
                    continue
                where = f"{path}:{member.name}"
                try:
                    text = handle.read().decode("utf-8")
                except UnicodeDecodeError as err:
                    raise ValueError(f"{where}: not UTF-8 text: {err}") from None
                records.append(_parse_record(where, text))
                if limit is not None and len(records) >= limit:
                    break
        except (tarfile.TarError, OSError, EOFError, zlib.error) as err:
            raise ValueError(f"{path} is a damaged or truncated tar archive: {err}") from err
    if not records:
        raise ValueError(f"{path} holds no record files (*.txt)")
    return records


def _read_outcomes(path: Path) -> dict[int, int]:
    try:
        frame = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise ValueError(f"cannot parse outcomes file {path}: {err}") from err
    needed = ["RecordID", "In-hospital_death"]
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        raise ValueError(
            f"outcomes file {path} lacks column(s) {missing}; columns are {list(frame.columns)}"
        )
    death = frame["In-hospital_death"]
    if not death.isin([0, 1]).all():
        raise ValueError(f"outcomes file {path}: In-hospital_death must be 0 or 1")
    return dict(zip(frame["RecordID"].astype(np.int64), death.astype(np.int64), strict=True))


def _raw_files(root: str | Path, set_name: str) -> tuple[Path, Path]:
    """Locate the archive and the outcomes file; FileNotFoundError says what to put where."""
    folder = _resolve_root(root)
    where = folder.resolve()
    note = "" if where.is_dir() else " (the folder does not exist)"
    letter = set_name.upper()
    archive_path = folder / f"set-{set_name}.tar.gz"
    outcomes_path = folder / f"Outcomes-{set_name}.txt"
    if not archive_path.is_file():
        raise FileNotFoundError(
            f"PhysioNet 2012 set {letter} archive not found: put {archive_path.name} (the "
            f"PhysioNet/CinC Challenge 2012 set {letter} records, a gzip-compressed tar of "
            f"set-{set_name}/<RecordID>.txt files, as distributed) in {where}{note}, or pass "
            "root=. Nothing is downloaded."
        )
    if not outcomes_path.is_file():
        raise FileNotFoundError(
            f"PhysioNet 2012 set {letter} outcomes not found: put {outcomes_path.name} (the "
            f"CSV with the RecordID and In-hospital_death columns of set {letter}) in "
            f"{where}{note}, or pass root=. Nothing is downloaded."
        )
    return archive_path, outcomes_path
