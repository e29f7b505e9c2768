"""Guide of the oLMM-VAE: q(A_f) q(u_p) mean-field, and the amortized encoder q(z_i | y_i).

The encoder sees ``m_i ⊙ y_i`` (optionally with the mask, and with the covariates for the CVAE)
and never the sampled effects, so the guide stays mean-field as
:class:`~pyro.infer.TraceMeanField_ELBO` requires.
"""

from __future__ import annotations

import pyro
import pyro.distributions as dist
from pyro import poutine

from pyro_lmmvae.data import Batch
from pyro_lmmvae.models import LATENT_SITE
from pyro_lmmvae.networks import GaussianEncoder
from pyro_lmmvae.pyro_module import LocalPyroModule

from .effects import MeanFieldEffects


class OLMMGuide(LocalPyroModule):
    """Mean-field effects plus an amortized Gaussian encoder.

    Parameters
    ----------
    effects : MeanFieldEffects or None
        q(A_f) and q(u_p); None when the model holds A as point estimates.
    encoder : GaussianEncoder
        Maps masked observations to the mean and scale of q(z_i | y_i).
    """

    def __init__(self, effects: MeanFieldEffects | None, encoder: GaussianEncoder) -> None:
        super().__init__()
        self.effects = effects
        self.encoder = encoder

    def with_effects(self, effects: MeanFieldEffects | None, eta_source=None) -> OLMMGuide:
        """The same encoder over other effect factors (e.g. of new instances)."""
        return OLMMGuide(effects, self.encoder)

    def forward(self, batch: Batch) -> None:
        if self.effects is not None:
            self.effects(batch)
        loc, scale = self.encoder.encode(batch)
        with poutine.scale(scale=batch.scale), pyro.plate("obs", batch.n_rows, dim=-1):
            pyro.sample(LATENT_SITE, dist.Normal(loc, scale).to_event(1))
