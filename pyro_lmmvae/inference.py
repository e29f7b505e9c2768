"""What a fitted oLMM-VAE computes: validation objective, latents, imputation, prediction.

:class:`OLMMVariationalPair` holds the Pyro model and guide and implements spec §5 for the
oLMM-VAE: imputation ``g(mu_phi(y~_i))``, prediction ``g(M_f x* + E[u_p] w*)``, and the
closed-form validation objective.
"""

from __future__ import annotations

import torch
from torch import nn

from pyro_lmmvae.data import Batch
from pyro_lmmvae.guides import OLMMGuide
from pyro_lmmvae.models import OLMMModel
from pyro_lmmvae.objectives import expected_latent_kl
from pyro_lmmvae.pyro_module import local_params


class OLMMVariationalPair(nn.Module):
    """The oLMM-VAE model and guide, with the computations made from them.

    Parameters
    ----------
    model : OLMMModel
    guide : OLMMGuide
    """

    def __init__(self, model: OLMMModel, guide: OLMMGuide) -> None:
        super().__init__()
        self.model = model
        self.guide = guide

    def row_objective(self, batch: Batch, generator: torch.Generator | None = None) -> torch.Tensor:
        """Per-row negative ELBO terms ``−E log p(y_i|z_i) + E_q(A) KL_i``, shape (n,).

        The expected KL is the closed form of spec §2; the log-likelihood uses one
        reparameterised draw of ``z_i`` from ``generator``. Effect-prior KLs are excluded, so the
        value is comparable across data sets of any size (used as the validation objective).
        """
        with local_params():
            loc, scale = self.guide.encoder(batch.encoder_input, batch.mask)
            eta_mean, eta_var = self.guide.effects.predictor_moments(batch)
            kl = expected_latent_kl(loc, scale, eta_mean, eta_var, self.model.latent_scale())
            noise = torch.randn(loc.shape, generator=generator, device="cpu").to(loc.device)
            z = loc + scale * noise
            log_lik = self.model.likelihood(self.model.decoder(z)).log_prob(batch.y)
            log_lik = (log_lik * batch.mask).sum(-1)
        return kl - log_lik

    def latent_mean(self, batch: Batch) -> torch.Tensor:
        """Posterior mean of the latents ``mu_phi(y~_i)``, (n, L)."""
        with local_params():
            return self.guide.encoder(batch.encoder_input, batch.mask)[0]

    def decode_mean(self, z: torch.Tensor) -> torch.Tensor:
        """Expected observation ``E[y | z]`` under the likelihood, (n, D)."""
        with local_params():
            return self.model.likelihood.mean(self.model.decoder(z))

    def impute(self, batch: Batch) -> torch.Tensor:
        """Reconstruction ``g(mu_phi(y~_i))`` of every entry of the batch's rows, (n, D)."""
        return self.decode_mean(self.latent_mean(batch))

    def prior_latent_mean(self, batch: Batch) -> torch.Tensor:
        """``M_f x + E[u_p] w``: the latent mean at the rows' covariates, (n, L)."""
        with local_params():
            return self.guide.effects.predictor_moments(batch)[0]

    def predict(self, batch: Batch) -> torch.Tensor:
        """Conditional generation ``g(M_f x* + E[u_p] w*)`` at the batch's covariates, (n, D)."""
        return self.decode_mean(self.prior_latent_mean(batch))
