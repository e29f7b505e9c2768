"""What the prior implies: basis-term kernels and prior/posterior trajectories (issue 4).

Tolerances: the priors and effects are float32 while the references are float64. A kernel is a
sum of non-negative weights ``Λ_m`` times cosines, so its float32 error is below
``~1e-6 Σ Λ_m`` (each ``Λ_m`` is rounded once, plus the float32 ``exp`` of an argument of order
10 in the spectral density); ``1e-5 σ²`` bounds it with a margin of 10. Monte Carlo checks use 4
standard errors: of a sample mean ``sd/√n``, of a sample sd ``sd/√(2n)`` (Gaussian draws), of a
sample covariance ``√((σ_i² σ_j² + c²)/n)``.
"""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pyro
import pyro.distributions as dist
import pytest
import torch
import xarray as xr
from matplotlib.figure import Figure

from pyro_lmmvae import LMMVAE, EffectPrior
from pyro_lmmvae.datasets import make_synthetic
from pyro_lmmvae.gp import (
    Kernel,
    SpectralPrior,
    implied_kernel_matrix,
    prior_kernel,
    random_feature_scaling,
    regular_grid_scaling,
)
from pyro_lmmvae.inspection import latent_trajectories
from pyro_lmmvae.plots import plot_kernel, plot_trajectories

KERNEL_TOL = 1e-5  # float32 priors against float64 references, see the module docstring
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
LOG_VAR_FLOOR = -8.0  # the guide's variance floor e^-8 (guides/effects.py)


@pytest.fixture(scope="module")
def split():
    ds = make_synthetic(n_instances=12, n_times=6, seed=0).split("train")
    ds.data["sex"] = np.where(ds.data["g"] == 1, "m", "f")
    return ds


def build(split, formula: str, **options) -> LMMVAE:
    kwargs = dict(latent_dim=2, standardize=False, seed=0) | options
    return LMMVAE(formula, data=split.data, y=split.y, mask=split.mask, **kwargs)


def cos_kernel(t, t_prime, omegas, weights):
    """``Σ_m Λ_m cos(ω_m (t - t'))``: ``φ(t)ᵀ diag(Λ) φ(t')`` without building ``φ``."""
    tau = np.subtract.outer(np.asarray(t, float), np.asarray(t_prime, float))
    return np.einsum("ijm,m->ij", np.cos(tau[..., None] * np.asarray(omegas)), weights)


# ------------------------------------------------------------------------------------------
# prior_kernel
# ------------------------------------------------------------------------------------------


def test_se_spectral_prior_kernel_is_the_implied_kernel_and_converges(split):
    """SE prior on fourier(t, M, period=40): the implied kernel without q0², → exact kernel."""
    lengthscale, period = 1.0, 40.0
    t = np.linspace(0.0, 10.0, 41)  # |τ| <= 10, the spec §6 setting
    exact = np.exp(-(np.subtract.outer(t, t) ** 2) / (2 * lengthscale**2))
    errors = []
    for n in (4, 8, 16, 32):
        term = f"fourier(t, {n}, period=40)"
        m = build(split, f"~ 1 + {term}", fixed_prior=SpectralPrior("se", lengthscale=lengthscale))
        kernel = prior_kernel(m, term, t)
        scaling = regular_grid_scaling(Kernel("se", 1.0, lengthscale), n, period)
        q0 = scaling.intercept_variance
        reference = implied_kernel_matrix(t, t, scaling) - q0
        assert kernel.shape == (t.size, t.size)
        np.testing.assert_allclose(kernel, reference, rtol=0, atol=KERNEL_TOL)
        errors.append(np.abs(kernel + q0 - exact).max())
    assert all(later < earlier for earlier, later in zip(errors, errors[1:], strict=False))
    assert errors[-1] < 1e-3  # spec §6 threshold for SE at M = 32, T = 40, |τ| <= 10
    # The ω_0 weight is not part of the term's kernel: without it the kernel misses q0².
    assert abs(np.abs(kernel - exact).max() - q0) < 1e-3 and q0 > 0.05


