"""Fourier basis functions and their Gaussian-process connection (spec §6).

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

The kernels and grids are numpy in float64. :func:`spectral_density` and
:func:`periodic_weights` are torch functions, differentiable in the variance and lengthscale, so
that :class:`~pyro_lmmvae.spectral_priors.SpectralPrior` can learn them; :class:`Kernel` uses
the same functions.

Examples
--------
>>> kernel = Kernel("se", variance=1.0, lengthscale=1.0)
>>> scaling = regular_grid_scaling(kernel, 32, period=40.0)
>>> tau = np.linspace(-10.0, 10.0, 201)
>>> bool(np.max(np.abs(implied_kernel(tau, scaling) - kernel(tau))) < 1e-3)
True
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import numpy as np
import torch
from scipy.special import ive

__all__ = [
    "KERNEL_NAMES",
    "BasisScaling",
    "Kernel",
    "default_period",
    "periodic_weights",
    "spectral_density",
    "fourier_features",
    "implied_kernel",
    "implied_kernel_matrix",
    "random_feature_scaling",
    "regular_frequencies",
    "regular_grid_scaling",
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
            :func:`regular_grid_scaling`).
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
            For the periodic kernel (use :func:`regular_frequencies`) or an invalid ``n``.
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
