"""Shared fixtures: small synthetic datasets that tests build in memory."""

from __future__ import annotations

import pyro
import pytest
import torch

from pyro_lmmvae.datasets import make_synthetic


@pytest.fixture(scope="session")
def small_synthetic():
    """A small synthetic dataset (40 instances, 10 time points, D = 8)."""
    return make_synthetic(n_instances=40, n_times=10, obs_dim=8, n_test_times=3, seed=1)


@pytest.fixture()
def isolated_pyro():
    """Empty global param store; one intra-op thread (tiny tensors, robust on loaded CPUs)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    pyro.clear_param_store()
    yield
    pyro.clear_param_store()
    torch.set_num_threads(threads)


@pytest.fixture()
def make_lmmvae():
    """Factory of small LMMVAEs on raw-scale covariates: ``make_lmmvae(split, **options)``."""
    from pyro_lmmvae import LMMVAE

    def build(ds, formula: str = "~ 1 + t + g + (1 + t | id)", **options) -> LMMVAE:
        kwargs = dict(latent_dim=2, standardize=False, seed=0) | options
        return LMMVAE(formula, data=ds.data, y=ds.y, mask=ds.mask, **kwargs)

    return build


@pytest.fixture()
def one_thread():
    """One intra-op thread for the test (tiny tensors; robust on a loaded 2-core machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
