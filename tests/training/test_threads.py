"""fit() chooses torch's intra-op threads by network size, only for its own duration."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from pyro_lmmvae import LMMVAE, fitting
from pyro_lmmvae.training import loop


@pytest.fixture()
def small(small_synthetic) -> LMMVAE:
    tr = small_synthetic.split("train")
    return LMMVAE("~ 1 + t + (1 | id)", data=tr.data, y=tr.y, mask=tr.mask, latent_dim=2)


def _threads_during_fit(model: LMMVAE, monkeypatch, **fit_args) -> int:
    seen = []

    def recording_train(*args, **kwargs):
        seen.append(torch.get_num_threads())
        return loop.train(*args, **kwargs)

    monkeypatch.setattr(fitting, "train", recording_train)
    model.fit(max_epochs=1, progress=False, **fit_args)
    return seen[0]


@pytest.fixture()
def two_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


@pytest.mark.usefixtures("two_threads")
def test_small_networks_train_on_one_thread_and_the_setting_is_restored(small, monkeypatch):
    assert _threads_during_fit(small, monkeypatch) == 1
    assert torch.get_num_threads() == 2  # the caller's setting, untouched after fit
    assert _threads_during_fit(small, monkeypatch, threads=2) == 2
    assert torch.get_num_threads() == 2


@pytest.mark.usefixtures("two_threads")
def test_setting_restored_when_fit_fails(small):
    with pytest.raises(ValueError):
        small.fit(max_epochs=1, progress=False, validation=1.5)
    assert torch.get_num_threads() == 2


@pytest.mark.usefixtures("two_threads")
def test_convolutional_networks_keep_torchs_threads():
    rng = np.random.default_rng(0)
    data = pd.DataFrame({"id": np.repeat(["a", "b"], 3), "t": np.tile([0.0, 1.0, 2.0], 2)})
    images = LMMVAE(
        "~ 1 + t + (1 | id)",
        data,
        rng.random((6, 784)),
        latent_dim=4,
        network="rotating_mnist",
        likelihood="bernoulli",
    )
    assert fitting.choose_threads(images) == 2
    assert fitting.choose_threads(images, threads=3) == 3


def test_bad_thread_count_is_a_one_line_error(small):
    with pytest.raises(ValueError, match=r"fit\(threads=0\): threads must be an integer >= 1"):
        small.fit(max_epochs=1, progress=False, threads=0)
