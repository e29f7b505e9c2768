"""Tests for the Gaussian-process synthetic generator (spec section 6 setting)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pyro_lmmvae.datasets import LongitudinalDataset, make_gp_synthetic, synthetic_decoder
from pyro_lmmvae.gp import Kernel

P, T, L, D = 60, 20, 2, 12
N_TEST_TIMES = 4


@pytest.fixture(scope="module")
def ds() -> LongitudinalDataset:
    return make_gp_synthetic(
        n_instances=P, n_times=T, latent_dim=L, obs_dim=D, n_test_times=N_TEST_TIMES, seed=0
    )


def _instance_index(ds: LongitudinalDataset) -> np.ndarray:
    lookup = {lab: p for p, lab in enumerate(ds.truth["instance_labels"])}
    return ds.data["id"].map(lookup).to_numpy()


def _row_grid_index(ds: LongitudinalDataset) -> np.ndarray:
    """Grid index of each row, recovered from ``data["t"]`` (asserting it is a grid point)."""
    grid = ds.truth["grid_t"]
    t = ds.data["t"].to_numpy()
    idx = np.clip(np.searchsorted(grid, t), 0, grid.size - 1)
    assert np.array_equal(grid[idx], t)
    return idx


def _variance_ratio_within(sample: np.ndarray, sigma: float, n_se: float = 4.0) -> None:
    """Mean square of n i.i.d. N(0, sigma^2) draws over sigma^2 is chi2_n / n: SE sqrt(2/n)."""
    n = sample.size
    ratio = float(np.mean(sample**2)) / sigma**2
    assert abs(ratio - 1.0) < n_se * math.sqrt(2.0 / n), (ratio, n)


# --------------------------------------------------------------------------- structure


def test_shapes_columns_and_truth(ds):
    n = P * T
    assert ds.name == "gp_synthetic"
    assert ds.y.shape == ds.mask.shape == ds.y_true.shape == (n, D)
    assert ds.y.dtype == np.float32 and ds.mask.dtype == np.bool_
    assert list(ds.data.columns) == ["id", "t", "split"]
    assert ds.data["t"].dtype == np.float64
    truth = ds.truth
    n_grid = 200
    assert truth["grid_t"].shape == (n_grid,)
    np.testing.assert_array_equal(truth["grid_t"], np.linspace(0.0, 10.0, n_grid))
    assert truth["population_z"].shape == (n_grid, L)
    assert truth["random_intercepts"].shape == (P, L)
    assert truth["z"].shape == (n, L)
    assert truth["instance_labels"].shape == (P,)
    assert truth["instance_labels"][0] == "i000"
    assert str(truth["kernel_name"]) == "se"
    assert float(truth["kernel_variance"]) == 1.0
    assert float(truth["kernel_lengthscale"]) == 1.5
    assert np.isnan(truth["kernel_period"])
    assert ds.n_instances == P
    # The grid index stored in the truth agrees with the row times.
    np.testing.assert_array_equal(truth["grid_index"], _row_grid_index(ds))


def test_times_are_raw_sorted_distinct_and_irregular(ds):
    t = ds.data["t"].to_numpy().reshape(P, T)
    assert (np.diff(t, axis=1) > 0).all()  # sorted, distinct within an instance
    assert t.min() >= 0.0 and t.max() <= 10.0
    assert t.max() > 1.0  # raw units, not rescaled to [0, 1] or standardized
    # Irregular: the instances do not share one set of times.
    assert len({tuple(row) for row in t}) > 1


def test_row_order_by_instance_then_time(ds):
    ids = ds.data["id"].to_numpy()
    labels = ds.truth["instance_labels"]
    np.testing.assert_array_equal(ids, np.repeat(labels, T))
    assert list(labels) == sorted(labels)


def test_split_counts_and_test_rows_are_the_last(ds):
    split = ds.data["split"].to_numpy().reshape(P, T)
    assert set(np.unique(split)) == {"train", "val", "test"}
    n_test_inst = round(0.3 * P)
    has_test = (split == "test").any(axis=1)
    assert has_test.sum() == n_test_inst
    # Test instances: exactly their last N_TEST_TIMES rows are test.
    np.testing.assert_array_equal(
        split[has_test] == "test",
        np.broadcast_to(np.arange(T) >= T - N_TEST_TIMES, (n_test_inst, T)),
    )
    n_rest = P * T - n_test_inst * N_TEST_TIMES
    assert (split == "val").sum() == round(0.15 * n_rest)
    assert (split == "train").sum() == n_rest - round(0.15 * n_rest)
    assert ds.split("test").n_obs == n_test_inst * N_TEST_TIMES


def test_deterministic_in_seed(ds):
    again = make_gp_synthetic(
        n_instances=P, n_times=T, latent_dim=L, obs_dim=D, n_test_times=N_TEST_TIMES, seed=0
    )
    assert again.data.equals(ds.data)
    np.testing.assert_array_equal(again.y, ds.y)
    np.testing.assert_array_equal(again.mask, ds.mask)
    np.testing.assert_array_equal(again.y_true, ds.y_true)
    assert again.truth.keys() == ds.truth.keys()
    for key, value in ds.truth.items():
        np.testing.assert_array_equal(again.truth[key], value, err_msg=key)
    other = make_gp_synthetic(
        n_instances=P, n_times=T, latent_dim=L, obs_dim=D, n_test_times=N_TEST_TIMES, seed=1
    )
    assert not np.array_equal(other.truth["population_z"], ds.truth["population_z"])
    assert not np.array_equal(other.data["t"].to_numpy(), ds.data["t"].to_numpy())
    assert not np.array_equal(other.y_true, ds.y_true)


def test_mask_and_masked_values(ds):
    assert ds.mask.any(axis=1).all()
    assert (ds.y[~ds.mask] == 0.0).all()
    np.testing.assert_array_equal(ds.y[ds.mask], ds.y_true[ds.mask])
    # MCAR at rate q; forcing one entry in all-missing rows changes the rate by q^D / D,
    # negligible here. Binomial SE of the missing fraction: sqrt(q (1 - q) / (N D)).
    q, n_entries = 0.1, ds.mask.size
    assert abs((~ds.mask).mean() - q) < 4 * math.sqrt(q * (1 - q) / n_entries)


def test_every_row_observed_at_high_missing_rate():
    ds = make_gp_synthetic(n_instances=30, obs_dim=3, missing_rate=0.95, seed=2)
    assert ds.mask.any(axis=1).all()


# --------------------------------------------------------------------------- latent model


def test_latent_is_population_plus_intercept_plus_noise():
    s_eps, s_b = 0.05, 0.3
    ds = make_gp_synthetic(
        n_instances=400, latent_noise_std=s_eps, random_intercept_std=s_b, seed=3
    )
    truth = ds.truth
    inst = _instance_index(ds)
    f_rows = truth["population_z"][_row_grid_index(ds)]
    residual = truth["z"] - f_rows - truth["random_intercepts"][inst]
    _variance_ratio_within(residual, s_eps)
    # Residual mean: SE s_eps / sqrt(n).
    assert abs(residual.mean()) < 4 * s_eps / math.sqrt(residual.size)
    _variance_ratio_within(truth["random_intercepts"], s_b)


def test_latent_exact_without_noise():
    ds = make_gp_synthetic(latent_noise_std=0.0, seed=4)
    truth = ds.truth
    f_rows = truth["population_z"][_row_grid_index(ds)]
    residual = truth["z"] - f_rows - truth["random_intercepts"][_instance_index(ds)]
    assert np.max(np.abs(residual)) < 1e-10
    # The intercepts are not zero, so the check above does not pass trivially.
    assert np.abs(truth["random_intercepts"]).min() > 0.0


def test_decoder_reproduces_outputs():
    exact = make_gp_synthetic(noise_std=0.0, seed=5)
    np.testing.assert_allclose(
        synthetic_decoder(exact.truth["z"], exact.truth), exact.y_true, rtol=0, atol=1e-5
    )
    sigma = 0.05
    noisy = make_gp_synthetic(noise_std=sigma, seed=5)
    residual = noisy.y_true.astype(np.float64) - synthetic_decoder(noisy.truth["z"], noisy.truth)
    _variance_ratio_within(residual, sigma)


@pytest.mark.parametrize(
    "kernel",
    [
        Kernel("se", variance=1.0, lengthscale=1.5),
        Kernel("matern12", variance=2.0, lengthscale=0.5),
    ],
    ids=["se", "matern12"],
)
def test_population_draw_has_kernel_covariance(kernel):
    # Many independent latent dimensions give n i.i.d. draws of the GP on the grid. For zero-mean
    # Gaussians (x, y) with Var = k(0) and Cov = k(tau), the known-mean sample covariance
    # mean(x y) has standard error sqrt((k(0)^2 + k(tau)^2) / n).
    n = 4000
    t_max, n_grid = 4.0, 41  # grid step 0.1
    ds = make_gp_synthetic(
        n_instances=2,
        n_times=2,
        n_test_times=1,
        latent_dim=n,
        obs_dim=2,
        kernel=kernel,
        t_max=t_max,
        n_grid=n_grid,
        seed=6,
    )
    f = ds.truth["population_z"]
    assert f.shape == (n_grid, n)
    grid = ds.truth["grid_t"]
    assert str(ds.truth["kernel_name"]) == kernel.name
    assert float(ds.truth["kernel_variance"]) == kernel.variance
    assert float(ds.truth["kernel_lengthscale"]) == kernel.lengthscale
    k0 = float(kernel(0.0))
    for start, lag in [(5, 0), (5, 10), (20, 20)]:
        tau = grid[start + lag] - grid[start]
        k_tau = float(kernel(tau))
        emp = float(np.mean(f[start] * f[start + lag]))
        se = math.sqrt((k0**2 + k_tau**2) / n)
        assert abs(emp - k_tau) < 4 * se, (kernel.name, tau, emp, k_tau, se)


def test_periodic_kernel_period_stored():
    kernel = Kernel("periodic", variance=1.0, lengthscale=0.8, period=3.0)
    ds = make_gp_synthetic(n_instances=5, kernel=kernel, seed=7)
    assert str(ds.truth["kernel_name"]) == "periodic"
    assert float(ds.truth["kernel_period"]) == 3.0
    # A periodic draw repeats: f(t + period) == f(t) up to the Cholesky jitter. The grid step
    # is 10 / 199, so use a grid whose step divides the period.
    ds = make_gp_synthetic(
        n_instances=5, kernel=kernel, t_max=9.0, n_grid=91, latent_noise_std=0.0, seed=7
    )
    f = ds.truth["population_z"]
    shift = 30  # 30 steps of 0.1 = one period
    # Var(f(t + T) - f(t)) = 2 (k(0) - k(T)) + 2 jitter = 2e-8, so the gap is ~1e-4 at most.
    assert np.max(np.abs(f[shift:] - f[:-shift])) < 1e-3
    assert np.max(np.abs(f[1:] - f[:-1])) > 1e-2  # not a constant draw


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"n_times": 201, "n_grid": 200}, ValueError, "n_times"),
        ({"n_times": 5, "n_test_times": 5}, ValueError, "n_test_times"),
        ({"noise_std": -0.1}, ValueError, "noise_std"),
        ({"latent_noise_std": -1.0}, ValueError, "latent_noise_std"),
        ({"random_intercept_std": float("nan")}, ValueError, "random_intercept_std"),
        ({"kernel": "se"}, TypeError, "kernel"),
        ({"t_max": 0.0}, ValueError, "t_max"),
        ({"n_grid": 1}, ValueError, "n_grid"),
        ({"n_instances": 2.5}, ValueError, "n_instances"),
        ({"missing_rate": 1.0}, ValueError, "missing_rate"),
        ({"val_fraction": -0.1}, ValueError, "val_fraction"),
        ({"seed": -1}, ValueError, "seed"),
    ],
)
def test_bad_arguments_raise(kwargs, error, match):
    with pytest.raises(error, match=match):
        make_gp_synthetic(**kwargs)
