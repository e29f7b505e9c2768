"""Container for longitudinal datasets.

Every dataset generator in :mod:`pyro_lmmvae.datasets` returns a
:class:`LongitudinalDataset`: a table of per-observation covariates plus the
(masked) outcome matrix, its observation mask, the unmasked truth where it
exists, and any ground-truth arrays (spec section 7, "Common to all
generators").
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

__all__ = ["LongitudinalDataset"]

SPLIT_COLUMN = "split"


@dataclass(frozen=True, eq=False)
class LongitudinalDataset:
    """A longitudinal dataset: covariates, masked outcomes and optional truth.

    Parameters
    ----------
    data : pandas.DataFrame
        One row per observation. Holds the covariates, the instance id column
        (named by ``instance_column``) and a ``"split"`` column with the
        values ``"train"``, ``"val"`` or ``"test"``.
    y : numpy.ndarray
        Outcomes, shape ``(N, D)``, stored as ``float32``. Unobserved entries
        are set to ``0.0``.
    mask : numpy.ndarray
        Observation mask, shape ``(N, D)``, stored as ``bool``; ``True`` means
        observed.
    y_true : numpy.ndarray or None, optional
        Unmasked outcomes, shape ``(N, D)``, stored as ``float32``, where the
        generator knows them (used for the imputation MSE).
    truth : dict of str to numpy.ndarray, optional
        Ground-truth arrays (for example true latents or effects). May be empty.
    name : str, optional
        Human-readable dataset name.
    instance_column : str, optional
        Name of the instance id column in ``data``. Default ``"id"``.

    Raises
    ------
    ValueError
        If ``y`` is not two-dimensional, if ``mask`` or ``y_true`` do not have
        the shape of ``y``, if ``mask`` holds values other than 0/1, if
        ``len(data)`` differs from the number of rows of ``y``, or if
        ``instance_column`` is not a column of ``data``.

    Notes
    -----
    The dataclass is frozen: fields cannot be reassigned, although the arrays
    themselves are ordinary (mutable) numpy arrays. ``y``, ``mask`` and
    ``y_true`` are converted to ``float32``/``bool``/``float32`` on
    construction. Equality comparison is identity-based (``eq=False``),
    because element-wise array comparison has no single truth value.
    """

    data: pd.DataFrame
    y: np.ndarray
    mask: np.ndarray
    y_true: np.ndarray | None = None
    truth: dict[str, np.ndarray] = field(default_factory=dict)
    name: str = "dataset"
    instance_column: str = "id"

    def __post_init__(self) -> None:
        if not isinstance(self.data, pd.DataFrame):
            raise ValueError(f"data must be a pandas.DataFrame, got {type(self.data).__name__}")
        y = np.asarray(self.y)
        if y.ndim != 2:
            raise ValueError(f"y must be a 2-D array of shape (N, D), got shape {y.shape}")
        y = y.astype(np.float32, copy=False)

        mask = np.asarray(self.mask)
        if mask.shape != y.shape:
            raise ValueError(
                f"mask must have the same shape as y {y.shape}, got shape {mask.shape}"
            )
        if mask.dtype != np.bool_:
            if mask.size and not np.isin(mask, (0, 1)).all():
                raise ValueError("mask must be boolean or contain only 0/1 values")
            mask = mask.astype(bool)

        y_true = self.y_true
        if y_true is not None:
            y_true = np.asarray(y_true)
            if y_true.shape != y.shape:
                raise ValueError(
                    f"y_true must have the same shape as y {y.shape}, got shape {y_true.shape}"
                )
            y_true = y_true.astype(np.float32, copy=False)

        if len(self.data) != y.shape[0]:
            raise ValueError(
                f"data has {len(self.data)} rows but y has {y.shape[0]} rows (shape {y.shape}); "
                "they must agree"
            )
        if self.instance_column not in self.data.columns:
            raise ValueError(
                f"instance_column {self.instance_column!r} is not a column of data; "
                f"columns are {list(self.data.columns)}"
            )
        if not isinstance(self.truth, dict):
            raise ValueError(f"truth must be a dict, got {type(self.truth).__name__}")

        object.__setattr__(self, "y", y)
        object.__setattr__(self, "mask", mask)
        object.__setattr__(self, "y_true", y_true)

    def split(self, name: str) -> LongitudinalDataset:
        """Return the rows belonging to one split.

        Parameters
        ----------
        name : str
            Split label, typically ``"train"``, ``"val"`` or ``"test"``.

        Returns
        -------
        LongitudinalDataset
            A new dataset with the rows whose ``data["split"] == name``.
            ``data`` is re-indexed from 0, ``y``, ``mask`` and ``y_true`` are
            sliced accordingly, and ``truth``, ``name`` and
            ``instance_column`` are passed through unchanged (truth arrays
            refer to the full dataset).

        Raises
        ------
        ValueError
            If ``data`` has no ``"split"`` column, or if no row carries the
            label ``name`` (the message lists the available splits).
        """
        if SPLIT_COLUMN not in self.data.columns:
            raise ValueError(f"data has no {SPLIT_COLUMN!r} column; cannot select split {name!r}")
        labels = self.data[SPLIT_COLUMN]
        available = sorted(str(v) for v in pd.unique(labels))
        if name not in available:
            raise ValueError(f"unknown split {name!r}; available splits are {available}")
        rows = (labels == name).to_numpy(dtype=bool)
        return LongitudinalDataset(
            data=self.data.loc[rows].reset_index(drop=True),
            y=self.y[rows],
            mask=self.mask[rows],
            y_true=None if self.y_true is None else self.y_true[rows],
            truth=self.truth,
            name=self.name,
            instance_column=self.instance_column,
        )

    @property
    def n_obs(self) -> int:
        """int: Number of observations (rows), N."""
        return int(self.y.shape[0])

    @property
    def n_features(self) -> int:
        """int: Number of outcome features, D."""
        return int(self.y.shape[1])

    @property
    def n_instances(self) -> int:
        """int: Number of distinct instances in ``data[instance_column]``."""
        return int(self.data[self.instance_column].nunique())
