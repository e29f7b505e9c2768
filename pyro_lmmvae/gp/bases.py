"""Fourier basis functions as formula terms: ``fourier(t, n, period=)`` and ``rff(t, n, ...)``.

Both are *stateful transforms* in the sense of `formulae
<https://bambinos.github.io/formulae/>`_: the first evaluation, on the training data, fixes the
frequencies (and, for ``fourier``, the default period from the training range), and every later
evaluation, on new data, reuses them, so a term's columns mean the same thing at prediction
time. They work anywhere in a formula, in fixed terms, interactions and random terms::

    ~ 1 + age + fourier(age, 4) + sex:fourier(age, 2) + (1 + fourier(age, 2) | id)

Each gives ``2n`` columns ``[cos ω_1 t, sin ω_1 t, …, cos ω_n t, sin ω_n t]`` (spec §6), labelled
``fourier(age, 4)[cos1]``, ``fourier(age, 4)[sin1]``, …

* ``fourier(t, n, period=None)``: regular frequencies ``ω_m = 2πm/T``. ``period`` is in the units
  of the raw column; by default ``T = 2 (t_max − t_min)`` over the training rows. Use
  ``period=360`` (or ``2*pi``) for angles.
* ``rff(t, n, kernel="se", lengthscale=1.0, seed=0)``: ``n`` random frequencies drawn once from
  the kernel's normalised spectral density ``S(ω)/σ²`` (``kernel`` one of ``"se"``,
  ``"matern12"``, ``"matern32"``, ``"matern52"``; ``lengthscale`` in the units of the raw
  column), fixed by ``seed``.

The covariate is always read in its raw units, even when the design z-scores the same column
for its linear term. Polynomial and B-spline bases are formulae's own stateful ``poly(x, d)`` and
``bs(x, df=...)``, which work in the same places.

The prior that turns a basis into a reduced-rank Gaussian process is
:class:`~pyro_lmmvae.gp.prior.SpectralPrior`; :class:`BasisColumn` is what it reads.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar, Literal

import numpy as np
import pandas as pd

from pyro_lmmvae.gp.kernels import KERNEL_NAMES, Kernel, positive_float, positive_int
from pyro_lmmvae.gp.spectral import fourier_features

__all__ = ["BASIS_NAMES", "BasisColumn", "FourierBasis", "RandomFourierBasis", "basis_namespace"]

BASIS_NAMES: tuple[str, ...] = ("fourier", "rff")
"""Names of the basis transforms available in formulas."""


@dataclass(frozen=True)
class BasisColumn:
    """What one design column of a basis term is: the term, its basis and its frequency.

    Attributes
    ----------
    term : str
        The formula term, e.g. ``"sex:fourier(age, 2)"``.
    basis : str
        The basis call, e.g. ``"fourier(age, 2)"``.
    covariate : str
        The column the basis is evaluated on.
    kind : {"regular", "random"}
        ``fourier`` (regular grid) or ``rff`` (random frequencies).
    frequency : float
        ``ω`` of this column.
    harmonic : int
        Position ``m`` (1-based) of the column's cos/sin pair.
    n_frequencies : int
        ``M``, the number of frequencies of the basis (it has ``2M`` columns).
    period : float or None
        Grid period ``T`` (regular bases).
    """

    term: str
    basis: str
    covariate: str
    kind: Literal["regular", "random"]
    frequency: float
    harmonic: int
    n_frequencies: int
    period: float | None

    @property
    def spacing(self) -> float:
        """``Δω = 2π/T`` of a regular basis (NaN for random frequencies)."""
        return 2.0 * math.pi / self.period if self.period else math.nan


class _Basis:
    """A Fourier basis as a formulae stateful transform (see the module docstring)."""

    __stateful_transform__: ClassVar[bool] = True
    kind: ClassVar[Literal["regular", "random"]]
    call_name: ClassVar[str]
    #: ``{column: (mean, std)}`` of the design's standardisation, undone before evaluation.
    standardization: ClassVar[Mapping[str, tuple[float, float]]] = {}

    def __init__(self) -> None:
        self.omegas: np.ndarray | None = None
        self.period: float | None = None
        self.covariate: str | None = None

    def _raw_values(self, t, n) -> np.ndarray:
        name = getattr(t, "name", None)
        where = f"{self.call_name}({name}, {n!r})" if name else f"{self.call_name}()"
        if isinstance(t, pd.Series) and not (
            pd.api.types.is_numeric_dtype(t) and not pd.api.types.is_bool_dtype(t)
        ):
            raise ValueError(
                f"{where}: column {name!r} is categorical ({t.dtype}); a basis needs a numeric "
                "covariate (for a categorical × continuous effect write e.g. "
                f"'{name}:{self.call_name}(t, {n!r})')"
            )
        values = np.asarray(t, dtype=np.float64).reshape(-1)
        if not np.isfinite(values).all():
            raise ValueError(
                f"{where}: column {name!r} has {int((~np.isfinite(values)).sum())} NaN/inf "
                "value(s); a basis needs finite times"
            )
        if name in self.standardization:
            mean, std = self.standardization[name]
            values = values * std + mean
        if self.covariate is None:
            self.covariate = name
        return values

    def features(self, t) -> np.ndarray:
        """The ``2M`` basis columns at raw covariate values ``t`` (after the first call)."""
        if self.omegas is None:
            raise RuntimeError(f"{self.call_name}() has not seen its training data yet")
        return fourier_features(np.asarray(t, dtype=np.float64), self.omegas)


class FourierBasis(_Basis):
    """``fourier(t, n, period=None)``: regular frequencies ``ω_m = 2πm/T``, ``m = 1..n``."""

    kind = "regular"
    call_name = "fourier"

    def __call__(self, t, n, period=None) -> np.ndarray:
        values = self._raw_values(t, n)
        if self.omegas is None:
            where = f"fourier({self.covariate}, {n!r})"
            n = positive_int(f"{where}: n", n)
            if period is None:
                span = float(values.max() - values.min()) if values.size else 0.0
                if not span > 0:
                    raise ValueError(
                        f"{where}: column {self.covariate!r} has a single value in the training "
                        "data, so the default period 2 (t_max - t_min) is zero; pass period="
                    )
                period = 2.0 * span
            self.period = positive_float(f"{where}: period", period)
            self.omegas = 2.0 * np.pi * np.arange(1, n + 1, dtype=np.float64) / self.period
        return fourier_features(values, self.omegas)


class RandomFourierBasis(_Basis):
    """``rff(t, n, kernel="se", lengthscale=1.0, seed=0)``: ``n`` frequencies from ``S(ω)/σ²``."""

    kind = "random"
    call_name = "rff"

    def __call__(self, t, n, kernel="se", lengthscale=1.0, seed=0) -> np.ndarray:
        values = self._raw_values(t, n)
        if self.omegas is None:
            where = f"rff({self.covariate}, {n!r})"
            n = positive_int(f"{where}: n", n)
            lengthscale = positive_float(f"{where}: lengthscale", lengthscale)
            if kernel not in KERNEL_NAMES or kernel == "periodic":
                raise ValueError(
                    f"{where}: kernel must be one of {[k for k in KERNEL_NAMES if k != 'periodic']}"
                    f", got {kernel!r} (the periodic kernel has a discrete spectrum: use fourier("
                    f"{self.covariate}, n, period=...) with a periodic SpectralPrior)"
                )
            if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
                raise ValueError(f"{where}: seed must be an integer, got {seed!r}")
            self.omegas = Kernel(kernel, 1.0, lengthscale).sample_frequencies(n, int(seed))
            self.kernel, self.lengthscale = kernel, lengthscale
        return fourier_features(values, self.omegas)


def basis_namespace(standardization: Mapping[str, tuple[float, float]]) -> dict[str, type]:
    """The ``fourier`` and ``rff`` transforms of one design, undoing its standardisation.

    Parameters
    ----------
    standardization : mapping
        ``{column: (mean, std)}`` of the design.

    Returns
    -------
    dict
        ``{"fourier": ..., "rff": ...}`` for formulae's ``extra_namespace``.
    """
    frozen = dict(standardization)
    return {
        cls.call_name: type(cls.__name__, (cls,), {"standardization": frozen})
        for cls in (FourierBasis, RandomFourierBasis)
    }


def check_basis_arguments(description, formula: str) -> None:
    """Raise unless every basis call's first argument is a plain column name.

    The covariate is read in raw units by name, so an expression (``fourier(age / 12, 4)``)
    cannot be un-standardised: make it a column instead.
    """
    for term in _all_terms(description):
        for component in getattr(term, "components", []):
            call = getattr(component, "call", None)
            if call is None or call.callee not in BASIS_NAMES:
                continue
            first = call.args[0] if call.args else None
            if type(first).__name__ != "LazyVariable":
                raise ValueError(
                    f"formula {formula!r}: the first argument of {call} must be a column name; "
                    "compute the covariate as a column of data first"
                )


def _all_terms(description):
    yield from description.common_terms
    for group_term in description.group_terms:
        yield group_term.expr


_INDEX = re.compile(r"\[(\d+)\]$")


def basis_labels(encoder) -> tuple[tuple[str, ...], tuple[BasisColumn | None, ...], dict]:
    """Column labels of an encoder with basis columns renamed, and each column's basis.

    Returns
    -------
    labels : tuple of str
        ``fourier(age, 4)[cos1]`` instead of formulae's ``fourier(age, 4)[0]``.
    columns : tuple of (BasisColumn or None)
        Aligned with ``labels``; None for columns that are not basis columns.
    transforms : dict
        ``{basis call: fitted transform}``.
    """
    labels: list[str] = []
    columns: list[BasisColumn | None] = []
    transforms: dict[str, _Basis] = {}
    if encoder is None:
        return (), (), transforms
    for term_name, term in encoder.terms.items():
        bases = [
            c
            for c in getattr(term, "components", [])
            if isinstance(getattr(getattr(c, "call", None), "stateful_transform", None), _Basis)
        ]
        if len(bases) > 1:
            raise ValueError(
                f"term {term_name!r} multiplies {len(bases)} bases; a term may hold one basis"
            )
        if not bases:
            labels.extend(term.labels)
            columns.extend([None] * len(term.labels))
            continue
        component = bases[0]
        basis = component.call.stateful_transform
        transforms[component.name] = basis
        for label in term.labels:
            pieces = label.split(":")
            for i, piece in enumerate(pieces):
                match = _INDEX.search(piece)
                if piece.startswith(component.name) and match:
                    j = int(match.group(1))
                    harmonic, trig = j // 2 + 1, ("cos", "sin")[j % 2]
                    pieces[i] = f"{component.name}[{trig}{harmonic}]"
                    break
            labels.append(":".join(pieces))
            columns.append(
                BasisColumn(
                    term=term_name,
                    basis=component.name,
                    covariate=str(basis.covariate),
                    kind=basis.kind,
                    frequency=float(basis.omegas[harmonic - 1]),
                    harmonic=harmonic,
                    n_frequencies=int(basis.omegas.size),
                    period=basis.period,
                )
            )
    return tuple(labels), tuple(columns), transforms
