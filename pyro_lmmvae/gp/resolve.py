"""Resolving additive-GP components against the training data.

:func:`resolve_component` reads what a :class:`~pyro_lmmvae.gp.components.Component` leaves
open: the kind of an interaction (instance, 0/1 indicator or factor), the levels of a factor, the
kernel with its variance and lengthscale, the basis period (``2 (t_max − t_min)`` by default)
and the formula terms, and checks the columns (names, dtypes, missing values, levels).
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from pyro_lmmvae.gp.components import Component, KernelSpec
from pyro_lmmvae.gp.kernels import KERNEL_NAMES, Kernel, positive_float, positive_int

__all__ = ["MAX_LEVELS", "Defaults", "check_kernel", "resolve_component"]

#: Most levels a factor may have: each level is a formula term (and a 2M-column block in an
#: interaction). A larger grouping belongs in the random effects, as the instance.
MAX_LEVELS = 50


@dataclass(frozen=True)
class Defaults:
    """The settings of :func:`~pyro_lmmvae.gp.additive.additive_gp` for components without
    their own."""

    n_frequencies: int
    kernel: KernelSpec
    variance: float
    lengthscale: float | None


def resolve_component(comp: Component, data: pd.DataFrame, instance: str, d: Defaults) -> Component:
    """``comp`` with its kind, kernel, ``M``, period, levels and terms read from ``data``."""
    where = f"component {comp.name!r}"
    for column in (comp.factor, comp.covariate):
        if column is None:
            continue
        if not isinstance(column, str) or not column.isidentifier():
            raise ValueError(
                f"{where}: column name {column!r} must be a Python identifier to appear in a "
                "formula; rename the column"
            )
        if column not in data.columns:
            raise ValueError(
                f"{where}: column {column!r} is not in data; columns: {list(data.columns)}"
            )
    if comp.covariate == instance:
        raise ValueError(
            f"{where}: {instance!r} is the instance column, not a continuous covariate"
        )
    kind = comp.kind
    if kind == "categorical":
        if comp.factor == instance:
            raise ValueError(
                f"{where}: {instance!r} is the instance column; it already enters as the random "
                f"intercept (1 | {instance}), the instance's categorical kernel"
            )
        levels = _factor_levels(data[comp.factor], comp.factor, where)
        terms = tuple(_indicator(comp.factor, level) for level in levels)
        return replace(comp, levels=levels, terms=terms)
    if kind == "interaction":
        kind = _interaction_kind(data[comp.factor], comp.factor, instance, where)
    if kind == "instance:continuous" and comp.factor != instance:
        raise ValueError(
            f"{where}: kind='instance' needs the instance column {instance!r}, got {comp.factor!r}"
        )
    if comp.factor == instance and kind != "instance:continuous":
        raise ValueError(
            f"{where}: {instance!r} is the instance column; its interaction is the random effect "
            "(kind='instance')"
        )
    if comp.factor is not None and comp.factor == comp.covariate:
        raise ValueError(f"{where}: a column cannot interact with itself")
    t = data[comp.covariate]
    _check_continuous(t, comp.covariate, where)
    n_freq = positive_int(
        f"{where}: n_frequencies",
        d.n_frequencies if comp.n_frequencies is None else comp.n_frequencies,
    )
    kernel, period, explicit = _resolve_kernel(comp, t, d, where)
    comp = replace(
        comp,
        kind=kind,
        kernel=kernel,
        n_frequencies=n_freq,
        period=period,
        explicit_period=explicit,
    )
    basis = comp.basis
    if kind == "continuous":
        terms = ((comp.covariate,) if comp.linear else ()) + (basis,)
        levels: tuple = ()
    elif kind == "categorical:continuous":
        levels = _factor_levels(data[comp.factor], comp.factor, where)
        terms = tuple(f"{_indicator(comp.factor, level)}:{basis}" for level in levels)
    elif kind == "binary:continuous":
        b = data[comp.factor]
        _check_binary(b, comp.factor, where)
        levels = ()
        factor = _indicator(comp.factor, True) if pd.api.types.is_bool_dtype(b) else comp.factor
        terms = (f"{factor}:{basis}",)
    else:  # instance:continuous
        levels = ()
        terms = (basis,)
    return replace(comp, levels=levels, terms=terms)


def _interaction_kind(values: pd.Series, column: str, instance: str, where: str) -> str:
    if column == instance:
        return "instance:continuous"
    if pd.api.types.is_bool_dtype(values):
        return "binary:continuous"
    if pd.api.types.is_numeric_dtype(values):
        if _is_zero_one(values):
            return "binary:continuous"
        raise ValueError(
            f"{where}: column {column!r} is numeric with values other than 0/1, so it is neither "
            "a binary indicator nor a factor; for a factor convert it to strings "
            f"(df[{column!r}].astype(str)); interaction(..., kind=...) sets the kind explicitly"
        )
    return "categorical:continuous"


def _is_zero_one(values: pd.Series) -> bool:
    unique = pd.unique(values.dropna())
    try:
        return set(np.asarray(unique, dtype=float).tolist()) <= {0.0, 1.0}
    except (TypeError, ValueError):
        return False


def _check_binary(values: pd.Series, column: str, where: str) -> None:
    if values.isna().any():
        raise ValueError(f"{where}: binary column {column!r} has missing values")
    if pd.api.types.is_bool_dtype(values):
        return
    if not (pd.api.types.is_numeric_dtype(values) and _is_zero_one(values)):
        shown = list(pd.unique(values))[:6]
        raise ValueError(
            f"{where}: binary column {column!r} must hold 0/1 (or boolean) values, got {shown}"
        )


def _check_continuous(values: pd.Series, column: str, where: str) -> None:
    if pd.api.types.is_bool_dtype(values) or not pd.api.types.is_numeric_dtype(values):
        raise ValueError(
            f"{where}: continuous covariate {column!r} must be numeric, got dtype {values.dtype}"
        )
    array = values.to_numpy(dtype=float)
    if not np.isfinite(array).all():
        raise ValueError(
            f"{where}: continuous covariate {column!r} has "
            f"{int((~np.isfinite(array)).sum())} NaN/inf value(s)"
        )


def _factor_levels(values: pd.Series, column: str, where: str) -> tuple:
    if values.isna().any():
        raise ValueError(f"{where}: factor column {column!r} has missing values")
    if pd.api.types.is_bool_dtype(values):
        levels = tuple(bool(v) for v in sorted(pd.unique(values)))
    elif pd.api.types.is_numeric_dtype(values):
        if not _is_zero_one(values):
            n = values.nunique()
            raise ValueError(
                f"{where}: factor column {column!r} is numeric with {n} distinct values, not a "
                "0/1 code; the design z-scores numeric columns, so convert a coded factor to "
                f"strings first (df[{column!r}] = df[{column!r}].astype(str))"
            )
        levels = tuple(int(v) for v in sorted(set(values.to_numpy(dtype=float).tolist())))
    else:
        categorical = pd.Categorical(values)
        observed = set(pd.unique(values))
        levels = tuple(level for level in categorical.categories if level in observed)
    if len(levels) > MAX_LEVELS:
        raise ValueError(
            f"{where}: factor column {column!r} has {len(levels)} levels (more than "
            f"MAX_LEVELS={MAX_LEVELS}); a grouping that large belongs in the random effects "
            "(as the instance)"
        )
    for level in levels:
        _literal(level, column, where)
    return levels


def _literal(level, column: str, where: str = "") -> str:
    if isinstance(level, (bool, np.bool_)):
        return repr(bool(level))
    if isinstance(level, numbers.Integral):
        return repr(int(level))
    if isinstance(level, numbers.Real) and math.isfinite(float(level)):
        return repr(float(level))
    if isinstance(level, str) and not any(ch in level for ch in '"\\\n\r'):
        return f'"{level}"'
    raise ValueError(
        f"{where}: level {level!r} of factor column {column!r} cannot be written in a formula "
        "(use string levels without quotes or backslashes)"
    )


def _indicator(column: str, level) -> str:
    return f"I({column} == {_literal(level, column)})"


def _resolve_kernel(
    comp: Component, t: pd.Series, d: Defaults, where: str
) -> tuple[Kernel, float, bool]:
    spec = check_kernel(f"{where}: kernel", d.kernel if comp.kernel is None else comp.kernel)
    period = None if comp.period is None else positive_float(f"{where}: period", comp.period)
    explicit = period is not None
    if isinstance(spec, Kernel):
        if comp.variance is not None or comp.lengthscale is not None:
            raise ValueError(
                f"{where}: give variance and lengthscale inside the Kernel {spec}, not beside it"
            )
        if spec.name == "periodic":
            if period is not None and not math.isclose(period, spec.period, rel_tol=1e-12):
                raise ValueError(
                    f"{where}: period={period!r} differs from the periodic kernel's period "
                    f"{spec.period!r}"
                )
            return spec, float(spec.period), True
        return (
            spec,
            _default_period(t, comp.covariate, where) if period is None else period,
            explicit,
        )
    variance = d.variance if comp.variance is None else comp.variance
    variance = positive_float(f"{where}: variance", variance)
    ell = comp.lengthscale if comp.lengthscale is not None else d.lengthscale
    if spec == "periodic":
        if period is None:
            raise ValueError(
                f"{where}: the periodic kernel needs the period of {comp.covariate!r}: pass "
                "period= (e.g. 360 for angles in degrees)"
            )
        ell = 1.0 if ell is None else positive_float(f"{where}: lengthscale", ell)
        return Kernel("periodic", variance, ell, period=period), period, True
    if period is None:
        period = _default_period(t, comp.covariate, where)
    ell = period / 8.0 if ell is None else positive_float(f"{where}: lengthscale", ell)
    return Kernel(spec, variance, ell), period, explicit


def _default_period(t: pd.Series, column: str, where: str) -> float:
    values = t.to_numpy(dtype=float)
    span = float(values.max() - values.min()) if values.size else 0.0
    if not span > 0:
        raise ValueError(
            f"{where}: covariate {column!r} has a single value in data, so the default period "
            "2 (t_max - t_min) is zero; pass period="
        )
    return 2.0 * span


def check_kernel(what: str, kernel) -> KernelSpec:
    """``kernel`` if it is a Kernel or a kernel name, else a ValueError naming ``what``."""
    if isinstance(kernel, Kernel) or (isinstance(kernel, str) and kernel in KERNEL_NAMES):
        return kernel
    raise ValueError(f"{what} must be a Kernel or one of {KERNEL_NAMES}, got {kernel!r}")
