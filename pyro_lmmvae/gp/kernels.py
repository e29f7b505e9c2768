"""Stationary 1-D kernels and their spectral densities (spec §6).

:class:`Kernel` is a kernel with fixed hyper-parameters (numpy, float64): its values ``k(τ)``,
its spectral density ``S(ω)`` and draws of frequencies from ``S(ω)/σ²``. The spectral convention
is ``k(τ) = ∫_R S(ω) e^{iωτ} dω``, so ``∫ S = σ²``. :func:`spectral_density` and
:func:`periodic_weights` are the torch versions, differentiable in the variance and lengthscale,
so that :class:`~pyro_lmmvae.gp.prior.SpectralPrior` can learn them; :class:`Kernel` uses the
same functions. The Fourier features and the prior scaling built on them are in
:mod:`pyro_lmmvae.gp.spectral`.

Examples
--------
>>> k = Kernel("se", variance=2.0, lengthscale=0.5)
>>> float(k(0.0))
2.0
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import numpy as np
import torch

__all__ = [
    "KERNEL_NAMES",
    "Kernel",
    "periodic_weights",
    "positive_float",
    "positive_int",
    "spectral_density",
]


#: Supported kernel names.
KERNEL_NAMES: tuple[str, ...] = ("se", "matern12", "matern32", "matern52", "periodic")

_MATERN_NU: dict[str, float] = {"matern12": 0.5, "matern32": 1.5, "matern52": 2.5}


# --------------------------------------------------------------------------------------------
# validation helpers
# --------------------------------------------------------------------------------------------


def positive_float(name: str, value: object) -> float:
    """Return ``value`` as a finite, strictly positive float or raise a ValueError naming it."""
    if isinstance(value, bool):
        raise ValueError(f"{name} must be a finite positive number, got {value!r}")
    try:
        out = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a finite positive number, got {value!r}") from None
    if not math.isfinite(out) or out <= 0.0:
        raise ValueError(f"{name} must be a finite positive number, got {value!r}")
    return out


def positive_int(name: str, value: object) -> int:
    """Return ``value`` as an int >= 1 or raise a ValueError naming it (floats are rejected)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if int(value) < 1:
        raise ValueError(f"{name} must be a positive integer (>= 1), got {value!r}")
    return int(value)


# --------------------------------------------------------------------------------------------
# kernels
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Kernel:
    """A stationary 1-D kernel with fixed hyper-parameters.

    Parameters
    ----------
    name : {"se", "matern12", "matern32", "matern52", "periodic"}
        Kernel family.
    variance : float
        Marginal variance ``σ² = k(0)``; finite and > 0.
    lengthscale : float
        Lengthscale ``ℓ``; finite and > 0.
    period : float, optional
        Period ``T`` of the periodic kernel (required for it, and only accepted for it).

    Raises
    ------
    ValueError
        For an unknown name or a non-finite / non-positive parameter; the message names it.

    Examples
    --------
    >>> k = Kernel("matern32", variance=2.0, lengthscale=0.5)
    >>> float(k(0.0))
    2.0
    """

    name: str
    variance: float = 1.0
    lengthscale: float = 1.0
    period: float | None = None

    def __post_init__(self) -> None:
        if self.name not in KERNEL_NAMES:
            raise ValueError(f"kernel name must be one of {KERNEL_NAMES}, got {self.name!r}")
        object.__setattr__(self, "variance", positive_float("variance", self.variance))
        object.__setattr__(self, "lengthscale", positive_float("lengthscale", self.lengthscale))
        if self.name == "periodic":
            if self.period is None:
                raise ValueError("period is required for the periodic kernel")
            object.__setattr__(self, "period", positive_float("period", self.period))
        elif self.period is not None:
            raise ValueError(
                f"period is only used by the periodic kernel, got period={self.period!r} "
                f"for kernel {self.name!r}"
            )

    @property
    def nu(self) -> float | None:
        """Matérn smoothness ``ν`` (``None`` for the SE and periodic kernels)."""
        return _MATERN_NU.get(self.name)

    def k(self, tau: np.ndarray | float) -> np.ndarray:
        """Evaluate the exact kernel at lag(s) ``tau``.

        Parameters
        ----------
        tau : array_like
            Lags ``τ = t − t'``, any shape.

        Returns
        -------
        numpy.ndarray
            ``k(τ)``, float64, same shape as ``tau``.
        """
        tau = np.asarray(tau, dtype=np.float64)
        s2, ell = self.variance, self.lengthscale
        if self.name == "se":
            return s2 * np.exp(-0.5 * (tau / ell) ** 2)
        if self.name == "periodic":
            assert self.period is not None
            return s2 * np.exp(-2.0 * np.sin(np.pi * tau / self.period) ** 2 / ell**2)
        r = np.abs(tau) / ell
        if self.name == "matern12":
            return s2 * np.exp(-r)
        if self.name == "matern32":
            a = math.sqrt(3.0) * r
            return s2 * (1.0 + a) * np.exp(-a)
        a = math.sqrt(5.0) * r  # matern52
        return s2 * (1.0 + a + a**2 / 3.0) * np.exp(-a)

    def __call__(self, tau: np.ndarray | float) -> np.ndarray:
        """Alias of :meth:`k`."""
        return self.k(tau)

    def spectral_density(self, omega: np.ndarray | float) -> np.ndarray:
        """Spectral density ``S(ω)`` with ``k(τ) = ∫ S(ω) e^{iωτ} dω`` (spec §6 table).

        Parameters
        ----------
        omega : array_like
            Angular frequencies, any shape.

        Returns
        -------
        numpy.ndarray
            ``S(ω)``, float64, same shape as ``omega``.

        Raises
        ------
        ValueError
            For the periodic kernel, whose spectrum is discrete (use
            :func:`~pyro_lmmvae.gp.spectral.regular_grid_scaling`).
        """
        if self.name == "periodic":
            raise ValueError(
                "the periodic kernel has no spectral density (its spectrum is discrete); "
                "use regular_grid_scaling for its exact harmonic weights"
            )
        omega = torch.as_tensor(np.asarray(omega, dtype=np.float64))
        density = spectral_density(
            self.name,
            omega,
            torch.tensor(self.variance, dtype=torch.float64),
            torch.tensor(self.lengthscale, dtype=torch.float64),
        )
        return density.numpy()

    def sample_frequencies(self, n: int, seed: int) -> np.ndarray:
        """Draw ``n`` i.i.d. frequencies from ``S(ω)/σ²``.

        SE: ``ω ~ N(0, ℓ⁻²)``. Matérn-ν: ``ω = T_{2ν}/ℓ`` with ``T_{2ν}`` Student-t with ``2ν``
        degrees of freedom.

        Parameters
        ----------
        n : int
            Number of frequencies, >= 1.
        seed : int
            Seed of the :func:`numpy.random.default_rng` generator; equal seeds give equal draws.

        Returns
        -------
        numpy.ndarray
            Shape ``(n,)``, float64.

        Raises
        ------
        ValueError
            For the periodic kernel (use
            :func:`~pyro_lmmvae.gp.spectral.regular_frequencies`) or an invalid ``n``.
        """
        if self.name == "periodic":
            raise ValueError(
                "the periodic kernel has no random-frequency sampler (discrete spectrum); "
                "use regular harmonics (regular_frequencies / regular_grid_scaling)"
            )
        n = positive_int("n", n)
        rng = np.random.default_rng(seed)
        if self.name == "se":
            return rng.normal(0.0, 1.0 / self.lengthscale, size=n)
        nu = _MATERN_NU[self.name]
        return rng.standard_t(2.0 * nu, size=n) / self.lengthscale


