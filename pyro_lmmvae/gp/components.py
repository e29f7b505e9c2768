"""The kernel components of an additive GP: :func:`continuous`, :func:`categorical` and
:func:`interaction` (spec §6, "Additive GP (LVAE) mapping").

Each builds a :class:`Component`, which :func:`~pyro_lmmvae.gp.additive.additive_gp` resolves
against the data (:mod:`pyro_lmmvae.gp.resolve`) and turns into formula terms:

* ``continuous(t)``: ``t + fourier(t, M)``; kernel ``k(t, t')`` (plus the linear column).
* ``categorical(c)``: ``I(c == l)`` for every level ``l``; kernel ``s² δ(c, c')``.
* ``interaction(c, t)``: ``I(c == l):fourier(t, M)`` for a factor, ``b:fourier(t, M)`` for a 0/1
  indicator, ``(1 + fourier(t, M) | instance)`` for the instance; kernel ``k_c(c, c') k(t, t')``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from pyro_lmmvae.gp.kernels import Kernel

__all__ = ["Component", "KernelSpec", "categorical", "continuous", "interaction"]

KernelSpec = str | Kernel
InteractionKind = Literal["categorical", "binary", "instance"]


@dataclass(frozen=True)
class Component:
    """One kernel component of the additive GP (build it with :func:`continuous`,
    :func:`categorical` or :func:`interaction`).

    Attributes
    ----------
    kind : str
        ``"continuous"``, ``"categorical"``, ``"categorical:continuous"``,
        ``"binary:continuous"``, ``"instance:continuous"``; ``"interaction"`` until
        :func:`~pyro_lmmvae.gp.additive.additive_gp` reads the kind of the factor from the data.
    covariate : str or None
        The continuous covariate ``t`` (None for a categorical component).
    factor : str or None
        The categorical, binary or instance column (None for a continuous component).
    kernel : str or Kernel or None
        Kernel of ``t``; a :class:`~pyro_lmmvae.gp.kernels.Kernel` once resolved.
    variance, lengthscale : float or None
        ``σ²`` and ``ℓ`` of a kernel given by name (None: the defaults of
        :func:`~pyro_lmmvae.gp.additive.additive_gp`).
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
        Default: the ``kernel`` of :func:`~pyro_lmmvae.gp.additive.additive_gp`. A
        :class:`~pyro_lmmvae.gp.kernels.Kernel` fixes its variance and lengthscale (and, if
        periodic, the basis period).
    variance, lengthscale : float, optional
        ``σ²`` and ``ℓ`` of a kernel given by name, in the raw units of the covariate.
    n_frequencies : int, optional
        ``M`` (``2M`` basis columns). Default: that of :func:`~pyro_lmmvae.gp.additive.additive_gp`.
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
    standard deviation ``s`` of the one-hot columns is the ``scale`` of
    :func:`~pyro_lmmvae.gp.additive.additive_gp`.
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