def test_rff_spectral_prior_kernel(split):
    """rff(t, M) with an SE SpectralPrior: Λ = σ²/M on the formula's random frequencies."""
    term = "rff(t, 50, kernel='se', lengthscale=0.3, seed=3)"
    m = build(split, f"~ 1 + t + {term}", fixed_prior=SpectralPrior("se", variance=2.0))
    t, t_prime = np.linspace(0.0, 1.0, 7), np.linspace(-0.5, 2.0, 5)
    kernel = m.prior_kernel(term, t, t_prime)
    scaling = random_feature_scaling(Kernel("se", 2.0, 0.3), 50, seed=3)
    assert scaling.intercept_variance == 0.0
    np.testing.assert_allclose(
        kernel, implied_kernel_matrix(t, t_prime, scaling), rtol=0, atol=2.0 * KERNEL_TOL
    )


def test_default_prior_kernel_is_phi_phi_transpose(split):
    """N(0, 1) prior: φ(t)ᵀφ(t') = Σ_m cos ω_m (t - t'), here with t ≠ t' (shape (n, n'))."""
    m = build(split, "~ 1 + t + fourier(t, 3, period=2.5)")
    t, t_prime = np.linspace(0.0, 1.0, 6), np.array([0.0, 0.3, 1.7])
    kernel = m.prior_kernel("fourier(t, 3, period=2.5)", t, t_prime)
    omegas = 2 * np.pi * np.arange(1, 4) / 2.5
    assert kernel.shape == (6, 3)
    np.testing.assert_allclose(kernel, cos_kernel(t, t_prime, omegas, np.ones(3)), atol=1e-12)
    square = m.prior_kernel("fourier(t,3,period=2.5)", t)  # spaces ignored; t' = t
    np.testing.assert_allclose(square, cos_kernel(t, t, omegas, np.ones(3)), atol=1e-12)


def test_random_term_reads_the_random_prior(split):
    """(1 + fourier(t, 2) | id): the kernel comes from random_prior, not fixed_prior."""
    term = "fourier(t, 2, period=4)"
    scaling = regular_grid_scaling(Kernel("matern32", 2.0, 0.7), 2, 4.0)
    expected = cos_kernel([0.0, 0.4, 1.0], [0.0, 0.4, 1.0], scaling.omegas, scaling.pair_variance)
    t = np.array([0.0, 0.4, 1.0])
    random_prior = SpectralPrior("matern32", variance=2.0, lengthscale=0.7)

    m = build(split, f"~ 1 + t + (1 + {term} | id)", random_prior=random_prior)
    np.testing.assert_allclose(m.prior_kernel(term, t), expected, atol=2.0 * KERNEL_TOL)

    # The same term as a fixed and a random term: fixed by default, random on request.
    both = build(split, f"~ 1 + {term} + (1 + {term} | id)", random_prior=random_prior)
    np.testing.assert_allclose(
        both.prior_kernel(term, t), cos_kernel(t, t, scaling.omegas, np.ones(2)), atol=1e-6
    )
    np.testing.assert_allclose(
        both.prior_kernel(term, t, effect="random"), expected, atol=2.0 * KERNEL_TOL
    )
    with pytest.raises(ValueError, match="effect must be"):
        both.prior_kernel(term, t, effect="both")


def test_interaction_term_gives_the_kernel_of_its_basis_part(split):
    """sex:fourier(t, 2) has a 2M block per level, each N(0, Λ): the kernel is the basis kernel."""
    term = "sex:fourier(t, 2, period=3)"
    m = build(split, f"~ 1 + t + {term}", fixed_prior=SpectralPrior("se", lengthscale=0.5))
    assert len(m.design.basis_columns(term)[1]) == 8  # two levels × 2M columns
    t = np.linspace(0.0, 1.0, 5)
    scaling = regular_grid_scaling(Kernel("se", 1.0, 0.5), 2, 3.0)
    expected = cos_kernel(t, t, scaling.omegas, scaling.pair_variance)
    np.testing.assert_allclose(m.prior_kernel(term, t), expected, atol=KERNEL_TOL)
    # A numeric multiplier (g:fourier) has a single block.
    g = build(
        split, "~ 1 + g:fourier(t, 2, period=3)", fixed_prior=SpectralPrior("se", lengthscale=0.5)
    )
    np.testing.assert_allclose(
        g.prior_kernel("g:fourier(t, 2, period=3)", t), expected, atol=KERNEL_TOL
    )


