"""Shared fixtures: small synthetic datasets that tests build in memory."""

from __future__ import annotations

import pytest

from pyro_lmmvae.datasets import make_synthetic


@pytest.fixture(scope="session")
def small_synthetic():
    """A small synthetic dataset (40 instances, 10 time points, D = 8)."""
    return make_synthetic(n_instances=40, n_times=10, obs_dim=8, n_test_times=3, seed=1)
