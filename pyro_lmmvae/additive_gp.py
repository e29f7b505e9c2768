"""The LVAE-equivalent additive-GP configuration, built from a list of kernel components.

An additive GP prior ``k = Σ_r k_r`` over covariates (the LVAE of Ramchandran et al.) becomes
an LMM-VAE whose fixed and random effects are Fourier bases with a spectrally scaled prior
(spec §6, "Additive GP (LVAE) mapping"): every component contributes feature columns, and the
block-diagonal prior on their coefficients makes the latent linear predictor a reduced-rank GP
with kernel ``Σ_r φ_rᵀ Λ_r φ_r'``. :func:`additive_gp` writes the formula and the two
:class:`~pyro_lmmvae.spectral_priors.SpectralPrior` objects::

    config = additive_gp(
        [continuous("age"), categorical("sex"), interaction("id", "age"),
         interaction("sex", "age"), interaction("diseasePresence", "diseaseAge")],
        data=df, instance="id", n_frequencies=4)
    config.formula
    # '~ 1 + age + fourier(age, 4) + I(sex == "f") + I(sex == "m")
    #  + I(sex == "f"):fourier(age, 4) + I(sex == "m"):fourier(age, 4)
    #  + diseasePresence:fourier(diseaseAge, 4) + (1 + fourier(age, 4) | id)'
    print(config)           # the components, their resolved kernels and the formula
    model = LMMVAE(config.formula, data=df, y=y, **config.model_kwargs())

(with ``sex`` a string column; ``df`` holds ``id``, ``age``, ``sex``, ``diseasePresence`` 0/1
and ``diseaseAge``).

Components, their formula terms and their kernels
-------------------------------------------------
``φ(t)`` is ``fourier(t, M)``, ``k`` the component's kernel, ``s`` the ``scale`` (prior standard
deviation of every column that is not a basis column).

* ``continuous(t)``: ``t + fourier(t, M)``; kernel ``k(t, t')`` (plus the linear column).
* ``categorical(c)``: ``I(c == l)`` for every level ``l``; kernel ``s² δ(c, c')``.
* ``interaction(c, t)``, ``c`` a factor: ``I(c == l):fourier(t, M)`` for every level, prior
  ``I ⊗ Λ_t``; kernel ``δ(c, c') k(t, t')``.
* ``interaction(b, t)``, ``b`` a 0/1 presence indicator: ``b:fourier(t, M)``; kernel
  ``b b' k(t, t')``.
* ``interaction(instance, t)``: the random effect ``(1 + fourier(t, M) | instance)``; kernel
  ``δ(p, p') k(t, t')``.
* Always: the intercept ``1`` (kernel ``s²``) and the random intercept ``(1 | instance)``
  (kernel ``s² δ(p, p')``, spec §9).

The kind of ``interaction(a, t)`` is read from ``data``: the instance column gives the random
effect, a 0/1 numeric (or boolean) column a binary presence indicator, a string or categorical
column a factor; a 0/1-coded *factor* (Health MNIST's ``sex``) needs ``kind="categorical"``.

Where the mapping is exact, and where it is not
-----------------------------------------------
* **Exact.** For every row pair, the prior covariance of the latent linear predictor is
  ``Σ_r k̃_r + s² + s² t̃ t̃'`` where ``k̃_r`` is component r's kernel with its reduced-rank
  ``φᵀΛφ`` in place of ``k(t, t')`` (the test suite checks this identity). The one-hot of a
  factor is *full*, as in the LVAE: each level gets its own indicator column
  ``I(c == l)`` (and its own ``I(c == l):fourier(t, M)`` block, prior ``I ⊗ Λ_t``). The
  instance's one-hot is the random effect, which is full by construction.
* **Why indicators rather than ``c`` / ``c:fourier(t, M)``.** formulae codes a factor with
  treatment (reduced) coding whenever a lower-order term spans what its reference level would
  add: ``1 + sex`` gives ``sex[m]`` only, and ``fourier(age, 4) + sex:fourier(age, 4)`` gives
  only ``sex[m]:fourier(age, 4)``. With the spectral prior on those columns the implied kernel is
  ``[c = c' = m] k`` instead of ``δ(c, c') k``: not symmetric in the levels and not the LVAE's.
  Numeric indicator columns (``I(sex == "f")``) are never re-coded, so the one-hot stays full.
  Dropping the lower-order term instead would drop the continuous component's own kernel, and
  ``0 +`` gives the full coding to one factor only.
* **Additions to the LVAE kernel.** The intercept (spec §9: "an intercept is included") adds the
  constant ``s²``; it also stands in for the ``ω_0 = 0`` term ``q_0² = S(0) Δω`` that the
  Fourier basis omits (spec §6). The linear column of a continuous covariate (spec §6: "raw t
  kept as a linear column"; ``linear=False`` drops it) adds ``s² t̃ t̃'``, with ``t̃`` the
  covariate as the design z-scores it. The random intercept ``(1 | instance)`` (spec §9) is the
  instance's categorical kernel ``s² δ(p, p')``.
* **Learned hyper-parameters.** With ``learn=``, every formula term learns its own ``σ²`` and
  ``ℓ``, so the levels of a factor interaction (one term per level) may drift apart: a
  per-level kernel, more general than the LVAE's shared one. With fixed hyper-parameters (the
  default) all levels share the component's kernel exactly.
* **Reduced rank.** ``φᵀΛφ`` converges to the kernel as ``M`` grows (spec §6's required check);
  with few frequencies it is a smoothed, periodised version of it over the period ``T``.

Periods and lengthscales
------------------------
A component's period defaults to ``2 (t_max − t_min)`` of ``data`` (spec §6), which is also what
``fourier(t, M)`` computes on its training data, so pass the same (training) ``data`` to
:class:`~pyro_lmmvae.LMMVAE`. A period given explicitly, or the period of a periodic kernel, is
written into the formula (``fourier(angle, 4, period=360.0)``). Every component's kernel is
resolved to a :class:`~pyro_lmmvae.spectral.Kernel` up front: the lengthscale defaults to
``T/8`` (SE and Matérn; :class:`SpectralPrior`'s default) and 1.0 (periodic).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np
import pandas as pd

from pyro_lmmvae.spectral import KERNEL_NAMES, Kernel, positive_float, positive_int
from pyro_lmmvae.spectral_priors import SpectralPrior

__all__ = [
    "MAX_LEVELS",
    "AdditiveGPConfig",
    "Component",
    "additive_gp",
    "categorical",
    "continuous",
    "interaction",
]

KernelSpec = str | Kernel
InteractionKind = Literal["categorical", "binary", "instance"]

#: Most levels a factor may have: each level is a formula term (and a 2M-column block in an
#: interaction). A larger grouping belongs in the random effects, as the instance.
MAX_LEVELS = 50

_BASIS_KINDS = ("continuous", "categorical:continuous", "binary:continuous", "instance:continuous")
_KINDS = (*_BASIS_KINDS, "categorical")


# ------------------------------------------------------------------------------------------
# components
# ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Component:
    """One kernel component of the additive GP (build it with :func:`continuous`,
    :func:`categorical` or :func:`interaction`).

    Attributes
    ----------
    kind : str
        ``"continuous"``, ``"categorical"``, ``"categorical:continuous"``,
        ``"binary:continuous"``, ``"instance:continuous"``; ``"interaction"`` until
        :func:`additive_gp` reads the kind of the factor from the data.
    covariate : str or None
        The continuous covariate ``t`` (None for a categorical component).
    factor : str or None
        The categorical, binary or instance column (None for a continuous component).
    kernel : str or Kernel or None
        Kernel of ``t``; a :class:`~pyro_lmmvae.spectral.Kernel` once resolved.
    variance, lengthscale : float or None
        ``σ²`` and ``ℓ`` of a kernel given by name (None: the defaults of :func:`additive_gp`).
    n_frequencies : int or None
        ``M``: the basis has ``2M`` columns.
    period : float or None
        Grid period ``T`` of the basis; resolved from the data if not given.
    linear : bool
        Continuous components: keep ``t`` as a linear column too.
    levels : tuple
        Resolved: the levels of a factor, one indicator column each.
    terms : tuple of str
        Resolved: the formula terms the component contributes (in the random part for
        ``"instance:continuous"``).
    """

    kind: str
    covariate: str | None = None
    factor: str | None = None
    kernel: KernelSpec | None = None
    variance: float | None = None
    lengthscale: float | None = None
    n_frequencies: int | None = None
    period: float | None = None
    linear: bool = True
    levels: tuple = ()
    terms: tuple[str, ...] = ()
    explicit_period: bool = field(default=False, repr=False)

    @property
    def name(self) -> str:
        """``"age"``, ``"sex"`` or ``"sex:age"``."""
        return ":".join(c for c in (self.factor, self.covariate) if c is not None)

    @property
    def basis(self) -> str | None:
        """The basis call, e.g. ``"fourier(age, 4)"`` (resolved components with a covariate)."""
        if self.covariate is None or self.n_frequencies is None:
            return None
        if self.explicit_period:
            return f"fourier({self.covariate}, {self.n_frequencies}, period={float(self.period)!r})"
        return f"fourier({self.covariate}, {self.n_frequencies})"

    @property
    def basis_terms(self) -> tuple[str, ...]:
        """The terms that hold the basis (the ones the spectral prior scales)."""
        if self.basis is None:
            return ()
        return tuple(t for t in self.terms if t.endswith(self.basis))

    def describe(self) -> str:
        """One line: the component, its kernel and its terms."""
        if self.kind == "categorical":
            levels = ", ".join(map(str, self.levels))
            return f"{self.name} ({self.kind}): one-hot over [{levels}]"
        if not isinstance(self.kernel, Kernel):
            return f"{self.name} ({self.kind}): unresolved"
        k = self.kernel
        kernel = f"{k.name}(σ²={k.variance:.4g}, ℓ={k.lengthscale:.4g})"
        text = f"{self.name} ({self.kind}): {kernel}, M={self.n_frequencies}, T={self.period:.4g}"
        if self.kind == "continuous" and self.linear:
            text += f", plus linear {self.covariate}"
        return text

    def __str__(self) -> str:
        return self.describe()


def continuous(
    covariate: str,
    *,
    kernel: KernelSpec | None = None,
    variance: float | None = None,
    lengthscale: float | None = None,
    n_frequencies: int | None = None,
    period: float | None = None,
    linear: bool = True,
) -> Component:
    """A stationary kernel ``k(t, t')`` on a continuous covariate: ``t + fourier(t, M)``.

    Parameters
    ----------
    covariate : str
        A numeric column of the data.
    kernel : {"se", "matern12", "matern32", "matern52", "periodic"} or Kernel, optional
        Default: the ``kernel`` of :func:`additive_gp`. A :class:`~pyro_lmmvae.spectral.Kernel`
        fixes its variance and lengthscale (and, if periodic, the basis period).
    variance, lengthscale : float, optional
        ``σ²`` and ``ℓ`` of a kernel given by name, in the raw units of the covariate.
    n_frequencies : int, optional
        ``M`` (``2M`` basis columns). Default: that of :func:`additive_gp`.
    period : float, optional
        Basis period ``T``; default ``2 (t_max − t_min)`` over the data.
    linear : bool, default True
        Keep ``t`` as a linear column as well (spec §6).
    """
    return Component(
        "continuous",
        covariate=covariate,
        kernel=kernel,
        variance=variance,
        lengthscale=lengthscale,
        n_frequencies=n_frequencies,
        period=period,
        linear=linear,
    )


def categorical(column: str) -> Component:
    """The categorical kernel ``s² δ(c, c')``: a full one-hot of ``column``.

    ``column`` holds strings, a pandas categorical, booleans, or 0/1 numbers (a binary-coded
    factor such as Health MNIST's ``sex``). Other numeric codes are refused: the design z-scores
    numeric columns, so convert them first (``df["icu"] = df["icu"].astype(str)``). The prior
    standard deviation ``s`` of the one-hot columns is the ``scale`` of :func:`additive_gp`.
    """
    return Component("categorical", factor=column)


def interaction(
    by: str,
    over: str,
    *,
    kind: InteractionKind | None = None,
    kernel: KernelSpec | None = None,
    variance: float | None = None,
    lengthscale: float | None = None,
    n_frequencies: int | None = None,
    period: float | None = None,
) -> Component:
    """A product kernel ``k_by(a, a') k(t, t')`` of a factor, a binary or the instance and a
    continuous covariate ``over``.

    Parameters
    ----------
    by : str
        The factor, binary indicator or instance column.
    over : str
        The continuous covariate ``t``.
    kind : {"categorical", "binary", "instance"}, optional
        ``"categorical"``: ``δ(c, c') k`` (one-hot(c) ⊗ φ(t), prior I ⊗ Λ_t);
        ``"binary"``: ``b b' k`` (the product ``b·φ(t)``); ``"instance"``: ``δ(p, p') k`` (the
        random effect ``(fourier(t, M) | instance)``). By default it is read from the data: the
        instance column is ``"instance"``, a 0/1 numeric or boolean column ``"binary"``, a
        string or categorical column ``"categorical"``. A 0/1-coded factor needs
        ``kind="categorical"``.
    kernel, variance, lengthscale, n_frequencies, period
        As in :func:`continuous`.
    """
    if kind is not None and kind not in ("categorical", "binary", "instance"):
        raise ValueError(
            f"interaction({by!r}, {over!r}): kind must be 'categorical', 'binary', 'instance' "
            f"or None (read from the data), got {kind!r}"
        )
    return Component(
        "interaction" if kind is None else f"{kind}:continuous",
        covariate=over,
        factor=by,
        kernel=kernel,
        variance=variance,
        lengthscale=lengthscale,
        n_frequencies=n_frequencies,
        period=period,
    )


# ------------------------------------------------------------------------------------------
# the configuration
# ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AdditiveGPConfig:
    """What :func:`additive_gp` builds: a formula and the priors that make it an additive GP.

    Attributes
    ----------
    formula : str
        The LMM formula, for :class:`~pyro_lmmvae.LMMVAE` or :class:`~pyro_lmmvae.design.Design`.
    fixed_prior, random_prior : SpectralPrior
        Priors on the fixed and random effects, with one kernel per basis term. The model binds
        a deep copy, so one configuration can build several models.
    components : tuple of Component
        The resolved components (kind, kernel, ``M``, period, levels, terms).
    instance : str
        The instance column (the random-effect grouping factor).
    scale : float
        Prior standard deviation of the columns that are not basis columns.
    learn : frozenset of str
        Which kernel hyper-parameters are learned.
    """

    formula: str
    fixed_prior: SpectralPrior
    random_prior: SpectralPrior
    components: tuple[Component, ...]
    instance: str
    scale: float = 1.0
    learn: frozenset[str] = frozenset()

    def model_kwargs(self) -> dict:
        """Keyword arguments for :class:`~pyro_lmmvae.LMMVAE` besides the formula and data:
        ``fixed_prior``, ``random_prior`` and ``instance``.

        The model binds deep copies of the priors, so several models can share one
        configuration. The priors need Bayesian effects: with ``variant="slmm"`` also pass
        ``bayesian_effects=True``.
        """
        return {
            "fixed_prior": self.fixed_prior,
            "random_prior": self.random_prior,
            "instance": self.instance,
        }

    def describe(self) -> str:
        """A readable summary: formula, components and their kernels, the other columns."""
        lines = ["Additive GP (LVAE-equivalent) configuration", f"  formula: {self.formula}"]
        lines.append("  kernel components:")
        lines.extend(f"    {c.describe()}" for c in self.components)
        learned = ", ".join(sorted(self.learn)) or "none (fixed)"
        lines.append(
            f"  other columns (intercept, linear, one-hot, random intercept (1 | {self.instance})):"
            f" Normal(0, {self.scale:.4g}²); learned hyper-parameters: {learned}"
        )
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.describe()


def additive_gp(
    components: Iterable[Component],
    data: pd.DataFrame,
    *,
    instance: str,
    n_frequencies: int = 8,
    kernel: KernelSpec = "se",
    variance: float = 1.0,
    lengthscale: float | None = None,
    learn: bool | str | Sequence[str] = False,
    scale: float = 1.0,
) -> AdditiveGPConfig:
    """Build the LVAE-equivalent additive-GP configuration from kernel components (spec §6).

    Parameters
    ----------
    components : iterable of Component
        From :func:`continuous`, :func:`categorical` and :func:`interaction`, in the order the
        fixed terms should appear.
    data : pandas.DataFrame
        Training covariates: they decide the kind of each interaction, the levels of the
        factors and the default periods. Pass the same rows to the model.
    instance : str
        Instance column. It always enters as the random intercept ``(1 | instance)`` (spec §9);
        instance × continuous interactions add basis columns to that random effect.
    n_frequencies : int, default 8
        ``M`` of every component without its own.
    kernel : {"se", "matern12", "matern32", "matern52", "periodic"} or Kernel, default "se"
        Kernel of every component without its own.
    variance : float, default 1.0
        ``σ²`` of kernels given by name.
    lengthscale : float, optional
        ``ℓ`` of kernels given by name (raw units). Default: ``T/8`` of each component's
        period (SE, Matérn) and 1.0 (periodic).
    learn : bool, str or sequence of str, default False
        Learn ``"variance"`` and/or ``"lengthscale"`` of every basis term as point estimates on
        the ELBO (see :class:`~pyro_lmmvae.spectral_priors.SpectralPrior`).
    scale : float, default 1.0
        Prior standard deviation of the intercept, linear, one-hot and random-intercept
        columns.

    Returns
    -------
    AdditiveGPConfig

    Raises
    ------
    ValueError
        For a column missing from ``data``, a continuous covariate that is not numeric, a
        binary column that is not 0/1, a factor that is numeric but not 0/1 or has more than
        :data:`MAX_LEVELS` levels, a missing instance, ``n_frequencies < 1``, a duplicated
        component or an invalid kernel setting; the message names the column or argument.
    """
    if not isinstance(data, pd.DataFrame):
        raise TypeError(f"data must be a pandas DataFrame, got {type(data).__name__}")
    if instance is None or not isinstance(instance, str):
        raise ValueError(
            "instance is required (the instance column): it enters as the random intercept "
            f"(1 | instance), spec §9; got {instance!r}"
        )
    if instance not in data.columns:
        raise ValueError(
            f"instance column {instance!r} is not in data; columns: {list(data.columns)}"
        )
    if data[instance].isna().any():
        raise ValueError(f"instance column {instance!r} has missing values")
    defaults = _Defaults(
        n_frequencies=positive_int("n_frequencies", n_frequencies),
        kernel=_check_kernel("kernel", kernel),
        variance=positive_float("variance", variance),
        lengthscale=None if lengthscale is None else positive_float("lengthscale", lengthscale),
    )
    scale = positive_float("scale", scale)
    if isinstance(components, Component):
        components = [components]
    resolved: list[Component] = []
    seen: dict[tuple, str] = {}
    for index, component in enumerate(components):
        if not isinstance(component, Component):
            raise TypeError(
                f"components[{index}] must be a Component (use continuous(), categorical() or "
                f"interaction()), got {component!r}"
            )
        comp = _resolve(component, data, instance, defaults)
        key = (comp.kind, comp.factor, comp.covariate)
        if key in seen:
            raise ValueError(
                f"duplicated component {comp.name} ({comp.kind}): {seen[key]} and "
                f"components[{index}]; list each kernel component once"
            )
        seen[key] = f"components[{index}]"
        resolved.append(comp)

    fixed_terms = [t for c in resolved if c.kind != "instance:continuous" for t in c.terms]
    random_terms = [t for c in resolved if c.kind == "instance:continuous" for t in c.terms]
    formula = " + ".join(
        ["~ 1", *fixed_terms, f"({' + '.join(['1', *random_terms])} | {instance})"]
    )
    fixed_kernels = {
        t: c.kernel for c in resolved if c.kind != "instance:continuous" for t in c.basis_terms
    }
    random_kernels = {
        t: c.kernel for c in resolved if c.kind == "instance:continuous" for t in c.basis_terms
    }
    prior_args = {
        "variance": defaults.variance,
        "lengthscale": defaults.lengthscale,
        "learn": learn,
        "scale": scale,
    }
    fixed_prior = SpectralPrior(defaults.kernel, terms=fixed_kernels, **prior_args)
    random_prior = SpectralPrior(defaults.kernel, terms=random_kernels, **prior_args)
    return AdditiveGPConfig(
        formula=formula,
        fixed_prior=fixed_prior,
        random_prior=random_prior,
        components=tuple(resolved),
        instance=instance,
        scale=scale,
        learn=fixed_prior.learn,
    )


# ------------------------------------------------------------------------------------------
# resolution and validation
# ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Defaults:
    n_frequencies: int
    kernel: KernelSpec
    variance: float
    lengthscale: float | None


def _resolve(comp: Component, data: pd.DataFrame, instance: str, d: _Defaults) -> Component:
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
    comp: Component, t: pd.Series, d: _Defaults, where: str
) -> tuple[Kernel, float, bool]:
    spec = _check_kernel(f"{where}: kernel", d.kernel if comp.kernel is None else comp.kernel)
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


def _check_kernel(what: str, kernel) -> KernelSpec:
    if isinstance(kernel, Kernel) or (isinstance(kernel, str) and kernel in KERNEL_NAMES):
        return kernel
    raise ValueError(f"{what} must be a Kernel or one of {KERNEL_NAMES}, got {kernel!r}")
