"""Design matrices of the latent linear mixed model, built from an lme4-style formula.

A :class:`Design` turns a one-sided formula such as ``"~ 1 + age + sex + sex:age + (1 + age | id)"``
and a :class:`pandas.DataFrame` into

* the fixed-effects matrix ``X`` (N, Q_f), with intercept, continuous, binary, one-hot
  categorical and interaction columns, parsed by `formulae <https://bambinos.github.io/formulae/>`_;
* the random-effects *expression* columns ``W`` (N, k) and a group index (N,) into the levels of
  the grouping factor, so that ``u[group] @ w`` is a gather and never a dense one-hot product.

The formula is evaluated on the raw columns: functions (``np.log(t + 1)``, ``poly(t, 2)``,
``bs(t, df=4)``) and basis terms (``fourier(t, 4)``) see the values as they are in the data.
Standardisation (``standardize=True``) then z-scores the *design columns* computed from
continuous covariates (``age``, ``np.log(t + 1)``, ``sex[m]:age``) with their training mean and
sd; intercepts, 0/1 columns (dummies) and basis columns are left alone.

The design remembers everything needed to encode new data identically: term names, factor
levels (through formulae's stateful encoders), the column standardisation and the levels of the
grouping factor. New data with an unseen group follow an explicit policy.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
from formulae import design_matrices, model_description
from formulae.categorical import ENCODINGS
from formulae.parser import ParseError

from pyro_lmmvae.bases import basis_labels, basis_namespace, check_basis_arguments

UnseenPolicy = Literal["error", "prior"]
SCALINGS = ("columns", "inputs")
"""Where standardisation applies: to the design's columns after the formula is evaluated
(``"columns"``, the default), or to the raw covariates before (``"inputs"``: pyro_lmmvae 0.2 and
earlier, kept so that their saved models load unchanged)."""
_NUMBER_HINT = (
    "formulae reads numbers in plain decimal notation only: write 10.0 rather than '10.' and "
    "keep values above about 1e-4 (it prints smaller ones as 1e-05 and cannot read them back); "
    "rescale the column instead"
)
#: Numbers formulae may misread: '10.' (no digit after the point) or exponent notation.
_NUMBER_LIKE = re.compile(r"\d\.(?!\d)|\d[eE][-+]?\d")
_EMPTY_FORMULAS = {"", "0", "-1", "0 +", "+ 0"}


@dataclass(frozen=True)
class DesignMatrices:
    """Numeric design of a set of rows.

    Attributes
    ----------
    fixed : numpy.ndarray
        Fixed-effects matrix, shape (N, Q_f), float32.
    random : numpy.ndarray
        Random-effects expression columns ``w_i``, shape (N, k), float32.
    group : numpy.ndarray
        Index of each row's group among :attr:`Design.groups`, shape (N,), int64; negative marks a
        group unseen in training (only with ``unseen="prior"``).
    """

    fixed: np.ndarray
    random: np.ndarray
    group: np.ndarray


def _strip_formula(formula: str) -> str:
    text = formula.strip()
    if "~" in text:
        lhs, _, rhs = text.partition("~")
        if lhs.strip():
            raise ValueError(
                f"formula {formula!r} has a response {lhs.strip()!r} on the left of '~'; "
                "the latent prior formula is one-sided: pass the observations as y= instead"
            )
        text = rhs.strip()
    return text


def _random_parts(rhs: str) -> list[tuple[str, bool, str]]:
    """The top-level ``(expr | factor)`` and ``(expr || factor)`` terms of a formula's right side.

    Returns ``(expr, correlated, factor)`` per term, in order; nested parentheses (basis calls)
    inside ``expr`` are kept whole.
    """
    parts, depth, start = [], 0, None
    for i, char in enumerate(rhs):
        if char == "(":
            if depth == 0:
                start = i
            depth += 1
        elif char == ")" and depth:
            depth -= 1
            if depth == 0 and start is not None:
                inner = rhs[start + 1 : i]
                bar = _top_level_bar(inner)
                if bar is not None:
                    double = inner[bar : bar + 2] == "||"
                    expr = inner[:bar].strip()
                    factor = inner[bar + (2 if double else 1) :].strip()
                    parts.append((expr, not double, factor))
    return parts


def _top_level_bar(text: str) -> int | None:
    depth = 0
    for i, char in enumerate(text):
        depth += char == "("
        depth -= char == ")"
        if char == "|" and depth == 0:
            return i
    return None


class ColumnNotFoundError(KeyError, ValueError):
    """A column the formula uses is not in the data (a ``KeyError`` and a ``ValueError``)."""

    def __str__(self) -> str:  # KeyError would print the message with quotes
        return str(self.args[0]) if self.args else ""


def _variables(term) -> set[str]:
    return {name for name in getattr(term, "var_names", set()) if name}


def _is_binary(values: pd.Series) -> bool:
    unique = pd.unique(values.dropna())
    return len(unique) <= 2 and set(np.asarray(unique, dtype=float).tolist()) <= {0.0, 1.0}


class Design:
    """Encodes covariates for the latent linear mixed model from a one-sided formula.

    Parameters
    ----------
    formula : str
        lme4-style one-sided formula, e.g. ``"~ 1 + age + sex + sex:age + (1 + age | id)"``.
        ``"~ 0"`` gives an empty prior (a plain VAE). All random-effect terms must share one
        grouping factor, which is the instance (patient, digit) of each row.
    data : pandas.DataFrame
        Training covariates, one row per observation.
    instance : str, optional
        Column identifying the instance of each row, used to batch whole instances. Defaults to
        the grouping factor of the random effects; without random effects and without
        ``instance`` every row is its own instance.
    standardize : bool or sequence of str, default True
        Which continuous covariates are standardised: ``True`` every continuous (non-0/1)
        column the formula uses, a sequence names them (those the formula does not use are
        ignored), ``False`` none. Every design column computed from one of them (``age``,
        ``np.log(age)``, ``sex[m]:age``), except 0/1 columns and basis columns, is z-scored with
        its training mean and standard deviation *after* the formula is evaluated, so formula
        functions and bases see raw values.
    scaling : {"columns", "inputs"}, default "columns"
        ``"inputs"`` z-scores the covariates before the formula is evaluated instead: the
        behaviour of pyro_lmmvae 0.2 and earlier, used to load their saved models.

    Attributes
    ----------
    fixed_terms : tuple of str
        Names of the fixed-effect columns, e.g. ``("Intercept", "age", "sex[m]", "sex[m]:age")``.
    random_terms : tuple of str
        Names of the random-effect expression columns, e.g. ``("1", "age")``.
    fixed_bases, random_bases : tuple of (BasisColumn or None)
        For each fixed / random column, what it is if it comes from a ``fourier`` or ``rff``
        basis (see :mod:`pyro_lmmvae.bases`), else None.
    group_factor : str or None
        Column that indexes the random effects.
    groups : numpy.ndarray
        Levels of the grouping factor seen in training, in index order.
    standardization : dict
        ``{design column: (mean, std)}`` applied to new data: fixed columns by their term name
        (``"age"``, ``"sex[m]:age"``), random ones as ``"age|id"``. (With ``scaling="inputs"``:
        ``{covariate: (mean, std)}``.)

    Examples
    --------
    >>> import pandas as pd
    >>> df = pd.DataFrame({"age": [1.0, 2.0, 3.0, 4.0], "sex": ["f", "m", "f", "m"],
    ...                    "id": ["a", "a", "b", "b"]})
    >>> d = Design("~ 1 + age + sex + (1 + age | id)", df, standardize=False)
    >>> d.fixed_terms
    ('Intercept', 'age', 'sex[m]')
    >>> d.random_terms
    ('1', 'age')
    >>> d.transform(df).group.tolist()
    [0, 0, 1, 1]
    """

    def __init__(
        self,
        formula: str,
        data: pd.DataFrame,
        *,
        instance: str | None = None,
        standardize: bool | Sequence[str] = True,
        scaling: str = "columns",
    ) -> None:
        if scaling not in SCALINGS:
            raise ValueError(f"scaling must be one of {SCALINGS}, got {scaling!r}")
        self.scaling = scaling
        if not isinstance(data, pd.DataFrame):
            raise TypeError(f"data must be a pandas DataFrame, got {type(data).__name__}")
        if len(data) == 0:
            raise ValueError("data has no rows")
        self.formula = formula
        rhs = _strip_formula(formula)
        self._random_parts = _random_parts(rhs)
        self._rhs = rhs.replace("||", "|")  # formulae reads single bars; blocks say which
        self._parse()
        if instance is not None and self.group_factor is not None and instance != self.group_factor:
            raise ValueError(
                f"instance={instance!r} differs from the random-effect grouping factor "
                f"{self.group_factor!r}; the random effects must be grouped by the instance"
            )
        self.instance = instance if instance is not None else self.group_factor
        # names of formulae's contrasts (C(sex, Treatment)) are arguments, not data columns
        self._variables = {v for v in self._variables if v in data.columns or v not in ENCODINGS}
        columns = sorted(self._variables | ({self.instance} if self.instance else set()))
        self._check_columns(data, columns)
        self._check_finite(data)
        #: the covariates whose columns are standardised, with their raw mean and sd
        self.scaled_covariates = self._fit_standardization(data, standardize)
        self.standardization = dict(self.scaled_covariates) if scaling == "inputs" else {}
        self.categories = {
            col: pd.Categorical(data[col]).remove_unused_categories().categories
            for col in sorted(self._variables)
            if not self._is_numeric(data[col])
        }
        self._check_informative(data)
        if self.instance is not None:
            levels = pd.Categorical(data[self.instance]).categories
            self.groups = np.asarray(levels)
        else:
            self.groups = np.arange(len(data))
        self._reference = data[columns].reset_index(drop=True).copy()
        self._build_encoders()

    # ------------------------------------------------------------------ parsing
    def _parse(self) -> None:
        self._fixed_rhs: str | None
        self._random_rhs: str | None = None
        self.group_factor = None
        self._variables: set[str] = set()
        if self._rhs in _EMPTY_FORMULAS:
            self._fixed_rhs = None
            return
        try:
            desc = model_description(self._rhs)
        except Exception as err:  # formulae raises several parser error types
            numbers = _NUMBER_LIKE.search(self._rhs) is not None
            hint = f"; {_NUMBER_HINT}" if isinstance(err, ParseError) and numbers else ""
            raise ValueError(f"cannot parse formula {self.formula!r}: {err}{hint}") from err
        check_basis_arguments(desc, self.formula)
        factors = {str(term.factor.name) for term in desc.group_terms}
        if len(factors) > 1:
            raise ValueError(
                f"formula {self.formula!r} groups random effects by {sorted(factors)}; "
                "one grouping factor (the instance) is supported"
            )
        explicit_no_intercept = re.search(r"(^|[+\s(])(0|-\s*1)\s*(\+|$)", self._fixed_part())
        # Main effects before interactions, as R orders a model's terms (keep.order = FALSE);
        # formulae also needs a factor's main effect before its interactions to encode them.
        # Designs of 0.2 ("inputs") kept the written order.
        ordered = list(desc.common_terms)
        if self.scaling == "columns":
            ordered.sort(key=lambda t: len(getattr(t, "components", ())))
        fixed_names = [self._term_source(t) for t in ordered]
        has_intercept = "1" in fixed_names
        fixed_names = [n for n in fixed_names if n != "1"]
        if has_intercept or not explicit_no_intercept:
            if not has_intercept and not fixed_names:
                self._fixed_rhs = None
            else:
                self._fixed_rhs = " + ".join(["1" if has_intercept else "0", *fixed_names])
        else:
            self._fixed_rhs = " + ".join(["0", *fixed_names]) if fixed_names else None
        for term in desc.common_terms:
            self._variables |= _variables(term)
        if desc.group_terms:
            self.group_factor = factors.pop()
            expr_names = [self._term_source(t.expr) for t in desc.group_terms]
            has_re_intercept = "1" in expr_names
            rest = [n for n in expr_names if n != "1"]
            self._random_rhs = " + ".join(["1" if has_re_intercept else "0", *rest])
            for term in desc.group_terms:
                self._variables |= _variables(term.expr)

    def _fixed_part(self) -> str:
        return re.sub(r"\([^()]*\|[^()]*\)", "", self._rhs)

    @staticmethod
    def _term_source(term) -> str:
        if type(term).__name__ == "Intercept":
            return "1"
        return str(term.name)

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

    def _build_encoders(self) -> None:
        frame = self._prepare(self._reference, ordered=True)
        namespace = basis_namespace(self.standardization if self.scaling == "inputs" else {})
        self._fixed_encoder = self._encoder(self._fixed_rhs, frame, namespace)
        self._random_encoder = self._encoder(self._random_rhs, frame, namespace)
        fixed_labels, self.fixed_bases, fixed_transforms = basis_labels(self._fixed_encoder)
        random_labels, self.random_bases, random_transforms = basis_labels(self._random_encoder)
        self._bases = {**fixed_transforms, **random_transforms}
        self.fixed_terms = fixed_labels
        self.random_terms = tuple("1" if name == "Intercept" else name for name in random_labels)
        self.random_blocks = self._blocks()
        self._check_design_finite()
        self._column_scaling = self._fit_column_scaling()

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

    def _blocks(self) -> tuple[tuple[int, ...], ...]:
        """Column indices of each block of correlated random terms (lme4's semantics).

        ``(1 + t | id)`` is one block of correlated terms; ``(1 + t || id)`` and
        ``(1 | id) + (0 + t | id)`` give one block per term.
        """
        if self._random_encoder is None:
            return ()
        slices = self._random_encoder.slices
        blocks: list[tuple[int, ...]] = []
        seen: set[str] = set()
        for expr, correlated, factor in self._random_parts:
            desc = model_description(f"({expr} | {factor})")
            names = ["Intercept" if self._term_source(t.expr) == "1" else str(t.expr.name)
                     for t in desc.group_terms]  # fmt: skip
            repeated = seen.intersection(names)
            if repeated:
                raise ValueError(
                    f"formula {self.formula!r} has the random term(s) {sorted(repeated)} for "
                    f"{factor!r} twice; give each term once"
                )
            seen.update(names)
            columns = [list(range(slices[n].start, slices[n].stop)) for n in names]
            if correlated:
                blocks.append(tuple(c for cols in columns for c in cols))
            else:
                blocks.extend(tuple(cols) for cols in columns)
        covered = sorted(c for b in blocks for c in b)
        if covered != list(range(self.n_random)):  # a layout formulae did not expand as read
            return tuple((j,) for j in range(self.n_random))
        return tuple(sorted(blocks))

    @property
    def random_correlated(self) -> bool:
        """Whether any random terms are correlated (a block of more than one column)."""
        return any(len(block) > 1 for block in self.random_blocks)

    def _encoder(self, rhs: str | None, frame: pd.DataFrame, namespace: dict):
        if not rhs:
            return None
        try:
            return design_matrices(rhs, frame, na_action="error", extra_namespace=namespace).common
        except ParseError as err:  # formulae re-prints small floats as 1e-05, which it rejects
            raise ValueError(
                f"formula {self.formula!r}: formulae cannot re-read the terms {rhs!r} ({err}); "
                f"{_NUMBER_HINT}"
            ) from err
        except ValueError as err:
            raise ValueError(f"formula {self.formula!r}: {err}") from err
        except TypeError as err:  # arithmetic or a numpy function on a categorical/text column
            columns = sorted(c for c in self._variables if c in self.categories)
            hint = (
                f"; {columns} are categorical or text here: convert them to numbers first"
                if columns
                else ""
            )
            raise ValueError(f"formula {self.formula!r} cannot be evaluated: {err}{hint}") from err
        except KeyError as err:  # a name formulae cannot resolve: not a column, not a function
            name = err.args[0] if err.args else "?"
            raise ValueError(
                f"formula {self.formula!r} calls {name!r}, which is neither a data column nor a "
                "known function (numpy's as np., formulae's C, center, scale, poly, bs, or "
                "fourier, rff); check the spelling"
            ) from err

    # ------------------------------------------------------------------ public
    @property
    def n_fixed(self) -> int:
        """Number of fixed-effect columns Q_f."""
        return len(self.fixed_terms)

    @property
    def n_random(self) -> int:
        """Number of random-effect expression columns k."""
        return len(self.random_terms)

    @property
    def n_groups(self) -> int:
        """Number of groups (instances) seen in training."""
        return len(self.groups)

    def transform(self, data: pd.DataFrame, *, unseen: UnseenPolicy = "error") -> DesignMatrices:
        """Encode rows exactly as the training data were encoded.

        Parameters
        ----------
        data : pandas.DataFrame
            Covariates of the rows to encode; it must hold every column the formula uses.
        unseen : {"error", "prior"}, default "error"
            What to do with a group not seen in training: raise, or give it a negative index
            (``-1``, ``-2``, ... per new group) so that its random effects take their prior
            mean (zero).

        Returns
        -------
        DesignMatrices
        """
        if not isinstance(data, pd.DataFrame):
            raise TypeError(f"data must be a pandas DataFrame, got {type(data).__name__}")
        if unseen not in ("error", "prior"):
            raise ValueError(f"unseen must be 'error' or 'prior', got {unseen!r}")
        needed = sorted(self._variables | ({self.instance} if self.instance else set()))
        self._check_columns(data, needed)
        self._check_finite(data)
        for col, levels in self.categories.items():
            values = data[col]
            unknown = ~values.isin(levels)
            if unknown.any():
                raise ValueError(
                    f"column {col!r} has level(s) {sorted(map(str, pd.unique(values[unknown])))} "
                    f"not seen in training; known levels: {list(map(str, levels))}"
                )
        frame = self._prepare(data.reset_index(drop=True))
        n = len(frame)
        fixed = (
            np.asarray(self._fixed_encoder.evaluate_new_data(frame)).astype(np.float64)
            if self._fixed_encoder is not None
            else np.zeros((n, 0))
        )
        random = (
            np.asarray(self._random_encoder.evaluate_new_data(frame)).astype(np.float64)
            if self._random_encoder is not None
            else np.zeros((n, 0))
        )
        self._check_design_finite({"fixed": fixed, "random": random}, "the new data")
        group = self.group_index(data, unseen=unseen)
        return DesignMatrices(
            fixed=self._scale_columns(fixed.reshape(n, self.n_fixed), "fixed").astype(np.float32),
            random=self._scale_columns(random.reshape(n, self.n_random), "random").astype(
                np.float32
            ),
            group=group,
        )

    def group_index(self, data: pd.DataFrame, *, unseen: UnseenPolicy = "error") -> np.ndarray:
        """Index of each row's instance among :attr:`groups` (negative for unseen, if allowed)."""
        if self.instance is None:
            return np.full(len(data), -1, dtype=np.int64)
        return self.group_codes(data[self.instance], unseen=unseen)

    def group_codes(self, labels, *, unseen: UnseenPolicy = "error") -> np.ndarray:
        """Index of each instance label among :attr:`groups`.

        With ``unseen="prior"`` an unseen label gets a negative code, ``-1`` for the first unseen
        label, ``-2`` for the second, ..., so distinct new instances stay distinct; every
        negative code means "no random-effect estimate: use the prior mean".
        """
        labels = pd.Series(labels).reset_index(drop=True)
        codes = pd.Index(self.groups).get_indexer(labels).astype(np.int64)
        unseen_rows = codes < 0
        if unseen_rows.any() and unseen != "error":
            new_codes, _ = pd.factorize(labels[unseen_rows])
            codes[unseen_rows] = -1 - new_codes
        if (codes < 0).any() and unseen == "error":
            new = pd.unique(labels[codes < 0])
            raise ValueError(
                f"column {self.instance!r} has instance(s) not seen in training: "
                f"{list(map(str, new[:10]))}{' ...' if len(new) > 10 else ''}; "
                "pass unseen='prior' to predict them at the prior mean of the random effects"
            )
        return codes

    @property
    def bases(self) -> tuple[str, ...]:
        """The basis calls of the formula, e.g. ``("fourier(age, 4)",)``."""
        return tuple(self._bases)

    def basis_features(self, basis: str, t) -> np.ndarray:
        """Evaluate a basis of the formula at raw covariate values ``t``.

        Parameters
        ----------
        basis : str
            A basis call of the formula, e.g. ``"fourier(age, 4)"`` (spaces are ignored).
        t : array_like
            Covariate values in raw units, shape (n,).

        Returns
        -------
        numpy.ndarray
            The basis columns, (n, 2M), as they enter the design (before any interaction).
        """
        return self._basis(basis).features(t)

    def _basis(self, basis: str):
        wanted = basis.replace(" ", "")
        for name, transform in self._bases.items():
            if name.replace(" ", "") == wanted:
                return transform
        raise KeyError(f"{basis!r} is not a basis of formula {self.formula!r}; bases: {self.bases}")

    def basis_columns(self, term: str) -> tuple[str, list[int]]:
        """Where a basis term's columns are: ``("fixed" | "random", column indices)``.

        Parameters
        ----------
        term : str
            A formula term holding a basis (``"sex:fourier(age, 2)"``) or a basis call, which
            selects the term that is the basis alone (``"fourier(age, 2)"``). Spaces are ignored.
        """
        wanted = term.replace(" ", "")
        for part, columns in (("fixed", self.fixed_bases), ("random", self.random_bases)):
            index = [
                j
                for j, col in enumerate(columns)
                if col is not None and col.term.replace(" ", "") == wanted
            ]
            if index:
                return part, index
        terms = sorted({c.term for c in (*self.fixed_bases, *self.random_bases) if c is not None})
        raise KeyError(f"{term!r} is not a basis term of formula {self.formula!r}; terms: {terms}")

    def dense_random_design(self, matrices: DesignMatrices) -> np.ndarray:
        """The paper's dense random-effects design ``e_p ⊗ w_i``, shape (N, P·k).

        Provided to check the gather form against the one-hot form; never used in training.
        Columns are ordered group-major: column ``p * k + j`` holds ``w_ij`` for rows of group p.
        """
        n, k = matrices.random.shape
        dense = np.zeros((n, self.n_groups * k), dtype=np.float32)
        rows = np.flatnonzero(matrices.group >= 0)
        for j in range(k):
            dense[rows, matrices.group[rows] * k + j] = matrices.random[rows, j]
        return dense

    def describe(self) -> dict:
        """A JSON-serialisable summary: formula, terms, grouping and standardisation."""
        return {
            "formula": self.formula,
            "fixed_terms": list(self.fixed_terms),
            "random_terms": list(self.random_terms),
            "random_blocks": [list(b) for b in self.random_blocks],
            "group_factor": self.group_factor,
            "instance": self.instance,
            "n_groups": int(self.n_groups),
            "standardization": {k: list(v) for k, v in self.standardization.items()},
            "scaling": self.scaling,
            "bases": {
                name: {
                    "kind": b.kind,
                    "covariate": b.covariate,
                    "period": b.period,
                    "frequencies": [float(w) for w in b.omegas],
                }
                for name, b in self._bases.items()
            },
        }

    def __repr__(self) -> str:
        return (
            f"Design({self.formula!r}, fixed={list(self.fixed_terms)}, "
            f"random={list(self.random_terms)} | {self.group_factor}, groups={self.n_groups})"
        )

    # formulae's encoders hold a module reference and cannot be pickled: rebuild them on load.
    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state.pop("_fixed_encoder", None)
        state.pop("_random_encoder", None)
        state.pop("_bases", None)
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        if "_random_parts" not in state:  # a design pickled by pyro_lmmvae 0.1
            self._random_parts = _random_parts(_strip_formula(self.formula))
        if "scaling" not in state:  # pickled before 0.3: covariates standardised as inputs
            self.scaling = "inputs"
            self.scaled_covariates = dict(self.standardization)
        self._build_encoders()
