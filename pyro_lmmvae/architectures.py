"""The paper's encoder and decoder networks (spec §8), selectable by name.

=====================================  ==========================================  =========
name                                   encoder / decoder                           D
=====================================  ==========================================  =========
``"mlp"``                              MLP D→128→64→2L / L→64→128→D (ELU)           any
``"health_mnist"``                     Table 9: 2 conv + FC / FC + 2 ConvT          1296
``"health_mnist_identifiability"``     Table 9 encoder / FC L→30→300→1000→1200→D   1296
``"rotating_mnist"``                   Table 10: 3 strided conv / upsample + conv  784
``"physionet"``                        Table 11: MLP D→64→32→2L / L→32→64→D        any
=====================================  ==========================================  =========

Every network takes and returns flat rows, as the rest of the library does: an encoder maps
(n, C·D + Q) to (n, 2L) (``[mu, log sigma^2]``), a decoder maps (n, L + Q) to (n, D). C is 2
when the encoder also sees the mask (``mask_channel=True``; the image networks read it as a
second image channel) and Q is the number of covariates a CVAE appends. The image encoders
concatenate the covariates to the flattened convolutional features and the decoders to their
input (spec §8, "CVAE"). Image decoders end in a sigmoid (pixel means in [0, 1]); the
PhysioNet and MLP decoders have a linear output.

Examples
--------
>>> from pyro_lmmvae.architectures import build_networks
>>> encoder, decoder = build_networks("rotating_mnist", obs_dim=784, latent_dim=16)
>>> import torch
>>> encoder(torch.zeros(5, 784)).shape, decoder(torch.zeros(5, 16)).shape
(torch.Size([5, 32]), torch.Size([5, 784]))
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from pyro_lmmvae.networks import MLP, default_decoder, default_encoder

__all__ = ["ARCHITECTURES", "build_networks"]

HEALTH_SIDE = 36
ROTATING_SIDE = 28


class ImageEncoder(nn.Module):
    """A convolutional trunk on ``C`` image channels, then an MLP head on features + covariates.

    Parameters
    ----------
    trunk : torch.nn.Module
        Maps (n, C, side, side) to (n, F, h, w).
    head : torch.nn.Module
        Maps (n, F·h·w + Q) to (n, 2L).
    side : int
        Image side.
    channels : int
        C: 1, or 2 with the mask channel.
    """

    def __init__(self, trunk: nn.Module, head: nn.Module, side: int, channels: int) -> None:
        super().__init__()
        self.trunk, self.head = trunk, head
        self.side, self.channels = side, channels

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        pixels = self.channels * self.side * self.side
        if inputs.shape[-1] < pixels:
            raise ValueError(
                f"image encoder input has {inputs.shape[-1]} features; expected at least "
                f"{pixels} = {self.channels} channel(s) x {self.side} x {self.side}"
            )
        images = inputs[:, :pixels].reshape(-1, self.channels, self.side, self.side)
        features = self.trunk(images).flatten(1)
        if inputs.shape[-1] > pixels:
            features = torch.cat([features, inputs[:, pixels:]], -1)
        return self.head(features)


class ImageDecoder(nn.Module):
    """An MLP stem to a (F, h, w) feature map, then an upsampling trunk to a flat image.

    Parameters
    ----------
    stem : torch.nn.Module
        Maps (n, L + Q) to (n, F·h·w).
    shape : tuple of int
        (F, h, w).
    trunk : torch.nn.Module
        Maps (n, F, h, w) to (n, 1, side, side).
    """

    def __init__(self, stem: nn.Module, shape: tuple[int, int, int], trunk: nn.Module) -> None:
        super().__init__()
        self.stem, self.shape, self.trunk = stem, shape, trunk

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        lead = z.shape[:-1]
        hidden = self.stem(z.reshape(-1, z.shape[-1])).reshape(-1, *self.shape)
        return self.trunk(hidden).reshape(*lead, -1)


def _fc(widths: list[int], activation: type[nn.Module], final: nn.Module | None) -> nn.Sequential:
    """Linear layers through ``widths`` with ``activation`` after each, ``final`` at the end."""
    layers: list[nn.Module] = []
    for a, b in zip(widths[:-1], widths[1:], strict=False):
        layers += [nn.Linear(a, b), activation()]
    if final is None:
        layers.pop()  # linear output
    else:
        layers[-1] = final
    return nn.Sequential(*layers)


def _health_encoder(latent_dim: int, channels: int, n_covariates: int) -> nn.Module:
    """Table 9 encoder: conv3x3 16 + pool, conv3x3 32 + pool (32x9x9), FC 300, 30, 2L."""
    # max-pool then ReLU equals ReLU then max-pool (ReLU is monotone), on a quarter of the values
    trunk = nn.Sequential(
        nn.Conv2d(channels, 16, 3, stride=1, padding=1),
        nn.MaxPool2d(2),
        nn.ReLU(),
        nn.Conv2d(16, 32, 3, stride=1, padding=1),
        nn.MaxPool2d(2),
        nn.ReLU(),
    )
    head = nn.Sequential(
        nn.Linear(32 * 9 * 9 + n_covariates, 300),
        nn.ReLU(),
        nn.Linear(300, 30),
        nn.ReLU(),
        nn.Linear(30, 2 * latent_dim),
    )
    return ImageEncoder(trunk, head, HEALTH_SIDE, channels)


def _health_decoder(latent_dim: int, n_covariates: int) -> nn.Module:
    """Table 9 decoder: FC L→30→300→2592 (32x9x9), ConvT 16, ConvT 1, sigmoid."""
    stem = _fc([latent_dim + n_covariates, 30, 300, 32 * 9 * 9], nn.ReLU, nn.ReLU())
    trunk = nn.Sequential(
        nn.ConvTranspose2d(32, 16, 4, stride=2, padding=1),
        nn.ReLU(),
        nn.ConvTranspose2d(16, 1, 4, stride=2, padding=1),
        nn.Sigmoid(),
    )
    return ImageDecoder(stem, (32, 9, 9), trunk)


def _identifiability_decoder(latent_dim: int, n_covariates: int) -> nn.Module:
    """Table 13 decoder: FC L→30→300→1000→1200→1296, ELU, sigmoid output."""
    widths = [latent_dim + n_covariates, 30, 300, 1000, 1200, HEALTH_SIDE**2]
    return _fc(widths, nn.ELU, nn.Sigmoid())


def _rotating_encoder(latent_dim: int, channels: int, n_covariates: int) -> nn.Module:
    """Table 10 encoder: 3 x [conv3x3 8, stride 2, valid, ELU] (28→13→6→2), linear → 2L."""
    layers: list[nn.Module] = []
    width = channels
    for _ in range(3):
        layers += [nn.Conv2d(width, 8, 3, stride=2), nn.ELU()]
        width = 8
    head = nn.Linear(8 * 2 * 2 + n_covariates, 2 * latent_dim)
    return ImageEncoder(nn.Sequential(*layers), head, ROTATING_SIDE, channels)


def _rotating_decoder(latent_dim: int, n_covariates: int) -> nn.Module:
    """Table 10 decoder: linear → 8x4x4, then upsample+conv "same", "valid", "same" (→ 28)."""
    stem = nn.Linear(latent_dim + n_covariates, 128)
    trunk = nn.Sequential(
        nn.Upsample(scale_factor=2),  # 8
        nn.Conv2d(8, 8, 3, padding=1),
        nn.ELU(),
        nn.Upsample(scale_factor=2),  # 16 → 14 (valid)
        nn.Conv2d(8, 8, 3),
        nn.ELU(),
        nn.Upsample(scale_factor=2),  # 28
        nn.Conv2d(8, 1, 3, padding=1),
        nn.Sigmoid(),
    )
    return ImageDecoder(stem, (8, 4, 4), trunk)


def _physionet_encoder(obs_dim: int, latent_dim: int, channels: int, n_covariates: int):
    """Table 11 encoder: MLP D→64→32→2L, ELU."""
    return MLP(channels * obs_dim + n_covariates, 2 * latent_dim, hidden=(64, 32))


def _physionet_decoder(obs_dim: int, latent_dim: int, n_covariates: int):
    """Table 11 decoder: MLP L→32→64→D, ELU, linear output."""
    return MLP(latent_dim + n_covariates, obs_dim, hidden=(32, 64))


Builder = Callable[[int, int, int, int], tuple[nn.Module, nn.Module]]


def _mlp(d: int, latent: int, channels: int, q: int) -> tuple[nn.Module, nn.Module]:
    return default_encoder(d, latent, channels == 2, q), default_decoder(d, latent, q)


def _health(d: int, latent: int, channels: int, q: int) -> tuple[nn.Module, nn.Module]:
    return _health_encoder(latent, channels, q), _health_decoder(latent, q)


def _identifiability(d: int, latent: int, channels: int, q: int) -> tuple[nn.Module, nn.Module]:
    return _health_encoder(latent, channels, q), _identifiability_decoder(latent, q)


def _rotating(d: int, latent: int, channels: int, q: int) -> tuple[nn.Module, nn.Module]:
    return _rotating_encoder(latent, channels, q), _rotating_decoder(latent, q)


def _physionet(d: int, latent: int, channels: int, q: int) -> tuple[nn.Module, nn.Module]:
    return _physionet_encoder(d, latent, channels, q), _physionet_decoder(d, latent, q)


class IdentityDecoder(nn.Module):
    """``g(z) = z``: with it the LMM-VAE is a linear-Gaussian linear mixed model (needs L = D)."""

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return z


def _identity(d: int, latent: int, channels: int, q: int) -> tuple[nn.Module, nn.Module]:
    if latent != d or q:
        raise ValueError(
            f"network 'identity' decodes z as y itself: it needs latent_dim = D = {d} (got "
            f"{latent}) and no CVAE covariates"
        )
    encoder = nn.Linear(channels * d, 2 * latent)
    with torch.no_grad():  # start at q(z | y) = N(y, 0.01²): z is y, up to a small noise
        encoder.weight.zero_()
        encoder.weight[:latent, :d] = torch.eye(d)
        encoder.bias.zero_()
        encoder.bias[latent:] = 2 * torch.log(torch.tensor(0.01))
    return encoder, IdentityDecoder()


ARCHITECTURES: dict[str, tuple[Builder, int | None]] = {
    "identity": (_identity, None),
    "mlp": (_mlp, None),
    "health_mnist": (_health, HEALTH_SIDE**2),
    "health_mnist_identifiability": (_identifiability, HEALTH_SIDE**2),
    "rotating_mnist": (_rotating, ROTATING_SIDE**2),
    "physionet": (_physionet, None),
}
"""Network name → (builder, the observation dimension it needs, or None for any)."""


def build_networks(
    name: str,
    obs_dim: int,
    latent_dim: int,
    *,
    mask_channel: bool = False,
    n_covariates: int = 0,
) -> tuple[nn.Module, nn.Module]:
    """The encoder and decoder networks of a named architecture (spec §8).

    Parameters
    ----------
    name : str
        One of :data:`ARCHITECTURES`: ``"mlp"``, ``"health_mnist"``,
        ``"health_mnist_identifiability"``, ``"rotating_mnist"``, ``"physionet"``.
    obs_dim : int
        D, the number of features of an observation (pixels for the image networks).
    latent_dim : int
        L; the encoder returns 2L features ``[mu, log sigma^2]``.
    mask_channel : bool, default False
        The encoder also reads the observation mask (a second image channel).
    n_covariates : int, default 0
        Q covariates appended to the encoder features and the decoder input (CVAE).

    Returns
    -------
    (torch.nn.Module, torch.nn.Module)
        Encoder (n, C·D + Q) → (n, 2L) and decoder (..., L + Q) → (..., D).

    Raises
    ------
    ValueError
        For an unknown name, or an image network given the wrong number of pixels.
    """
    if name not in ARCHITECTURES:
        raise ValueError(f"unknown network {name!r}; choose one of {sorted(ARCHITECTURES)}")
    builder, needed = ARCHITECTURES[name]
    if needed is not None and obs_dim != needed:
        raise ValueError(
            f"network {name!r} is built for D = {needed} features per observation "
            f"({int(needed**0.5)}x{int(needed**0.5)} images), but the data have D = {obs_dim}"
        )
    for label, value, low in (("latent_dim", latent_dim, 1), ("n_covariates", n_covariates, 0)):
        if not isinstance(value, int) or value < low:
            raise ValueError(f"{label} must be an integer >= {low}, got {value!r}")
    return builder(obs_dim, latent_dim, 2 if mask_channel else 1, n_covariates)
