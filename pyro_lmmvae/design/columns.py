"""The columns: checks of the data's columns and standardisation of the design's columns.

:class:`_DesignColumns` (a base of :class:`~pyro_lmmvae.design.Design`) checks the covariates
(present, unique, not dates, finite, informative), fits the standardisation of the continuous
covariates and applies it: to the design's columns after the formula is evaluated
(``scaling="columns"``), or to the covariates before (``"inputs"``, pyro_lmmvae 0.2). It also
checks that the evaluated design is finite.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd

from pyro_lmmvae.design.formula import _variables

SCALINGS = ("columns", "inputs")
"""Where standardisation applies: to the design's columns after the formula is evaluated
(``"columns"``, the default), or to the raw covariates before (``"inputs"``: pyro_lmmvae 0.2 and
earlier, kept so that their saved models load unchanged)."""


class ColumnNotFoundError(KeyError, ValueError):
    """A column the formula uses is not in the data (a ``KeyError`` and a ``ValueError``)."""

    def __str__(self) -> str:  # KeyError would print the message with quotes
        return str(self.args[0]) if self.args else ""


def _is_binary(values: pd.Series) -> bool:
    unique = pd.unique(values.dropna())
    return len(unique) <= 2 and set(np.asarray(unique, dtype=float).tolist()) <= {0.0, 1.0}


class _DesignColumns:
    """Column checks and standardisation for :class:`~pyro_lmmvae.design.Design` (a base class)."""

    # ------------------------------------------------------------------ fitting
    @staticmethod
    def _is_numeric(values: pd.Series) -> bool:
        return pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)

    def _check_columns(self, data: pd.DataFrame, columns: Sequence[str]) -> None:
        missing = [c for c in columns if c not in data.columns]
        if missing:
            raise ColumnNotFoundError(
                f"formula {self.formula!r} uses column(s) {missing} not found in data; "
                f"available columns: {list(data.columns)}"
            )
        repeated = sorted({c for c in columns if (data.columns == c).sum() > 1})
        if repeated:
            raise ValueError(
                f"data has more than one column named {repeated}; make the column names unique"
            )
        for col in columns:
            kind = data[col].dtype
            if pd.api.types.is_datetime64_any_dtype(kind) or pd.api.types.is_timedelta64_dtype(
                kind
            ):
                raise ValueError(
                    f"column {col!r} holds dates or durations ({kind}); convert it to a number "
                    f"first, e.g. days since the first visit: (data[{col!r}] - "
                    f"data[{col!r}].min()).dt.days"
                )

    def _check_informative(self, data: pd.DataFrame) -> None:
        """A one-level factor is an error (it has no contrast); a constant column a warning."""
        for col, levels in self.categories.items():
            if len(levels) == 1 and col != self.instance:
                raise ValueError(
                    f"column {col!r} has the single level {levels[0]!r}: a factor needs two "
                    "levels (its one-level contrast is empty); drop it from the formula"
                )
        with_intercept = (self._fixed_rhs or "").startswith("1") or bool(self._random_rhs)
        for col in sorted(self._variables - set(self.categories) - {self.instance}):
            if not with_intercept:
                break
            values = data[col].to_numpy(dtype=float)
            if values.size and np.all(values == values[0]):
                warnings.warn(
                    f"column {col!r} is constant ({values[0]:g}) in the training data: its "
                    "effect cannot be told apart from the intercept's",
                    UserWarning,
                    stacklevel=4,
                )

    def _check_finite(self, data: pd.DataFrame) -> None:
        for col in sorted(self._variables | ({self.instance} if self.instance else set())):
            values = data[col]
            if self._is_numeric(values):
                bad = ~np.isfinite(values.to_numpy(dtype=float))
            else:
                bad = values.isna().to_numpy()
            if bad.any():
                first = data.index[np.flatnonzero(bad)[0]]
                raise ValueError(
                    f"column {col!r} has {int(bad.sum())} NaN/inf value(s) "
                    f"(first at row {first!r}); covariates must be finite"
                )

    def _fit_standardization(
        self, data: pd.DataFrame, standardize: bool | Sequence[str]
    ) -> dict[str, tuple[float, float]]:
        if standardize is True:
            candidates = [
                c
                for c in sorted(self._variables)
                if c != self.instance and self._is_numeric(data[c]) and not _is_binary(data[c])
            ]
        elif standardize is False:
            candidates = []
        else:
            listed = list(standardize)
            self._check_columns(data, listed)
            for col in listed:
                if not self._is_numeric(data[col]):
                    raise ValueError(f"cannot standardize non-numeric column {col!r}")
            # A listed column the formula does not use has nothing to scale (one list can
            # then describe a dataset's continuous covariates for all of its formulas).
            candidates = [c for c in listed if c in self._variables]
        stats = {}
        for col in candidates:
            values = data[col].to_numpy(dtype=float)
            std = float(values.std())
            stats[col] = (float(values.mean()), std if std > 0 else 1.0)
        return stats

    def _prepare(self, data: pd.DataFrame, ordered: bool = False) -> pd.DataFrame:
        frame = data.copy()
        inputs = self.standardization if self.scaling == "inputs" else {}
        for col, (mean, std) in inputs.items():
            frame[col] = (frame[col].to_numpy(dtype=float) - mean) / std
        for col, levels in self.categories.items():
            # formulae sorts the levels of an unordered categorical and keeps an ordered one's
            # order: the encoders are built on ordered columns, so that the column's
            # categorical order gives the levels and the first is the reference level, as in an
            # R factor (strings get sorted levels, as R's factor() does). New data reuse the
            # encoders' levels (an ordered column there would have to hold every level).
            frame[col] = pd.Categorical(frame[col], categories=levels, ordered=ordered)
        return frame

    def _check_design_finite(self, matrices=None, where: str = "the training data") -> None:
        """One line naming the first term whose columns are NaN/inf (e.g. poly of a constant)."""
        parts = (
            ("fixed", self._fixed_encoder, self.fixed_terms),
            ("random", self._random_encoder, self.random_terms),
        )
        for part, encoder, labels in parts:
            if encoder is None:
                continue
            matrix = np.asarray(encoder) if matrices is None else matrices[part]
            bad = ~np.isfinite(np.asarray(matrix, dtype=float))
            if bad.any():
                row, column = np.argwhere(bad)[0]
                raise ValueError(
                    f"formula {self.formula!r}: the column {labels[column]!r} is NaN or infinite "
                    f"at {int(bad[:, column].sum())} row(s) of {where} (first: row {row}), e.g. "
                    "np.log of values <= 0, or poly()/bs() of a constant column; change the "
                    "term or the column"
                )

    def _fit_column_scaling(self) -> dict[str, dict[int, tuple[float, float]]]:
        """Mean and sd of every design column to z-score (``scaling="columns"``).

        A column is scaled when its term uses a standardised covariate, it is not a basis
        column, not 0/1 and not constant. Fills :attr:`standardization` by column name.
        """
        scaling: dict[str, dict[int, tuple[float, float]]] = {"fixed": {}, "random": {}}
        if self.scaling != "columns":
            return scaling
        self.standardization = {}
        scaled = set(self.scaled_covariates)
        parts = (
            ("fixed", self._fixed_encoder, self.fixed_bases, list(self.fixed_terms)),
            (
                "random",
                self._random_encoder,
                self.random_bases,
                [f"{t}|{self.group_factor}" for t in self.random_terms],
            ),
        )
        for part, encoder, bases, names in parts:
            if encoder is None:
                continue
            matrix = np.asarray(encoder).astype(float)
            for term_name, term in encoder.terms.items():
                if not _variables(term) & scaled:
                    continue
                for j in range(*encoder.slices[term_name].indices(matrix.shape[1])):
                    column = matrix[:, j]
                    std = float(column.std())
                    if bases[j] is not None or _is_binary(pd.Series(column)) or not std > 0:
                        continue
                    scaling[part][j] = (float(column.mean()), std)
                    self.standardization[names[j]] = scaling[part][j]
        return scaling

    def _scale_columns(self, matrix: np.ndarray, part: str) -> np.ndarray:
        """Apply the training column standardisation of ``part`` to an evaluated design."""
        for j, (mean, std) in self._column_scaling[part].items():
            matrix[:, j] = (matrix[:, j] - mean) / std
        return matrix
