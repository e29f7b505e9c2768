"""Fourier features and the spectral scaling that makes them a reduced-rank GP (spec §6).

A feature map ``φ(t) = [cos ω_1 t, sin ω_1 t, …, cos ω_M t, sin ω_M t]`` with a Gaussian prior
``a ~ N(0, diag(Λ))`` on its coefficients defines the rank-2M covariance
``φ(t)ᵀ Λ φ(t') + q_0²``, which approximates a stationary kernel ``k(t − t')`` when ``Λ`` is
chosen from the kernel's spectral density (Bochner's theorem).

Conventions (spec §6)
---------------------
- Spectral convention: ``k(τ) = ∫_R S(ω) e^{iωτ} dω``, so ``∫ S = σ²``.
- Regular frequencies ``ω_m = 2πm/T`` (``m = 1..M``, ``Δω = 2π/T``) with
  ``Λ_m = 2 S(ω_m) Δω`` per cos/sin pair; the ``ω_0 = 0`` term has weight ``q_0² = S(0) Δω``.
  The periodic kernel uses its exact harmonic expansion
  ``Λ_m = 2σ² e^{−ℓ⁻²} I_m(ℓ⁻²)``, ``q_0² = σ² e^{−ℓ⁻²} I_0(ℓ⁻²)``.
- Random frequencies are i.i.d. draws from ``S(ω)/σ²`` with ``Λ = σ²/M`` for every column.

The kernels (:class:`~pyro_lmmvae.gp.kernels.Kernel`) and their spectral densities are in
:mod:`pyro_lmmvae.gp.kernels`; the grids and features here are numpy in float64.

Examples
--------
>>> from pyro_lmmvae.gp.kernels import Kernel
>>> kernel = Kernel("se", variance=1.0, lengthscale=1.0)
>>> scaling = regular_grid_scaling(kernel, 32, period=40.0)
>>> tau = np.linspace(-10.0, 10.0, 201)
>>> bool(np.max(np.abs(implied_kernel(tau, scaling) - kernel(tau))) < 1e-3)
True
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.special import ive

from pyro_lmmvae.gp.kernels import Kernel, positive_float, positive_int

__all__ = [
    "BasisScaling",
    "default_period",
    "fourier_features",
    "implied_kernel",
    "implied_kernel_matrix",
    "random_feature_scaling",
    "regular_frequencies",
    "regular_grid_scaling",
]


def _finite_1d(name: str, values: object) -> np.ndarray:
    """Return ``values`` as a finite 1-D float64 array (scalars become length 1)."""
    arr = np.atleast_1d(np.asarray(values, dtype=np.float64))
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {arr.shape}")
    if np.isnan(arr).any():
        n_nan = int(np.isnan(arr).sum())
        raise ValueError(f"{name} contains NaN time values ({n_nan} of {arr.size})")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains infinite values")
    return arr


# --------------------------------------------------------------------------------------------
# frequencies and features
# --------------------------------------------------------------------------------------------


def regular_frequencies(n: int, period: float) -> np.ndarray:
    """Regular harmonics ``ω_m = 2πm/T`` for ``m = 1..n``.

    Parameters
    ----------
    n : int
        Number of frequencies ``M`` (>= 1); the feature map has ``2M`` columns.
    period : float
        Period ``T`` > 0.

    Returns
    -------
    numpy.ndarray
        Shape ``(n,)``, float64.
    """
    n = positive_int("n", n)
    period = positive_float("period", period)
    return 2.0 * np.pi * np.arange(1, n + 1, dtype=np.float64) / period


def fourier_features(t: np.ndarray | float, omegas: np.ndarray) -> np.ndarray:
    """Feature map ``φ(t) = [cos ω_1 t, sin ω_1 t, …, cos ω_M t, sin ω_M t]``.

    Parameters
    ----------
    t : array_like
        Times (or other covariate values), shape ``(N,)``; a scalar is treated as ``N = 1``.
    omegas : array_like
        Frequencies, shape ``(M,)``.

    Returns
    -------
    numpy.ndarray
        Shape ``(N, 2M)``; column ``2m`` is ``cos ω_{m+1} t`` and column ``2m + 1`` is
        ``sin ω_{m+1} t``.

    Raises
    ------
    ValueError
        If ``t`` contains NaN or infinite values, or ``omegas`` is empty or not finite.
    """
    t = _finite_1d("t", t)
    omegas = np.atleast_1d(np.asarray(omegas, dtype=np.float64))
    if omegas.ndim != 1 or omegas.size == 0:
        raise ValueError(f"omegas must be a non-empty 1-D array, got shape {omegas.shape}")
    if not np.isfinite(omegas).all():
        raise ValueError("omegas must be finite")
    phase = t[:, None] * omegas[None, :]
    out = np.empty((t.size, 2 * omegas.size), dtype=np.float64)
    out[:, 0::2] = np.cos(phase)
    out[:, 1::2] = np.sin(phase)
    return out


def default_period(t: np.ndarray) -> float:
    """Default grid period for a non-periodic covariate: ``T = 2 (t_max − t_min)`` (spec §6).

    Parameters
    ----------
    t : array_like
        Covariate values, 1-D and finite.

    Returns
    -------
    float
        The period.

    Raises
    ------
    ValueError
        If ``t`` has NaN / infinite values or fewer than two distinct values.
    """
    t = _finite_1d("t", t)
    if np.unique(t).size < 2:
        raise ValueError("t must have at least two distinct values to define a default period")
    return float(2.0 * (t.max() - t.min()))


# --------------------------------------------------------------------------------------------
# prior scaling
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BasisScaling:
    """Frequencies and prior variances of a Fourier basis.

    Parameters
    ----------
    omegas : numpy.ndarray
        Frequencies ``ω_1..ω_M``, shape ``(M,)``.
    column_variance : numpy.ndarray
        Prior variance ``Λ`` of each feature column, shape ``(2M,)``, in the column order of
        :func:`fourier_features`; each cos/sin pair shares one value.
    intercept_variance : float
        Weight ``q_0²`` of the ``ω_0 = 0`` term (0 for random features).
    """

    omegas: np.ndarray
    column_variance: np.ndarray
    intercept_variance: float

    def __post_init__(self) -> None:
        omegas = np.asarray(self.omegas, dtype=np.float64)
        lam = np.asarray(self.column_variance, dtype=np.float64)
        if omegas.ndim != 1 or omegas.size == 0:
            raise ValueError(f"omegas must be a non-empty 1-D array, got shape {omegas.shape}")
        if lam.shape != (2 * omegas.size,):
            raise ValueError(
                f"column_variance must have shape (2M,) = ({2 * omegas.size},), got {lam.shape}"
            )
        if not (np.isfinite(lam).all() and (lam >= 0).all()):
            raise ValueError("column_variance must be finite and non-negative")
        if not np.array_equal(lam[0::2], lam[1::2]):
            raise ValueError("column_variance must share one value per cos/sin pair")
        q0 = float(self.intercept_variance)
        if not math.isfinite(q0) or q0 < 0:
            raise ValueError(f"intercept_variance must be finite and >= 0, got {q0!r}")
        object.__setattr__(self, "omegas", omegas)
        object.__setattr__(self, "column_variance", lam)
        object.__setattr__(self, "intercept_variance", q0)

    @property
    def pair_variance(self) -> np.ndarray:
        """``Λ_m`` per frequency, shape ``(M,)``."""
        return self.column_variance[0::2]


def regular_grid_scaling(kernel: Kernel, n: int, period: float | None = None) -> BasisScaling:
    """Prior scaling on the regular grid ``ω_m = 2πm/T``.

    For SE / Matérn: ``Λ_m = 2 S(ω_m) Δω`` and ``q_0² = S(0) Δω`` with ``Δω = 2π/T``. For the
    periodic kernel: the exact harmonic weights ``Λ_m = 2σ² e^{−ℓ⁻²} I_m(ℓ⁻²)`` and
    ``q_0² = σ² e^{−ℓ⁻²} I_0(ℓ⁻²)``, computed with the scaled Bessel function ``ive``.

    Parameters
    ----------
    kernel : Kernel
        The kernel to approximate.
    n : int
        Number of frequencies ``M`` (>= 1).
    period : float, optional
        Grid period ``T``. Required for SE / Matérn (see :func:`default_period`). For the
        periodic kernel it defaults to, and must equal, the kernel's own period.

    Returns
    -------
    BasisScaling
    """
    n = positive_int("n", n)
    if kernel.name == "periodic":
        assert kernel.period is not None
        if period is not None:
            period = positive_float("period", period)
            if not math.isclose(period, kernel.period, rel_tol=1e-12, abs_tol=0.0):
                raise ValueError(
                    f"period={period!r} differs from the periodic kernel's own period "
                    f"{kernel.period!r}; the harmonic grid must use the kernel's period"
                )
        omegas = regular_frequencies(n, kernel.period)
        x = 1.0 / kernel.lengthscale**2
        lam = 2.0 * kernel.variance * ive(np.arange(1, n + 1), x)
        q0 = kernel.variance * float(ive(0, x))
    else:
        if period is None:
            raise ValueError(
                f"period is required for the {kernel.name!r} kernel (see default_period)"
            )
        period = positive_float("period", period)
        omegas = regular_frequencies(n, period)
        d_omega = 2.0 * np.pi / period
        lam = 2.0 * kernel.spectral_density(omegas) * d_omega
        q0 = float(kernel.spectral_density(0.0)) * d_omega
    return BasisScaling(omegas, np.repeat(lam, 2), q0)


def random_feature_scaling(kernel: Kernel, n: int, seed: int = 0) -> BasisScaling:
    """Random Fourier features: ``n`` frequencies drawn from ``S(ω)/σ²``, ``Λ = σ²/M``.

    Parameters
    ----------
    kernel : Kernel
        SE or Matérn kernel (the periodic kernel raises; use :func:`regular_grid_scaling`).
    n : int
        Number of frequencies ``M`` (>= 1).
    seed : int, default 0
        Seed of the frequency draw (fixed, so the basis is reproducible).

    Returns
    -------
    BasisScaling
        With ``intercept_variance = 0``.
    """
    omegas = kernel.sample_frequencies(n, seed)
    lam = np.full(2 * omegas.size, kernel.variance / omegas.size)
    return BasisScaling(omegas, lam, 0.0)


# --------------------------------------------------------------------------------------------
# implied kernel
# --------------------------------------------------------------------------------------------


def implied_kernel(tau: np.ndarray | float, scaling: BasisScaling) -> np.ndarray:
    """Implied stationary kernel ``Σ_m Λ_m cos(ω_m τ) + q_0²``.

    Equal to ``φ(t)ᵀ diag(Λ) φ(t') + q_0²`` with ``τ = t − t'``, because each cos/sin pair
    shares ``Λ_m``.

    Parameters
    ----------
    tau : array_like
        Lags, any shape.
    scaling : BasisScaling

    Returns
    -------
    numpy.ndarray
        Same shape as ``tau``.
    """
    tau = np.asarray(tau, dtype=np.float64)
    flat = tau.reshape(-1)
    out = np.cos(flat[:, None] * scaling.omegas[None, :]) @ scaling.pair_variance
    return (out + scaling.intercept_variance).reshape(tau.shape)


def implied_kernel_matrix(
    t1: np.ndarray | float, t2: np.ndarray | float, scaling: BasisScaling
) -> np.ndarray:
    """Implied covariance matrix ``φ(t1) diag(Λ) φ(t2)ᵀ + q_0²`` built from the features.

    Parameters
    ----------
    t1, t2 : array_like
        Times, shapes ``(N1,)`` and ``(N2,)``.
    scaling : BasisScaling

    Returns
    -------
    numpy.ndarray
        Shape ``(N1, N2)``.
    """
    phi1 = fourier_features(t1, scaling.omegas)
    phi2 = fourier_features(t2, scaling.omegas)
    return (phi1 * scaling.column_variance) @ phi2.T + scaling.intercept_variance
