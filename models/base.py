"""What every generative model of the family shares: effects, sigma_z, decoder and likelihood.

A model computes the linear predictor ``eta_i = A_f x_i + u_{p(i)} w_i`` from its effects
(Bayesian sample sites or point estimates), adds latent noise in a variant-specific way (per
observation for oLMM, per instance for sLMM) and observes ``y`` through the decoder. With
``conditional=True`` the decoder also sees the fixed-effect covariates, ``g(z, x)`` (the CVAE).
"""

from __future__ import annotations

import pyro
import torch
from pyro.poutine.runtime import get_plates
from torch import nn
from torch.nn import functional as F

from pyro_lmmvae.data import Batch
from pyro_lmmvae.pyro_module import LocalPyroModule

from .effects import MixedEffects, PointEffects, linear_predictor
from .likelihoods import Likelihood

LATENT_SITE = "z"
OBS_SITE = "y"
OBJECTIVES = ("elbo", "gsnn")


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


def prior_noise(like: torch.Tensor, event_dims: int = 1) -> torch.Tensor:
    """Standard normal draws shaped like ``like``, widened to every enclosing plate.

    The GSNN draws its latent noise with torch rather than at a sample site (spec §4), so Pyro
    cannot broadcast it; this reads the active plates (vectorized particles included) so that
    each particle gets its own draw.

    Parameters
    ----------
    like : torch.Tensor
        Gives dtype, device and the minimal shape, (*batch, *event).
    event_dims : int, default 1
        Trailing dims of ``like`` that are not plate dims.
    """
    event = like.shape[like.dim() - event_dims :]
    batch = list(like.shape[: like.dim() - event_dims])
    for frame in get_plates():
        if frame.dim is None:
            continue
        if -frame.dim > len(batch):
            batch = [1] * (-frame.dim - len(batch)) + batch
        batch[frame.dim] = frame.size
    return torch.randn(*batch, *event, dtype=like.dtype, device=like.device)


def with_covariates(inputs: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``[inputs, x]`` along the last dim, broadcasting ``x`` (n, Q) over leading sample dims."""
    return torch.cat([inputs, x.expand(*inputs.shape[:-1], x.shape[-1])], -1)


class LatentLMMModel(LocalPyroModule):
    """Base of the generative models: the parts shared by oLMM, sLMM and the baselines.

    Parameters
    ----------
    effects : MixedEffects or PointEffects
        Bayesian effects (sample sites with priors) or point estimates (no prior term).
    decoder : torch.nn.Module
        g_theta, maps (..., L) latents (or (..., L + Q_f) with ``conditional``) to (..., D)
        likelihood parameters.
    likelihood : Likelihood
        Observation model.
    latent_scale : LatentScale, optional
        sigma_z; fixed at 1 by default.
    objective : {"elbo", "gsnn"}, default "elbo"
        With ``"gsnn"`` the latent noise is drawn with torch and ``z`` is recorded with
        :func:`pyro.deterministic`: the guide is the prior, so no latent KL enters the loss.
    conditional : bool, default False
        Decode ``[z, x]`` instead of ``z`` (CVAE).
    """

    def __init__(
        self,
        effects: MixedEffects | PointEffects,
        decoder: nn.Module,
        likelihood: Likelihood,
        latent_scale: LatentScale | None = None,
        *,
        objective: str = "elbo",
        conditional: bool = False,
    ) -> None:
        super().__init__()
        if objective not in OBJECTIVES:
            raise ValueError(f"objective must be one of {OBJECTIVES}, got {objective!r}")
        self.effects = effects
        self.decoder = decoder
        self.likelihood = likelihood
        self.latent_scale = latent_scale if latent_scale is not None else LatentScale()
        self.objective = objective
        self.conditional = conditional

    @property
    def latent_dim(self) -> int:
        """L."""
        return self.effects.latent_dim

    @property
    def gsnn(self) -> bool:
        """Whether the model is trained with the GSNN objective."""
        return self.objective == "gsnn"

    def with_effects(self, effects: MixedEffects | PointEffects) -> LatentLMMModel:
        """The same model (shared networks and sigma_z) over other effects, e.g. new instances."""
        return type(self)(
            effects,
            self.decoder,
            self.likelihood,
            self.latent_scale,
            objective=self.objective,
            conditional=self.conditional,
        )

    def prior_mean(self, fixed: torch.Tensor | None, random: torch.Tensor | None, batch: Batch):
        """``eta`` for the batch, or zeros when the formula is empty (a plain VAE)."""
        eta = linear_predictor(fixed, random, batch)
        if eta is None:
            eta = batch.y.new_zeros(batch.n_rows, self.latent_dim)
        return eta

    def decode(self, z: torch.Tensor, batch: Batch) -> torch.Tensor:
        """Likelihood parameters ``g(z)`` (or ``g(z, x)`` when conditional), (..., n, D)."""
        return self.decoder(with_covariates(z, batch.x) if self.conditional else z)

    def observe(self, z: torch.Tensor, batch: Batch) -> None:
        """The masked likelihood site ``y`` given latents (inside the obs plate)."""
        obs_dist = self.likelihood(self.decode(z, batch)).mask(batch.mask).to_event(1)
        pyro.sample(OBS_SITE, obs_dist, obs=batch.y)

    def record_latents(self, z: torch.Tensor) -> torch.Tensor:
        """GSNN: keep ``z`` in the trace as a deterministic site (no log-density term)."""
        return pyro.deterministic(LATENT_SITE, z, event_dim=1)
