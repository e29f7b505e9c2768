"""Default encoder and decoder networks, and the Gaussian encoder head convention.

An encoder is any :class:`torch.nn.Module` mapping the encoder input (n, D_in) to either a tensor
(n, 2L) holding ``[mu, log sigma^2]`` or a tuple ``(mu, log sigma^2)``. A decoder maps (..., L)
to (..., D) likelihood parameters (means for a Gaussian likelihood, logits for Bernoulli).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class MLP(nn.Sequential):
    """Fully connected network ``in -> hidden... -> out`` with an activation between layers.

    Parameters
    ----------
    in_dim, out_dim : int
    hidden : sequence of int, default (64, 64)
    activation : type of torch.nn.Module, default torch.nn.ELU
    """

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        hidden: Sequence[int] = (64, 64),
        activation: type[nn.Module] = nn.ELU,
    ) -> None:
        layers: list[nn.Module] = []
        width = in_dim
        for h in hidden:
            layers += [nn.Linear(width, h), activation()]
            width = h
        layers.append(nn.Linear(width, out_dim))
        super().__init__(*layers)


class GaussianEncoder(nn.Module):
    """Wraps a network whose output holds ``[mu, log sigma^2]`` and returns (mu, sigma).

    Parameters
    ----------
    network : torch.nn.Module
        Maps (n, D_in) to (n, 2L) or to a tuple (mu, log sigma^2).
    latent_dim : int
        L.
    mask_channel : bool, default False
        Append the mask to the (masked) observations as extra input features (spec §5).
    conditional : bool, default False
        Append the fixed-effect covariates ``x`` as extra input features (CVAE).
    """

    def __init__(
        self,
        network: nn.Module,
        latent_dim: int,
        mask_channel: bool = False,
        conditional: bool = False,
    ) -> None:
        super().__init__()
        self.network = network
        self.latent_dim = latent_dim
        self.mask_channel = mask_channel
        self.conditional = conditional

    def encode(self, batch) -> tuple[torch.Tensor, torch.Tensor]:
        """(mu, sigma) of q(z_i | y_i) for the rows of a :class:`~pyro_lmmvae.data.Batch`."""
        return self(batch.encoder_input, batch.mask, batch.x if self.conditional else None)

    def forward(
        self, y_masked: torch.Tensor, mask: torch.Tensor, covariates: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        parts = [y_masked]
        if self.mask_channel:
            parts.append(mask.to(y_masked.dtype))
        if self.conditional:
            if covariates is None:
                raise ValueError("a conditional (CVAE) encoder needs the covariates x")
            parts.append(covariates.to(y_masked.dtype))
        out = self.network(torch.cat(parts, -1) if len(parts) > 1 else y_masked)
        if isinstance(out, tuple):
            loc, log_var = out
        else:
            if out.shape[-1] != 2 * self.latent_dim:
                raise ValueError(
                    f"encoder output has {out.shape[-1]} features; expected 2 * latent_dim = "
                    f"{2 * self.latent_dim} ([mu, log sigma^2])"
                )
            loc, log_var = out.split(self.latent_dim, dim=-1)
        return loc, torch.exp(0.5 * log_var)


def default_encoder(
    obs_dim: int, latent_dim: int, mask_channel: bool = False, n_covariates: int = 0
) -> nn.Module:
    """MLP encoder D(+D)(+Q) -> 128 -> 64 -> 2L with ELU activations."""
    in_dim = obs_dim * (2 if mask_channel else 1) + n_covariates
    return MLP(in_dim, 2 * latent_dim, hidden=(128, 64))


def default_decoder(obs_dim: int, latent_dim: int, n_covariates: int = 0) -> nn.Module:
    """MLP decoder L(+Q) -> 64 -> 128 -> D with ELU activations and linear output."""
    return MLP(latent_dim + n_covariates, obs_dim, hidden=(64, 128))
