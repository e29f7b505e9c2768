"""Generative model of the oLMM-VAE (spec §2): one latent per observation.

::

    A_f ~ prior_f,  u_p ~ prior_u                         (MixedEffects)
    z_i | A ~ Normal(A_f x_i + u_{p(i)} w_i, sigma_z^2 I_L)
    y_i | z_i ~ prod_{d observed} p(y_id | g_theta(z_i)_d)

The observations of a batch of whole instances are flattened into ``plate("obs", n, dim=-1)``
under ``poutine.scale(P / B)``; ``z`` has the L latent dims as its event.
"""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from torch import nn
from torch.nn import functional as F

from pyro_lmmvae.data import Batch
from pyro_lmmvae.pyro_module import LocalPyroModule

from .effects import MixedEffects, linear_predictor
from .likelihoods import Likelihood

LATENT_SITE = "z"
OBS_SITE = "y"


class LatentScale(nn.Module):
    """The prior standard deviation sigma_z of the latent noise: fixed, or learned via softplus."""

    def __init__(self, init: float = 1.0, learned: bool = False) -> None:
        super().__init__()
        if not init > 0:
            raise ValueError(f"latent_scale must be positive, got {init}")
        raw = torch.log(torch.expm1(torch.tensor(float(init))))
        if learned:
            self.raw = nn.Parameter(raw)
        else:
            self.register_buffer("raw", raw)

    def forward(self) -> torch.Tensor:
        return F.softplus(self.raw)


class OLMMModel(LocalPyroModule):
    """The oLMM-VAE generative model as a :class:`~pyro.nn.PyroModule`.

    Parameters
    ----------
    effects : MixedEffects
        Effect priors and dimensions.
    decoder : torch.nn.Module
        g_theta, maps (..., L) latents to (..., D) likelihood parameters.
    likelihood : Likelihood
        Observation model.
    latent_scale : LatentScale, optional
        sigma_z; fixed at 1 by default.

    Notes
    -----
    Call it with a :class:`~pyro_lmmvae.data.Batch`: ``model(batch)``. The model is a plain
    callable, so ``pyro.infer.SVI(model, guide, optim, TraceMeanField_ELBO())`` works as well as
    the library's loss module.
    """

    def __init__(
        self,
        effects: MixedEffects,
        decoder: nn.Module,
        likelihood: Likelihood,
        latent_scale: LatentScale | None = None,
    ) -> None:
        super().__init__()
        self.effects = effects
        self.decoder = decoder
        self.likelihood = likelihood
        self.latent_scale = latent_scale if latent_scale is not None else LatentScale()

    @property
    def latent_dim(self) -> int:
        """L."""
        return self.effects.latent_dim

    def prior_mean(self, fixed: torch.Tensor | None, random: torch.Tensor | None, batch: Batch):
        """``eta`` for the batch, or zeros when the formula is empty (a plain VAE)."""
        eta = linear_predictor(fixed, random, batch)
        if eta is None:
            eta = batch.y.new_zeros(batch.n_rows, self.latent_dim)
        return eta

    def observe(self, z: torch.Tensor, batch: Batch) -> None:
        """The masked likelihood site ``y`` given latents (inside the obs plate)."""
        obs_dist = self.likelihood(self.decoder(z)).mask(batch.mask).to_event(1)
        pyro.sample(OBS_SITE, obs_dist, obs=batch.y)

    def forward(self, batch: Batch) -> None:
        fixed, random = self.effects(batch)
        eta = self.prior_mean(fixed, random, batch)
        sigma_z = self.latent_scale()
        with poutine.scale(scale=batch.scale), pyro.plate("obs", batch.n_rows, dim=-1):
            z = pyro.sample(LATENT_SITE, dist.Normal(eta, sigma_z).to_event(1))
            self.observe(z, batch)
