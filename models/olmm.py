"""Generative model of the oLMM-VAE (spec §2): one latent per observation.

::

    A_f ~ prior_f,  u_p ~ prior_u                         (MixedEffects; or point estimates)
    z_i | A ~ Normal(A_f x_i + u_{p(i)} w_i, sigma_z^2 I_L)
    y_i | z_i ~ prod_{d observed} p(y_id | g_theta(z_i)_d)

The observations of a batch of whole instances are flattened into ``plate("obs", n, dim=-1)``
under ``poutine.scale(P / B)``; ``z`` has the L latent dims as its event. With the GSNN objective
(spec §4) ``z = eta + sigma_z xi`` is drawn with torch and recorded as a deterministic site.
The plain VAE (empty formula, ``eta = 0``) and the CVAE (``conditional=True``) are this model.
"""

from __future__ import annotations

import pyro
import pyro.distributions as dist
from pyro import poutine

from pyro_lmmvae.data import Batch

from .base import LATENT_SITE, LatentLMMModel, prior_noise


class OLMMModel(LatentLMMModel):
    """The oLMM-VAE generative model as a :class:`~pyro.nn.PyroModule`.

    See :class:`~pyro_lmmvae.models.base.LatentLMMModel` for the parameters.

    Notes
    -----
    Call it with a :class:`~pyro_lmmvae.data.Batch`: ``model(batch)``. The model is a plain
    callable, so ``pyro.infer.SVI(model, guide, optim, TraceMeanField_ELBO())`` works as well as
    the library's loss module.
    """

    def forward(self, batch: Batch) -> None:
        fixed, random = self.effects(batch)
        eta = self.prior_mean(fixed, random, batch)
        sigma_z = self.latent_scale()
        with poutine.scale(scale=batch.scale), pyro.plate("obs", batch.n_rows, dim=-1):
            if self.gsnn:
                z = self.record_latents(eta + sigma_z * prior_noise(eta))
            else:
                z = pyro.sample(LATENT_SITE, dist.Normal(eta, sigma_z).to_event(1))
            self.observe(z, batch)
