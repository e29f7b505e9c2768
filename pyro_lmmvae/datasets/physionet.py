"""PhysioNet/CinC Challenge 2012 ICU time series (spec section 7, "PhysioNet 2012, set A").

:func:`load_physionet` reads the records of ``set-<x>.tar.gz`` and the outcomes of
``Outcomes-<x>.txt`` (:mod:`~pyro_lmmvae.datasets.physionet_files`), keeps one row per observed
hour, merges the in-hospital death outcome and builds the train/val/test split.
Nothing is downloaded: both files (from the PhysioNet/CinC Challenge 2012 page) must be
placed in the data folder by hand.
"""

from __future__ import annotations

import numbers
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .. import defaults
from .base import LongitudinalDataset
from .cache import cached
from .physionet_files import (
    DESCRIPTORS,
    N_HOURS,
    VARIABLES,
    _raw_files,
    _read_archive,
    _read_outcomes,
    _Record,
)
from .synthetic import _check_int, _check_rate

__all__ = ["DESCRIPTORS", "N_HOURS", "VARIABLES", "load_physionet"]


# ---------------------------------------------------------------------- argument checks
def _check_split_hour(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"split_hour must be a real number in (0, {N_HOURS - 1}], got {value!r}")
    value = float(value)
    if not 0.0 < value <= N_HOURS - 1:
        raise ValueError(f"split_hour must be in (0, {N_HOURS - 1}], got {value}")
    return value