# --------------------------------------------------------------------------------------------
# differentiable spectral weights (torch)
# --------------------------------------------------------------------------------------------


def spectral_density(
    name: str, omega: torch.Tensor, variance: torch.Tensor, lengthscale: torch.Tensor
) -> torch.Tensor:
    """Spectral density ``S(ω)`` of an SE or Matérn kernel (spec §6 table), in torch.

    Parameters
    ----------
    name : {"se", "matern12", "matern32", "matern52"}
        Kernel family.
    omega : torch.Tensor
        Angular frequencies, any shape.
    variance, lengthscale : torch.Tensor
        ``σ²`` and ``ℓ``, broadcastable against ``omega``; gradients flow through both.

    Returns
    -------
    torch.Tensor
        ``S(ω)`` with ``k(τ) = ∫ S(ω) e^{iωτ} dω``.
    """
    if name == "se":
        return (
            variance
            * lengthscale
            / math.sqrt(2.0 * math.pi)
            * torch.exp(-0.5 * (lengthscale * omega) ** 2)
        )
    if name not in _MATERN_NU:
        raise ValueError(
            f"kernel {name!r} has no spectral density; use one of 'se', {sorted(_MATERN_NU)}"
        )
    nu = _MATERN_NU[name]
    log_const = (
        math.lgamma(nu + 0.5)
        + nu * math.log(2.0 * nu)
        - 0.5 * math.log(math.pi)
        - math.lgamma(nu)
        - 2.0 * nu * torch.log(lengthscale)
    )
    return variance * torch.exp(log_const) * (2.0 * nu / lengthscale**2 + omega**2) ** (-(nu + 0.5))


def periodic_weights(
    harmonics: torch.Tensor,
    variance: torch.Tensor,
    lengthscale: torch.Tensor,
    n_nodes: int = 512,
) -> torch.Tensor:
    """``σ² e^{−x} I_m(x)`` with ``x = ℓ⁻²``: the periodic kernel's harmonic weight, in torch.

    ``Λ_m`` of spec §6 is twice this for ``m ≥ 1`` (and ``q_0²`` is it at ``m = 0``). The scaled
    Bessel function is the integral ``e^{−x} I_m(x) = (1/π) ∫_0^π e^{x(cos θ − 1)} cos(mθ) dθ``,
    evaluated with the trapezoidal rule on ``n_nodes`` intervals; the integrand is smooth and
    periodic, so the error decays geometrically (it is below 1e-12 of ``σ²`` for ``ℓ ≥ 0.05``
    and ``m < n_nodes``), and the result is differentiable in ``σ²`` and ``ℓ``.

    Parameters
    ----------
    harmonics : torch.Tensor
        Harmonic orders ``m``, shape ``(M,)``.
    variance, lengthscale : torch.Tensor
        ``σ²`` and ``ℓ``: scalars, or one per harmonic, shape ``(M,)``.
    n_nodes : int, default 512
        Trapezoid intervals on ``[0, π]``.

    Returns
    -------
    torch.Tensor
        Shape ``(M,)``.
    """
    theta = torch.linspace(0.0, math.pi, n_nodes + 1, dtype=variance.dtype, device=variance.device)
    weights = torch.full_like(theta, 1.0 / n_nodes)
    weights[0] = weights[-1] = 0.5 / n_nodes
    x = (lengthscale.reciprocal() ** 2).unsqueeze(-1)
    envelope = torch.exp(x * (torch.cos(theta) - 1.0)) * weights  # (..., nodes)
    cosines = torch.cos(harmonics.to(theta.dtype).unsqueeze(-1) * theta)  # (M, nodes)
    return variance * (cosines * envelope).sum(-1)