def test_priors_that_differ_by_level_or_latent(split):
    """A per-column prior may scale the levels or latents differently: explicit errors/choice."""
    formula = "~ 1 + sex:fourier(t, 1, period=3)"  # columns: Intercept, f×(cos, sin), m×(cos, sin)
    t = np.array([0.0, 0.5])
    omega = 2 * np.pi / 3
    by_level = torch.tensor([1.0, 1.0, 1.0, 3.0, 3.0])
    m = build(split, formula, fixed_prior=dist.Normal(0.0, by_level))
    with pytest.raises(ValueError, match="different variances"):
        m.prior_kernel("sex:fourier(t, 1, period=3)", t)
    by_latent = torch.tensor([[1.0] * 5, [0.5] * 5])  # (L, Q): sd 1 for latent 0, 0.5 for 1
    m = build(split, formula, fixed_prior=dist.Normal(0.0, by_latent))
    with pytest.raises(ValueError, match="latent="):
        m.prior_kernel("sex:fourier(t, 1, period=3)", t)
    kernel = m.prior_kernel("sex:fourier(t, 1, period=3)", t, latent=1)
    np.testing.assert_allclose(kernel, cos_kernel(t, t, [omega], [0.25]), atol=1e-7)
    with pytest.raises(ValueError, match="latent must be in"):
        m.prior_kernel("sex:fourier(t, 1, period=3)", t, latent=2)


def test_prior_kernel_errors(split):
    t = np.linspace(0.0, 1.0, 3)
    m = build(split, "~ 1 + fourier(t, 2) + (1 | id)")
    with pytest.raises(KeyError, match=r"fourier\(t, 5\)"):
        m.prior_kernel("fourier(t, 5)", t)
    with pytest.raises(KeyError, match="random"):
        m.prior_kernel("fourier(t, 2)", t, effect="random")
    for options in ({"variant": "slmm", "instance": "id"}, {"bayesian_effects": False}):
        point = build(split, "~ 1 + fourier(t, 2)", **options)
        with pytest.raises(ValueError, match="point estimates"):
            point.prior_kernel("fourier(t, 2)", t)
    cvae = build(split, "~ 1 + fourier(t, 2)", variant="cvae")
    with pytest.raises(ValueError, match="CVAE"):
        cvae.prior_kernel("fourier(t, 2)", t)
    cauchy = build(split, "~ 1 + fourier(t, 2)", fixed_prior=dist.Cauchy(0.0, 1.0))
    with pytest.raises(ValueError, match="infinite or undefined variance"):
        cauchy.prior_kernel("fourier(t, 2)", t)


class HalfNormalScaleNormal(EffectPrior):
    """A hierarchical prior: ``a ~ N(0, τ²)``, ``τ ~ HalfNormal(1)`` per latent dimension."""

    def forward(self, shape):
        tau = pyro.sample("tau", dist.HalfNormal(1.0))  # (L,) inside the latent plate
        return dist.Normal(0.0, tau.unsqueeze(-1)).expand(torch.Size(shape))


def test_hierarchical_prior(split):
    """No closed-form kernel; trajectories draw τ per draw and report empirical moments."""
    m = build(split, "~ 1 + fourier(t, 2)", fixed_prior=HalfNormalScaleNormal())
    with pytest.raises(ValueError, match="hierarchical"):
        m.prior_kernel("fourier(t, 2)", np.zeros(2))
    n = 2000
    ds = m.latent_trajectories(pd.DataFrame({"t": [0.0, 0.5]}), num_draws=n)
    assert "empirical" in ds.attrs["prior"]
    draws = ds["prior_draws"].values
    np.testing.assert_allclose(ds["prior_sd"].values, draws.std(0, ddof=1), rtol=1e-5)
    # eta = τ Σ_j x_j z_j with Σ_j x_j² = 1 + 2 (cos² + sin² per pair): marginal variance
    # E[τ²] · 3 = 3. A scale mixture has kurtosis E[τ⁴] E[z⁴] / E[τ²]² = 3 · 3 = 9, so
    # Var(s²) ≈ σ⁴ (9 - 1) / n and SE(s) ≈ σ √(2 / n).
    sd = math.sqrt(3.0)
    assert np.all(np.abs(ds["prior_sd"].values - sd) < 4 * sd * math.sqrt(2 / n))
    # With one τ for all draws (the vectorized path) the draws would have kurtosis 3, not 9.
    z = draws[:, 0, 0] / sd
    assert np.mean(z**4) > 5.0


