"""The LVAE-equivalent additive-GP configuration, built from a list of kernel components.

An additive GP prior ``k = Σ_r k_r`` over covariates (the LVAE of Ramchandran et al.) becomes
an LMM-VAE whose fixed and random effects are Fourier bases with a spectrally scaled prior
(spec §6, "Additive GP (LVAE) mapping"): every component contributes feature columns, and the
block-diagonal prior on their coefficients makes the latent linear predictor a reduced-rank GP
with kernel ``Σ_r φ_rᵀ Λ_r φ_r'``. :func:`additive_gp` writes the formula and the two
:class:`~pyro_lmmvae.gp.prior.SpectralPrior` objects::

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
resolved to a :class:`~pyro_lmmvae.gp.kernels.Kernel` up front: the lengthscale defaults to
``T/8`` (SE and Matérn; :class:`SpectralPrior`'s default) and 1.0 (periodic).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import pandas as pd

from pyro_lmmvae.gp.components import Component, KernelSpec, categorical, continuous, interaction
from pyro_lmmvae.gp.kernels import positive_float, positive_int
from pyro_lmmvae.gp.prior import SpectralPrior
from pyro_lmmvae.gp.resolve import MAX_LEVELS, Defaults, check_kernel, resolve_component

__all__ = [
    "MAX_LEVELS",
    "AdditiveGPConfig",
    "Component",
    "additive_gp",
    "categorical",
    "continuous",
    "interaction",
]


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
        the ELBO (see :class:`~pyro_lmmvae.gp.prior.SpectralPrior`).
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
    defaults = Defaults(
        n_frequencies=positive_int("n_frequencies", n_frequencies),
        kernel=check_kernel("kernel", kernel),
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
        comp = resolve_component(component, data, instance, defaults)
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