# ---------------------------------------------------------------------- public API
def load_physionet(
    root: str | Path = defaults.PHYSIONET_ROOT,
    set_name: str = defaults.PHYSIONET_SET_NAME,
    min_hours: int = defaults.PHYSIONET_MIN_HOURS,
    test_fraction: float = defaults.PHYSIONET_TEST_FRACTION,
    split_hour: float = defaults.PHYSIONET_SPLIT_HOUR,
    val_fraction: float = defaults.PHYSIONET_VAL_FRACTION,
    seed: int = defaults.DATA_SEED,
    patients: int | None = None,
    *,
    cache: str | Path | None = None,
) -> LongitudinalDataset:
    """Load PhysioNet 2012 (set A by default) as in spec section 7.

    Parameters
    ----------
    root : str or pathlib.Path, optional
        Folder holding ``set-<set_name>.tar.gz`` (the records, as distributed) and
        ``Outcomes-<set_name>.txt``; both must be placed there by hand, nothing is
        downloaded. A relative path is tried against the working directory first, then
        against the repository root.
    set_name : str, optional
        Set letter, ``"a"`` (default), ``"b"`` or ``"c"``.
    min_hours : int, optional
        Keep only patients with at least this many observed hours (rows). Default 10.
    test_fraction : float, optional
        Fraction of the kept patients, rounded to the nearest count, whose rows with
        ``t >= split_hour`` form the test split, in ``[0, 1)``. They are drawn among the
        patients observed both before and after ``split_hour`` (capped at that number).
        Default 0.2.
    split_hour : float, optional
        Hour at which test patients' series are cut, in ``(0, 47]``. Default 36.
    val_fraction : float, optional
        Fraction of the rows of non-test patients sent to validation (rounded), in
        ``[0, 1)``. Default 0.2.
    seed : int, optional
        Seed of the single :func:`numpy.random.default_rng` used for the split.
    patients : int or None, optional
        Read only the first ``patients`` records in archive order (before the
        ``min_hours`` filter); ``None`` (default) reads all of them. Meant for quick tests.
    cache : str, pathlib.Path or None, optional
        Cache file (``.npz``, see :func:`pyro_lmmvae.datasets.cache.cached`). If it exists
        and was built with the same arguments (every argument except ``root``, so moving
        the raw files does not invalidate it), the dataset is loaded from it without
        reading the archive; otherwise the dataset is built and written there atomically,
        replacing a cache built with other arguments. ``None`` (default) disables caching.

    Returns
    -------
    LongitudinalDataset
        Named ``"physionet2012-<set_name>"``, rows ordered by patient (archive order) then
        hour, ``instance_column="id"``. ``data`` has the columns

        - ``id``: RecordID (int64);
        - ``t``: hour bin 0..47 (float64, raw);
        - ``age``: age in years, raw (the design z-scores it; a missing age, -1, which does
          not occur in sets A/B, is set to the mean over training patients);
        - ``gender``: 0/1 (int64); a missing gender is set to the mode over training
          patients (ties and an empty training set give 0);
        - ``icu_type``: ICU type as a *string* ``"1"``..``"4"`` (1 coronary care, 2 cardiac
          surgery recovery, 3 medical, 4 surgical), so that formulas one-hot encode it
          instead of z-scoring it (object dtype);
        - ``death``: in-hospital death 0/1 (int64) from ``Outcomes-<set_name>.txt``;
        - ``split``: ``"train"``, ``"val"`` or ``"test"``.

        ``y`` (float32, ``(N, 37)``, columns :data:`VARIABLES`) holds the standardized hourly
        means, 0 where unobserved; ``mask`` marks the observed entries (every row has at
        least one); ``y_true`` is ``None``. ``truth`` holds ``"variables"`` (names, ``(37,)``),
        ``"variable_mean"`` and ``"variable_std"`` (``(37,)`` float64, raw units), so that
        ``raw = y * variable_std + variable_mean`` on observed entries.

    Raises
    ------
    FileNotFoundError
        If the archive or the outcomes file does not exist (the message says which file to
        put in which folder).
    ValueError
        If an argument is invalid (checked before any file is read or written), a record
        line is malformed (the message names the archive member and line), a record is
        missing from the outcomes file, no patient passes the ``min_hours`` filter, or
        ``cache`` holds a file other than a dataset cache. When ``cache`` is given and the
        build fails, no cache file is written.

    Notes
    -----
    - Hour bins are ``floor(minutes / 60)``; the final timestamp 48:00 goes into bin 47.
      Several values of a variable within a bin are averaged.
    - The value -1 (missing code) and non-positive Temp are treated as unobserved. Weight
      at 00:00 is the admission weight and counts as an hour-0 measurement; Height is
      unused.
    - Standardization uses the observed *training* entries: ``mean`` and the population
      standard deviation (``ddof=0``) per variable. A variable with a zero or undefined
      standard deviation (MechVent is always 1 in set A) gets ``std = 1``, and one
      never observed in training gets ``mean = 0``.
    - The test patients' rows before ``split_hour`` all go to training; only the rows of
      the other patients are split at random into train and validation.
    """
    if not isinstance(set_name, str) or set_name not in ("a", "b", "c"):
        raise ValueError(f"set_name must be 'a', 'b' or 'c', got {set_name!r}")
    min_hours = _check_int("min_hours", min_hours, 1)
    if min_hours > N_HOURS:
        raise ValueError(f"min_hours must be <= {N_HOURS}, got {min_hours}")
    test_fraction = _check_rate("test_fraction", test_fraction)
    split_hour = _check_split_hour(split_hour)
    val_fraction = _check_rate("val_fraction", val_fraction)
    seed = _check_int("seed", seed, 0)
    if patients is not None:
        patients = _check_int("patients", patients, 1)

    meta = {
        "generator": "physionet2012",
        "version": 1,  # bump when the generated data change: old caches are rebuilt
        "set_name": set_name,
        "min_hours": min_hours,
        "test_fraction": test_fraction,
        "split_hour": split_hour,
        "val_fraction": val_fraction,
        "seed": seed,
        "patients": patients,
    }
    return cached(
        cache,
        lambda: _build_physionet(
            root, set_name, min_hours, test_fraction, split_hour, val_fraction, seed, patients
        ),
        meta,
    )


