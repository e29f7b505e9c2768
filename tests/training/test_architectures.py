"""The paper's networks (spec §8): shapes, options, and use as any variant's encoder/decoder."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from pyro_lmmvae import LMMVAE
from pyro_lmmvae.architectures import ARCHITECTURES, build_networks

LATENT = 3
CASES = [
    ("mlp", 37),
    ("health_mnist", 1296),
    ("health_mnist_identifiability", 1296),
    ("rotating_mnist", 784),
    ("physionet", 37),
]


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    yield
    torch.set_num_threads(threads)


def test_every_architecture_is_covered():
    assert sorted([*(name for name, _ in CASES), "identity"]) == sorted(ARCHITECTURES)


@pytest.mark.parametrize("mask_channel", [False, True])
def test_identity_network_starts_at_z_equal_y(mask_channel):
    encoder, decoder = build_networks("identity", 3, 3, mask_channel=mask_channel)
    y = torch.randn(5, 3)
    x = torch.cat([y, torch.ones(5, 3)], -1) if mask_channel else y
    out = encoder(x)
    torch.testing.assert_close(out[:, :3], y)  # q(z | y) = N(y, 0.01^2) at the start
    torch.testing.assert_close(out[:, 3:], torch.full((5, 3), 2 * np.log(0.01)))
    assert torch.equal(decoder(y), y)
    with pytest.raises(ValueError, match="latent_dim = D = 3"):
        build_networks("identity", 3, 2)
    with pytest.raises(ValueError, match="no CVAE covariates"):
        build_networks("identity", 3, 3, n_covariates=1)


@pytest.mark.parametrize("name, obs_dim", CASES)
@pytest.mark.parametrize("mask_channel", [False, True])
@pytest.mark.parametrize("n_covariates", [0, 5])
def test_maps_data_to_2l_and_back(name, obs_dim, mask_channel, n_covariates):
    encoder, decoder = build_networks(
        name, obs_dim, LATENT, mask_channel=mask_channel, n_covariates=n_covariates
    )
    n = 4
    width = obs_dim * (2 if mask_channel else 1) + n_covariates
    out = encoder(torch.rand(n, width))
    assert out.shape == (n, 2 * LATENT)
    recon = decoder(torch.randn(n, LATENT + n_covariates))
    assert recon.shape == (n, obs_dim)
    # Decoders accept leading sample dimensions (Monte Carlo particles).
    assert decoder(torch.randn(2, n, LATENT + n_covariates)).shape == (2, n, obs_dim)
    assert torch.isfinite(out).all() and torch.isfinite(recon).all()


@pytest.mark.parametrize("name, obs_dim", CASES)
def test_covariates_reach_encoder_and_decoder(name, obs_dim):
    encoder, decoder = build_networks(name, obs_dim, LATENT, n_covariates=2)
    y = torch.rand(3, obs_dim)
    x0, x1 = torch.zeros(3, 2), torch.ones(3, 2)
    assert not torch.allclose(encoder(torch.cat([y, x0], -1)), encoder(torch.cat([y, x1], -1)))
    z = torch.randn(3, LATENT)
    assert not torch.allclose(decoder(torch.cat([z, x0], -1)), decoder(torch.cat([z, x1], -1)))


def test_spec_intermediate_shapes():
    health, _ = build_networks("health_mnist", 1296, LATENT)
    assert health.trunk(torch.rand(2, 1, 36, 36)).shape == (2, 32, 9, 9)  # Table 9: 32x9x9
    rotating, rot_decoder = build_networks("rotating_mnist", 784, LATENT)
    assert rotating.trunk(torch.rand(2, 1, 28, 28)).shape == (2, 8, 2, 2)  # 28→13→6→2
    assert rot_decoder.stem.out_features == 128  # linear L → 128 = 8x4x4
    _, identifiability = build_networks("health_mnist_identifiability", 1296, LATENT)
    widths = [m.out_features for m in identifiability if isinstance(m, torch.nn.Linear)]
    assert widths == [30, 300, 1000, 1200, 1296]  # Table 13 plus the final 1296 layer
    encoder, decoder = build_networks("physionet", 37, LATENT)
    assert [m.out_features for m in encoder if isinstance(m, torch.nn.Linear)] == [64, 32, 6]
    assert [m.out_features for m in decoder if isinstance(m, torch.nn.Linear)] == [32, 64, 37]


@pytest.mark.parametrize("name, obs_dim", CASES)
def test_output_ranges(name, obs_dim):
    _, decoder = build_networks(name, obs_dim, LATENT)
    out = decoder(10 * torch.randn(64, LATENT))
    if name.startswith(("health", "rotating")):  # sigmoid pixel means
        assert out.min() >= 0 and out.max() <= 1
    else:  # linear output for standardized data
        assert out.min() < 0 < out.max()


def test_mask_channel_is_read():
    encoder, _ = build_networks("health_mnist", 1296, LATENT, mask_channel=True)
    y = torch.rand(2, 1296)
    ones, zeros = torch.ones(2, 1296), torch.zeros(2, 1296)
    assert not torch.allclose(encoder(torch.cat([y, ones], -1)), encoder(torch.cat([y, zeros], -1)))


def test_bad_names_and_sizes():
    with pytest.raises(ValueError, match="unknown network 'resnet'"):
        build_networks("resnet", 784, LATENT)
    with pytest.raises(ValueError, match="built for D = 784.*D = 1296"):
        build_networks("rotating_mnist", 1296, LATENT)
    with pytest.raises(ValueError, match="latent_dim"):
        build_networks("physionet", 37, 0)
    encoder, _ = build_networks("rotating_mnist", 784, LATENT)
    with pytest.raises(ValueError, match="expected at least 784"):
        encoder(torch.rand(2, 100))


def _images(n_instances: int, n_times: int, side: int):
    rng = np.random.default_rng(0)
    n = n_instances * n_times
    data = pd.DataFrame(
        {
            "id": np.repeat([f"p{i}" for i in range(n_instances)], n_times),
            "t": np.tile(np.arange(n_times, dtype=float), n_instances),
        }
    )
    y = rng.uniform(size=(n, side * side)).astype(np.float32)
    mask = rng.uniform(size=y.shape) > 0.2
    return data, y, mask


@pytest.mark.parametrize(
    "variant, objective, formula",
    [
        ("olmm", "elbo", "~ 1 + t + (1 | id)"),
        ("slmm", "elbo", "~ 1 + t"),
        ("slmm", "gsnn", "~ 1 + t + (1 | id)"),
        ("cvae", "elbo", "~ 1 + t"),
    ],
)
def test_named_network_trains_in_every_variant(variant, objective, formula):
    data, y, mask = _images(4, 3, 28)
    model = LMMVAE(
        formula,
        data,
        y,
        mask,
        latent_dim=LATENT,
        variant=variant,
        objective=objective,
        instance="id",
        network="rotating_mnist",
        noise_scale=0.1,
        standardize=False,
    )
    decoder = model.model.decoder
    assert any(isinstance(m, torch.nn.Conv2d) for m in decoder.modules())
    model.fit(max_epochs=2, batch_size=2, validation=None, progress=False)
    assert np.isfinite(model.history.train_loss).all()
    assert model.predict(data).shape == y.shape


def test_named_network_must_fit_the_data():
    data, y, mask = _images(2, 2, 28)
    with pytest.raises(ValueError, match="'health_mnist' is built for D = 1296"):
        LMMVAE("~ 1 + t", data, y, mask, latent_dim=2, network="health_mnist")
