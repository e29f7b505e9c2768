"""Tests of the kernels and the Fourier basis / GP connection in ``pyro_lmmvae.gp.kernels`` and
``pyro_lmmvae.gp.spectral`` (spec §6)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.integrate import quad

from pyro_lmmvae.gp import (
    BasisScaling,
    Kernel,
    default_period,
    fourier_features,
    implied_kernel,
    implied_kernel_matrix,
    random_feature_scaling,
    regular_frequencies,
    regular_grid_scaling,
)

TAU = np.linspace(-10.0, 10.0, 4001)  # dense lag grid, |τ| <= 10
TAU_PERIOD = np.linspace(0.0, 2.0 * np.pi, 4001)  # one full period of the periodic kernel
SPECTRAL_KERNELS = ("se", "matern12", "matern32", "matern52")


def _max_error(kernel: Kernel, scaling: BasisScaling, tau: np.ndarray) -> float:
    return float(np.max(np.abs(implied_kernel(tau, scaling) - kernel(tau))))


def _periodic() -> Kernel:
    return Kernel("periodic", variance=1.0, lengthscale=0.8, period=2.0 * np.pi)


# --------------------------------------------------------------------------------------------
# spec §6 convergence thresholds
# --------------------------------------------------------------------------------------------


def test_se_regular_grid_threshold():
    """SE (σ² = ℓ = 1), T = 40, M = 32: max error over |τ| <= 10 is below 1e-3."""
    kernel = Kernel("se", variance=1.0, lengthscale=1.0)
    assert _max_error(kernel, regular_grid_scaling(kernel, 32, period=40.0), TAU) < 1e-3


def test_matern32_regular_grid_threshold():
    """Matérn-3/2 (σ² = ℓ = 1), T = 40, M = 256: max error over |τ| <= 10 is below 1e-3."""
    kernel = Kernel("matern32", variance=1.0, lengthscale=1.0)
    assert _max_error(kernel, regular_grid_scaling(kernel, 256, period=40.0), TAU) < 1e-3


def test_periodic_harmonic_threshold():
    """Periodic (T = 2π, ℓ = 0.8), M = 8: max error over a full period is below 1e-5."""
    kernel = _periodic()
    assert _max_error(kernel, regular_grid_scaling(kernel, 8), TAU_PERIOD) < 1e-5


def test_se_random_features_threshold():
    """SE random Fourier features, M = 1e4, seeded: max error over |τ| <= 10 is below 0.05."""
    kernel = Kernel("se", variance=1.0, lengthscale=1.0)
    scaling = random_feature_scaling(kernel, 10_000, seed=0)
    np.testing.assert_allclose(scaling.column_variance, 1.0 / 10_000)
    assert scaling.intercept_variance == 0.0
    assert _max_error(kernel, scaling, TAU) < 0.05


# --------------------------------------------------------------------------------------------
# error decreases in M
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kernel", "sizes", "period", "tau"),
    [
        (Kernel("se"), (4, 8, 16, 32), 40.0, TAU),
        (Kernel("matern32"), (32, 64, 128, 256), 40.0, TAU),
        (_periodic(), (2, 4, 8), None, TAU_PERIOD),
    ],
    ids=["se", "matern32", "periodic"],
)
def test_error_strictly_decreases_with_m(kernel, sizes, period, tau):
    """The max error of the implied kernel strictly decreases as M grows."""
    errors = [_max_error(kernel, regular_grid_scaling(kernel, m, period), tau) for m in sizes]
    assert all(b < a for a, b in zip(errors, errors[1:], strict=False)), errors


def test_regular_grid_includes_omega0_term():
    """The ω_0 weight is S(0)Δω; dropping it leaves a visible error (the intercept term)."""
    kernel = Kernel("se", variance=1.0, lengthscale=1.0)
    scaling = regular_grid_scaling(kernel, 32, period=40.0)
    d_omega = 2.0 * np.pi / 40.0
    assert scaling.intercept_variance == pytest.approx(
        float(kernel.spectral_density(0.0)) * d_omega
    )
    no_q0 = BasisScaling(scaling.omegas, scaling.column_variance, 0.0)
    assert _max_error(kernel, no_q0, TAU) > 0.05


def test_periodic_weights_match_bessel_expansion():
    """Periodic Λ_m and q0² sum to σ² (k(0)) and decay geometrically like I_m(ℓ⁻²)."""
    kernel = Kernel("periodic", variance=2.5, lengthscale=0.8, period=3.0)
    scaling = regular_grid_scaling(kernel, 30)
    total = scaling.intercept_variance + scaling.pair_variance.sum()
    assert total == pytest.approx(2.5, rel=1e-12)
    np.testing.assert_allclose(scaling.omegas, 2.0 * np.pi * np.arange(1, 31) / 3.0)
    assert np.all(np.diff(scaling.pair_variance) < 0)


# --------------------------------------------------------------------------------------------
# spectral densities
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", SPECTRAL_KERNELS)
def test_spectral_density_integrates_to_variance(name):
    """∫_R S(ω) dω = σ² for a non-unit σ² and ℓ."""
    kernel = Kernel(name, variance=2.5, lengthscale=0.7)
    total, _ = quad(lambda w: float(kernel.spectral_density(w)), -np.inf, np.inf, limit=200)
    assert total == pytest.approx(2.5, rel=1e-7)


@pytest.mark.parametrize("name", SPECTRAL_KERNELS)
def test_spectral_density_fourier_transform_is_kernel(name):
    """∫_R S(ω) cos(ωτ) dω = k(τ) at several τ (S is even, so 2 × the half-line integral)."""
    kernel = Kernel(name, variance=2.5, lengthscale=0.7)
    for tau in (0.3, 1.0, 2.2):
        half, _ = quad(
            lambda w: float(kernel.spectral_density(w)), 0.0, np.inf, weight="cos", wvar=tau
        )
        assert 2.0 * half == pytest.approx(float(kernel(tau)), abs=1e-8), tau


def test_kernel_values_match_closed_forms():
    """k(τ) matches the written closed forms at a sample lag, and k(0) = σ²."""
    s2, ell, tau = 1.7, 0.9, 1.3
    r = tau / ell
    expected = {
        "se": s2 * math.exp(-(tau**2) / (2 * ell**2)),
        "matern12": s2 * math.exp(-r),
        "matern32": s2 * (1 + math.sqrt(3) * r) * math.exp(-math.sqrt(3) * r),
        "matern52": s2 * (1 + math.sqrt(5) * r + 5 * r**2 / 3) * math.exp(-math.sqrt(5) * r),
    }
    for name, value in expected.items():
        kernel = Kernel(name, variance=s2, lengthscale=ell)
        assert float(kernel(tau)) == pytest.approx(value, rel=1e-12), name
        assert float(kernel.k(-tau)) == pytest.approx(value, rel=1e-12), name
        assert float(kernel(0.0)) == pytest.approx(s2, rel=1e-12), name
    per = Kernel("periodic", variance=s2, lengthscale=ell, period=2.0)
    expected_per = s2 * math.exp(-2 * math.sin(math.pi * tau / 2.0) ** 2 / ell**2)
    assert float(per(tau)) == pytest.approx(expected_per, rel=1e-12)
    assert float(per(tau + 2.0)) == pytest.approx(expected_per, rel=1e-12)


# --------------------------------------------------------------------------------------------
# random-frequency samplers
# --------------------------------------------------------------------------------------------


def test_se_sampler_variance():
    """SE frequencies have variance ℓ⁻² within 4 standard errors of a sample variance."""
    ell, n = 0.7, 20_000
    omegas = Kernel("se", variance=2.0, lengthscale=ell).sample_frequencies(n, seed=3)
    target = ell**-2
    se = target * math.sqrt(2.0 / (n - 1))
    assert abs(np.var(omegas, ddof=1) - target) < 4 * se


def test_matern52_sampler_characteristic_function():
    """Matérn-5/2 frequencies: E[cos ωτ] = k(τ)/σ² within 4 SE; a mis-scaled t is rejected."""
    kernel = Kernel("matern52", variance=3.0, lengthscale=0.6)
    n = 40_000
    omegas = kernel.sample_frequencies(n, seed=11)
    for tau in (0.2, 0.6, 1.5):
        c = np.cos(omegas * tau)
        se = c.std(ddof=1) / math.sqrt(n)
        target = float(kernel(tau)) / kernel.variance
        assert abs(c.mean() - target) < 4 * se, tau
    # Power check: a common mistake, ω = sqrt(2ν) T_{2ν} / ℓ, is far outside the tolerance.
    wrong = np.cos(math.sqrt(5.0) * omegas * 0.6)
    se = wrong.std(ddof=1) / math.sqrt(n)
    assert abs(wrong.mean() - float(kernel(0.6)) / kernel.variance) > 4 * se


def test_rff_seed_reproducibility():
    """RFF frequencies are identical for the same seed and differ for another seed."""
    kernel = Kernel("matern32", variance=1.0, lengthscale=2.0)
    a = kernel.sample_frequencies(50, seed=7)
    b = kernel.sample_frequencies(50, seed=7)
    c = kernel.sample_frequencies(50, seed=8)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    s1 = random_feature_scaling(kernel, 50, seed=7)
    s2 = random_feature_scaling(kernel, 50, seed=7)
    np.testing.assert_array_equal(s1.omegas, a)
    np.testing.assert_array_equal(s1.omegas, s2.omegas)


# --------------------------------------------------------------------------------------------
# features and implied kernel
# --------------------------------------------------------------------------------------------


def test_fourier_features_layout_and_determinism():
    """Columns interleave cos/sin per frequency; repeated evaluation is bit-identical."""
    t = np.array([0.0, 0.5, 2.0])
    omegas = regular_frequencies(3, period=4.0)
    np.testing.assert_allclose(omegas, [np.pi / 2, np.pi, 3 * np.pi / 2])
    phi = fourier_features(t, omegas)
    assert phi.shape == (3, 6)
    np.testing.assert_allclose(phi[:, 0::2], np.cos(np.outer(t, omegas)))
    np.testing.assert_allclose(phi[:, 1::2], np.sin(np.outer(t, omegas)))
    np.testing.assert_array_equal(phi[0], [1, 0, 1, 0, 1, 0])
    np.testing.assert_array_equal(phi, fourier_features(t.copy(), omegas.copy()))


@pytest.mark.parametrize(
    "scaling",
    [
        regular_grid_scaling(Kernel("matern52", 1.3, 0.8), 20, period=12.0),
        regular_grid_scaling(Kernel("periodic", 0.7, 1.1, period=5.0), 10),
        random_feature_scaling(Kernel("se", 2.0, 0.5), 64, seed=1),
    ],
    ids=["regular", "periodic", "rff"],
)
def test_implied_kernel_matches_feature_matrix(scaling):
    """φ(t1) diag(Λ) φ(t2)ᵀ + q0² equals the stationary form evaluated at t1 − t2."""
    rng = np.random.default_rng(0)
    t1, t2 = rng.uniform(-6, 6, size=17), rng.uniform(-6, 6, size=9)
    matrix = implied_kernel_matrix(t1, t2, scaling)
    assert matrix.shape == (17, 9)
    np.testing.assert_allclose(
        matrix, implied_kernel(t1[:, None] - t2[None, :], scaling), atol=1e-12
    )


def test_default_period():
    """default_period is 2 (t_max − t_min) and needs two distinct values."""
    assert default_period(np.array([3.0, 51.0, 10.0])) == pytest.approx(96.0)
    with pytest.raises(ValueError, match="two distinct"):
        default_period(np.array([1.0, 1.0, 1.0]))


# --------------------------------------------------------------------------------------------
# bad input
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"name": "se", "lengthscale": 0.0}, "lengthscale"),
        ({"name": "matern32", "lengthscale": -1.0}, "lengthscale"),
        ({"name": "se", "lengthscale": float("nan")}, "lengthscale"),
        ({"name": "se", "variance": 0.0}, "variance"),
        ({"name": "matern12", "variance": float("inf")}, "variance"),
        ({"name": "periodic", "period": 0.0}, "period"),
        ({"name": "periodic", "period": -2.0}, "period"),
        ({"name": "periodic"}, "period"),
        ({"name": "se", "period": 3.0}, "period"),
        ({"name": "rbf"}, "kernel name"),
    ],
)
def test_kernel_rejects_bad_parameters(kwargs, match):
    """Invalid kernel parameters raise a ValueError naming the parameter."""
    with pytest.raises(ValueError, match=match):
        Kernel(**kwargs)


def test_bad_sizes_and_periods_raise():
    """n < 1, non-integer n and non-positive periods raise ValueErrors naming the argument."""
    se = Kernel("se")
    for bad in (0, -3):
        with pytest.raises(ValueError, match=r"n must be a positive integer"):
            regular_frequencies(bad, 2.0)
        with pytest.raises(ValueError, match=r"n must be a positive integer"):
            se.sample_frequencies(bad, seed=0)
    for bad in (2.5, 3.0, True):
        with pytest.raises(ValueError, match=r"n must be a positive integer"):
            regular_grid_scaling(se, bad, period=10.0)
        with pytest.raises(ValueError, match=r"n must be a positive integer"):
            random_feature_scaling(se, bad)
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="period"):
            regular_frequencies(4, bad)
        with pytest.raises(ValueError, match="period"):
            regular_grid_scaling(se, 4, period=bad)
    with pytest.raises(ValueError, match="period is required"):
        regular_grid_scaling(se, 4)


def test_nan_time_raises():
    """NaN in t raises a ValueError that mentions a NaN time."""
    omegas = regular_frequencies(3, 10.0)
    with pytest.raises(ValueError, match="NaN time"):
        fourier_features(np.array([0.0, np.nan, 1.0]), omegas)
    with pytest.raises(ValueError, match="NaN time"):
        implied_kernel_matrix(
            np.array([np.nan]), np.array([1.0]), regular_grid_scaling(Kernel("se"), 3, period=10.0)
        )
    with pytest.raises(ValueError, match="NaN time"):
        default_period(np.array([0.0, np.nan, 2.0]))


def test_periodic_kernel_misuse_raises():
    """Periodic kernel: no spectral density, no random frequencies, no mismatched grid period."""
    kernel = _periodic()
    with pytest.raises(ValueError, match="periodic kernel has no spectral density"):
        kernel.spectral_density(1.0)
    with pytest.raises(ValueError, match="periodic kernel has no random-frequency"):
        kernel.sample_frequencies(10, seed=0)
    with pytest.raises(ValueError, match="periodic kernel has no random-frequency"):
        random_feature_scaling(kernel, 10)
    with pytest.raises(ValueError, match=r"period=5.0 differs from the periodic kernel's"):
        regular_grid_scaling(kernel, 8, period=5.0)
    same = regular_grid_scaling(kernel, 8, period=2.0 * np.pi)
    np.testing.assert_array_equal(
        same.column_variance, regular_grid_scaling(kernel, 8).column_variance
    )