def _build_physionet(
    root: str | Path,
    set_name: str,
    min_hours: int,
    test_fraction: float,
    split_hour: float,
    val_fraction: float,
    seed: int,
    patients: int | None,
) -> LongitudinalDataset:
    """PhysioNet 2012 from validated arguments (see :func:`load_physionet`)."""
    archive_path, outcomes_path = _raw_files(root, set_name)

    records = _read_archive(archive_path, patients)
    outcomes = _read_outcomes(outcomes_path)
    absent = [r.record_id for r in records if r.record_id not in outcomes]
    if absent:
        raise ValueError(
            f"{len(absent)} record(s) have no row in {outcomes_path}, e.g. RecordID {absent[0]}"
        )

    # One row per observed hour; keep patients with >= min_hours rows.
    kept: list[tuple[_Record, np.ndarray]] = []
    for record in records:
        hours = np.flatnonzero(record.counts.any(axis=1))
        if hours.size >= min_hours:
            kept.append((record, hours))
    if not kept:
        raise ValueError(
            f"no patient has >= {min_hours} observed hours among the {len(records)} read"
        )

    n_patients = len(kept)
    lengths = np.array([hours.size for _, hours in kept])
    inst = np.repeat(np.arange(n_patients), lengths)
    t = np.concatenate([hours for _, hours in kept]).astype(np.float64)
    sums = np.concatenate([rec.sums[hours] for rec, hours in kept])
    counts = np.concatenate([rec.counts[hours] for rec, hours in kept])
    mask = counts > 0
    raw = np.divide(sums, counts, out=np.zeros_like(sums), where=mask)

    # Split: test = rows t >= split_hour of patients observed on both sides of split_hour.
    rng = np.random.default_rng(seed)
    before = np.zeros(n_patients, dtype=bool)
    after = np.zeros(n_patients, dtype=bool)
    before[inst[t < split_hour]] = True
    after[inst[t >= split_hour]] = True
    eligible = np.flatnonzero(before & after)
    n_test = min(round(test_fraction * n_patients), eligible.size)
    test_patients = np.zeros(n_patients, dtype=bool)
    test_patients[rng.permutation(eligible)[:n_test]] = True
    row_test_patient = test_patients[inst]
    split = np.full(inst.size, "train", dtype=object)
    split[row_test_patient & (t >= split_hour)] = "test"
    rest = np.flatnonzero(~row_test_patient)
    n_val = round(val_fraction * rest.size)
    split[rng.permutation(rest)[:n_val]] = "val"
    split = split.astype(str)
    train = split == "train"

    # Standardize every variable with its observed training entries.
    train_mask = mask & train[:, None]
    n_obs = train_mask.sum(axis=0)
    safe_n = np.maximum(n_obs, 1)
    mean = np.where(train_mask, raw, 0.0).sum(axis=0) / safe_n
    var = np.where(train_mask, (raw - mean) ** 2, 0.0).sum(axis=0) / safe_n
    std = np.sqrt(var)
    std = np.where((n_obs > 0) & (std > 0), std, 1.0)
    mean = np.where(n_obs > 0, mean, 0.0)
    y = np.where(mask, (raw - mean) / std, 0.0).astype(np.float32)

    # Per-patient covariates; impute gender (mode) and age (mean) over training patients.
    train_patients = np.zeros(n_patients, dtype=bool)
    train_patients[inst[train]] = True
    gender = np.array([rec.gender for rec, _ in kept])
    age = np.array([rec.age for rec, _ in kept])
    known = train_patients & ~np.isnan(gender)
    n_ones = int(gender[known].sum())
    mode = 1.0 if n_ones > known.sum() - n_ones else 0.0
    gender = np.where(np.isnan(gender), mode, gender).astype(np.int64)
    known_age = train_patients & ~np.isnan(age)
    age_fill = float(age[known_age].mean()) if known_age.any() else 0.0
    age = np.where(np.isnan(age), age_fill, age)
    record_ids = np.array([rec.record_id for rec, _ in kept], dtype=np.int64)
    icu = np.array([rec.icu_type for rec, _ in kept], dtype=object)
    death = np.array([outcomes[rid] for rid in record_ids], dtype=np.int64)

    data = pd.DataFrame(
        {
            "id": record_ids[inst],
            "t": t,
            "age": age[inst],
            "gender": gender[inst],
            "icu_type": icu[inst],
            "death": death[inst],
            "split": split,
        }
    )
    truth = {
        "variables": np.array(VARIABLES, dtype=str),
        "variable_mean": mean,
        "variable_std": std,
    }
    return LongitudinalDataset(
        data=data,
        y=y,
        mask=mask,
        y_true=None,
        truth=truth,
        name=f"physionet2012-{set_name}",
        instance_column="id",
    )
