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

The package's modules: :mod:`~pyro_lmmvae.design.formula` (parsing the formula, its random
terms and their blocks), :mod:`~pyro_lmmvae.design.columns` (checks and standardisation of the
columns) and :mod:`~pyro_lmmvae.design.encoders` (evaluating the formula with formulae);
:class:`Design` combines them and encodes new data.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
from formulae.categorical import ENCODINGS

from pyro_lmmvae.design.columns import SCALINGS, ColumnNotFoundError, _DesignColumns
from pyro_lmmvae.design.encoders import _Encoders
from pyro_lmmvae.design.formula import _FormulaTerms, _random_parts, _strip_formula

__all__ = ["SCALINGS", "ColumnNotFoundError", "Design", "DesignMatrices", "UnseenPolicy"]

UnseenPolicy = Literal["error", "prior"]


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


class Design(_FormulaTerms, _DesignColumns, _Encoders):
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
        basis (see :mod:`pyro_lmmvae.gp.bases`), else None.
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

    @property
    def random_correlated(self) -> bool:
        """Whether any random terms are correlated (a block of more than one column)."""
        return any(len(block) > 1 for block in self.random_blocks)

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