def test_effects_prior_group_draws_hyperparameters_per_draw(split):
    """effects()' prior draws of a hierarchical prior are draws of its marginal (a mixture)."""
    m = build(split, "~ 1 + fourier(t, 2)", fixed_prior=HalfNormalScaleNormal())
    n = 2000
    idata = m.effects(num_draws=n, seed=1)
    draws = idata.prior["fixed_effects"].values.reshape(n, -1)
    # marginal variance E[τ²] = 1; SE of a sample sd of a kurtosis-9 mixture ≈ σ √(2 / n)
    sd = idata.constant_data["fixed_prior_sd"].values.reshape(-1)
    np.testing.assert_allclose(sd, draws.std(0, ddof=1), rtol=1e-5)
    assert np.all(np.abs(sd - 1.0) < 4 * math.sqrt(2 / n))
    assert np.mean(draws[:, 0] ** 4) / np.mean(draws[:, 0] ** 2) ** 2 > 5.0  # not Gaussian


# ------------------------------------------------------------------------------------------
# latent_trajectories
# ------------------------------------------------------------------------------------------

FORMULA = "~ 1 + t + fourier(t, 2, period=4) + (1 + t | id)"
OMEGAS = 2 * np.pi * np.arange(1, 3) / 4


def fixed_design(t):
    """``x(t) = [1, t, cos ω1 t, sin ω1 t, cos ω2 t, sin ω2 t]``, by hand."""
    t = np.asarray(t, float)
    trig = [f(w * t) for w in OMEGAS for f in (np.cos, np.sin)]
    return np.stack([np.ones_like(t), t, *trig], axis=1)


@pytest.fixture()
def known(split):
    """An untrained oLMM with known q(A) means and variances at the floor e^-8."""
    m = build(
        split,
        FORMULA,
        fixed_prior=SpectralPrior("se", lengthscale=0.5),
        random_prior=dist.Normal(0.0, 0.5),
    )
    q = m.pair.effect_estimates
    a = torch.tensor([[0.5, -1.0, 0.3, 0.2, -0.4, 0.1], [-0.2, 2.0, 0.0, -0.6, 0.5, 0.7]])
    u0 = torch.tensor([[0.8, -0.3], [-1.1, 0.4]])  # instance i000, (L, k)
    with torch.no_grad():
        q.fixed_loc.copy_(a)
        q.fixed_rho.fill_(-50.0)
        q.random_loc.zero_()
        q.random_loc[0] = u0
        q.random_rho.fill_(-50.0)
    assert m.design.fixed_terms[:2] == ("Intercept", "t") and m.design.random_terms == ("1", "t")
    assert m.design.groups[0] == "i000"
    return m, a.double().numpy(), u0.double().numpy()


def test_posterior_mean_and_sd_are_A_x_plus_u_w(known):
    m, a, u0 = known
    t = np.linspace(0.0, 1.0, 9)
    x, w = fixed_design(t), np.stack([np.ones_like(t), t], axis=1)
    floor = math.exp(LOG_VAR_FLOOR)

    population = m.latent_trajectories(pd.DataFrame({"t": t}), num_draws=3)
    assert population["posterior_mean"].dims == ("point", "latent")
    assert population["posterior_draws"].dims == ("draw", "point", "latent")
    np.testing.assert_allclose(population["t"].values, t)
    np.testing.assert_allclose(population["posterior_mean"].values, x @ a.T, rtol=0, atol=1e-5)
    # Unseen instance: the random effects are at their prior mean, no posterior variance either.
    sd = np.sqrt(floor * (x**2).sum(1))[:, None].repeat(2, 1)
    np.testing.assert_allclose(population["posterior_sd"].values, sd, rtol=1e-4)

    seen = m.latent_trajectories(pd.DataFrame({"t": t, "id": "i000"}), num_draws=3)
    np.testing.assert_allclose(seen["posterior_mean"].values, x @ a.T + w @ u0.T, rtol=0, atol=1e-5)
    sd_seen = np.sqrt(floor * ((x**2).sum(1) + (w**2).sum(1)))[:, None].repeat(2, 1)
    np.testing.assert_allclose(seen["posterior_sd"].values, sd_seen, rtol=1e-4)

    # Unseen labels and missing labels give the population curve; seen rows their own.
    mixed = pd.DataFrame(
        {"t": t, "id": ["i000", "new", None, "i001", "i000", "x", None, "i000", "new"]}
    )
    out = m.latent_trajectories(mixed, num_draws=3)
    labels = out["id"].values  # the grid's column, missing labels kept as missing
    assert list(labels[:2]) == ["i000", "new"] and pd.isna(labels[2])
    expected = x @ a.T + np.where((mixed["id"] == "i000").to_numpy()[:, None], w @ u0.T, 0.0)
    np.testing.assert_allclose(out["posterior_mean"].values, expected, rtol=0, atol=1e-5)


