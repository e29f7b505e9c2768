"""Generative model of the sLMM-VAE (spec §3): one latent offset per instance.

::

    eps_p ~ Normal(0, sigma_z^2 I_L)                      one per instance, shared by its rows
    z_i = A_f x_i + u_{p(i)} w_i + eps_{p(i)}              no per-observation noise
    y_i | z_i ~ prod_{d observed} p(y_id | g_theta(z_i)_d)

``eps`` is sampled in ``plate("instances", P, subsample=batch.instances, dim=-2)`` × the latent
plate, whose subsampling scales its KL by P/B; ``y`` sits in the obs plate under
``poutine.scale(P / B)``. A and theta are point estimates by default
(:class:`~pyro_lmmvae.models.effects.PointEffects`). With the GSNN objective ``eps`` is drawn
from its prior with torch and ``z`` is recorded as a deterministic site (spec §4).
"""

from __future__ import annotations

import pyro
import pyro.distributions as dist
from pyro import poutine

from pyro_lmmvae.data import Batch

from .base import LatentLMMModel, prior_noise
from .effects import EffectPlates, gather_rows

OFFSET_SITE = "eps"


class SLMMModel(LatentLMMModel):
    """The sLMM-VAE generative model as a :class:`~pyro.nn.PyroModule`.

    See :class:`~pyro_lmmvae.models.base.LatentLMMModel` for the parameters. Batches must hold
    whole instances (every row of each of their instances).
    """

    def forward(self, batch: Batch) -> None:
        plates = EffectPlates(batch, self.latent_dim)
        fixed, random = self.effects(batch, plates)
        eta = self.prior_mean(fixed, random, batch)
        sigma_z = self.latent_scale()
        with plates.instances, plates.latent:
            if self.gsnn:
                eps = sigma_z * prior_noise(eta.new_zeros(len(batch.instances), self.latent_dim), 0)
            else:
                prior = dist.Normal(eta.new_zeros(()), sigma_z)
                eps = pyro.sample(
                    OFFSET_SITE, prior.expand((len(batch.instances), self.latent_dim))
                )
        z = eta + gather_rows(eps, batch.local)
        with poutine.scale(scale=batch.scale), pyro.plate("obs", batch.n_rows, dim=-1):
            if self.gsnn:
                z = self.record_latents(z)
            self.observe(z, batch)