def test_posterior_draws_follow_q(known):
    m, _, _ = known
    q = m.pair.effect_estimates
    with torch.no_grad():
        q.fixed_rho.fill_(0.0)  # a wider q(A_f) and q(u_0) so the draws spread measurably
        q.random_rho.fill_(0.0)
    n = 4000
    grid = pd.DataFrame({"t": [0.0, 0.5, 1.0] * 2, "id": ["i000"] * 3 + [None] * 3})
    ds = m.latent_trajectories(grid, num_draws=n)
    draws, mean, sd = (ds[v].values for v in ("posterior_draws", "posterior_mean", "posterior_sd"))
    assert np.all(np.abs(draws.mean(0) - mean) < 4 * sd / math.sqrt(n))
    assert np.all(np.abs(draws.std(0, ddof=1) - sd) < 4 * sd / math.sqrt(2 * n))


def test_prior_sd_is_analytic_and_matches_the_prior_draws(known):
    m, _, _ = known
    t = np.linspace(0.0, 1.0, 9)
    n = 4000
    ds = m.latent_trajectories(pd.DataFrame({"t": t, "id": "i000"}), num_draws=n, seed=7)
    # Var eta = 1 + t² (intercept, slope: N(0, 1)) + Σ_m Λ_m (cos² + sin² = 1 per pair)
    #         + 0.5² (1 + t²) (random intercept and slope).
    lam = regular_grid_scaling(Kernel("se", 1.0, 0.5), 2, 4.0).pair_variance
    var = 1 + t**2 + lam.sum() + 0.25 * (1 + t**2)
    sd = np.sqrt(var)[:, None].repeat(2, 1)
    np.testing.assert_allclose(ds["prior_sd"].values, sd, rtol=1e-5)
    np.testing.assert_array_equal(ds["prior_mean"].values, 0.0)
    draws = ds["prior_draws"].values  # (draw, point, latent)
    assert np.all(np.abs(draws.mean(0)) < 4 * sd / math.sqrt(n))
    assert np.all(np.abs(draws.std(0, ddof=1) - sd) < 4 * sd / math.sqrt(2 * n))
    # Draws are whole curves: one A and one u per draw, shared by the points.
    x, w = fixed_design(t), np.stack([np.ones_like(t), t], axis=1)
    weights = np.r_[1.0, 1.0, np.repeat(lam, 2)]
    for i, j in ((0, 8), (2, 5)):
        cov = (x[i] * weights) @ x[j] + 0.25 * w[i] @ w[j]
        se = math.sqrt((var[i] * var[j] + cov**2) / n)
        for latent in range(2):
            empirical = np.cov(draws[:, i, latent], draws[:, j, latent])[0, 1]
            assert abs(empirical - cov) < 4 * se


def test_instances_share_prior_draws_within_and_not_across(known):
    """Under the prior each instance draws its own u: rows of one instance share it."""
    m, _, _ = known
    grid = pd.DataFrame({"t": [0.0, 0.0, 0.0, 0.0], "id": ["i000", "i000", "i001", None]})
    draws = m.latent_trajectories(grid, num_draws=50)["prior_draws"].values
    np.testing.assert_array_equal(draws[:, 0], draws[:, 1])  # same instance, same covariates
    assert not np.allclose(draws[:, 0], draws[:, 2])  # different instances
    assert not np.allclose(draws[:, 2], draws[:, 3])  # the missing instance is a new one


def test_reproducible_and_leaves_the_global_rng_alone(known):
    m, _, _ = known
    grid = pd.DataFrame({"t": np.linspace(0.0, 1.0, 4)})
    torch.manual_seed(123)
    state = torch.get_rng_state()
    first = latent_trajectories(m, grid, num_draws=5, seed=3)
    assert torch.equal(torch.get_rng_state(), state)
    torch.manual_seed(456)
    again = m.latent_trajectories(grid, num_draws=5, seed=3)
    xr.testing.assert_identical(first, again)
    other = m.latent_trajectories(grid, num_draws=5, seed=4)
    assert not np.allclose(first["prior_draws"].values, other["prior_draws"].values)
    assert not np.allclose(first["posterior_draws"].values, other["posterior_draws"].values)
    assert first.attrs["formula"] == FORMULA and first.attrs["variant"] == "olmm"


def test_point_effects_give_the_posterior_only(split):
    m = build(split, "~ 1 + t + (1 | id)", variant="slmm")
    q = m.pair.effect_estimates
    assert q.is_point
    with torch.no_grad():
        q.fixed_loc.copy_(torch.tensor([[1.0, 2.0], [-1.0, 0.5]]))
        q.random_loc[1] = torch.tensor([[0.3], [-0.7]])
    t = np.array([0.0, 0.5, 1.0])
    ds = m.latent_trajectories(pd.DataFrame({"t": t, "id": "i001"}), num_draws=4)
    assert not any(name.startswith("prior") for name in ds.data_vars)
    assert "point estimates" in ds.attrs["prior"]
    expected = np.stack([1 + 2 * t + 0.3, -1 + 0.5 * t - 0.7], axis=1)
    np.testing.assert_allclose(ds["posterior_mean"].values, expected, atol=1e-6)
    np.testing.assert_array_equal(ds["posterior_sd"].values, 0.0)
    np.testing.assert_array_equal(
        ds["posterior_draws"].values, np.broadcast_to(ds["posterior_mean"].values, (4, 3, 2))
    )


def test_latent_trajectories_errors(split):
    grid = pd.DataFrame({"t": [0.0, 1.0]})
    with pytest.raises(ValueError, match="no latent linear predictor"):
        build(split, "~ 0").latent_trajectories(grid)
    m = build(split, "~ 1 + t")
    with pytest.raises(ValueError, match="num_draws"):
        m.latent_trajectories(grid, num_draws=0)
    with pytest.raises(ValueError, match="clash"):
        m.latent_trajectories(grid.assign(latent=0))
    with pytest.raises(KeyError, match="'t'"):
        m.latent_trajectories(pd.DataFrame({"age": [1.0]}))


# ------------------------------------------------------------------------------------------
# plots
# ------------------------------------------------------------------------------------------


def test_plot_kernel_writes_a_png_and_returns_the_figure(known, tmp_path):
    m, _, _ = known
    t = np.linspace(0.0, 3.0, 30)
    before = plt.get_fignums()
    fig = plot_kernel(
        m.prior_kernel("fourier(t, 2, period=4)", t), t, title="SE", path=tmp_path / "k.png"
    )
    assert isinstance(fig, Figure) and len(fig.axes) == 3  # heatmap, its colorbar, the curves
    assert (tmp_path / "k.png").read_bytes()[:8] == PNG_MAGIC
    t0 = np.array([0.0, 1.5])
    curves = plot_kernel(m.prior_kernel("fourier(t, 2, period=4)", t, t0), t, t_prime=t0)
    assert len(curves.axes) == 1 and len(curves.axes[0].get_lines()) >= 2
    assert plt.get_fignums() == before  # not registered with pyplot: nothing to close
    with pytest.raises(ValueError, match="shape"):
        plot_kernel(np.zeros((3, 2)), t)


def test_plot_trajectories_writes_a_png_and_returns_the_figure(known, split, tmp_path):
    m, _, _ = known
    t = np.linspace(0.0, 1.0, 6)
    grid = pd.DataFrame({"t": np.r_[t, t], "id": ["i000"] * 6 + [None] * 6})
    ds = m.latent_trajectories(grid, num_draws=8)
    fig = plot_trajectories(ds, "t", path=tmp_path / "traj.png")
    assert isinstance(fig, Figure)
    assert (tmp_path / "traj.png").read_bytes()[:8] == PNG_MAGIC
    visible = [ax for ax in fig.axes if ax.get_visible()]
    assert len(visible) == 2
    # two curves (seen instance, population) × (5 prior draws + posterior mean)
    assert len(visible[0].get_lines()) == 2 * (5 + 1)
    one = plot_trajectories(ds, "t", latent=1)
    assert [ax.get_title() for ax in one.axes if ax.get_visible()] == ["latent 1"]
    point = build(split, "~ 1 + t", variant="slmm", instance="id")
    posterior_only = plot_trajectories(point.latent_trajectories(pd.DataFrame({"t": t})), "t")
    assert len(posterior_only.axes[0].get_lines()) == 1
    with pytest.raises(KeyError, match="grid coordinate"):
        plot_trajectories(ds, "age")
    with pytest.raises(ValueError, match="latent"):
        plot_trajectories(ds, "t", latent=5)
