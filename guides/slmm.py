"""Guide of the sLMM-VAE (spec §3): the amortized group encoder q(eps_p | y_p).

Every row of an instance is encoded with the per-observation network, its residual against the
linear predictor ``r_i = mu_phi(y~_i) - eta_i`` is formed (eta at the point estimate of A, or at
the mean M of q(A) with Bayesian effects; gradients flow into A through both the encoder and the
decoder paths), and the rows are pooled per instance by a segment sum
(:mod:`~pyro_lmmvae.guides.pooling`). Pooling needs all rows of each instance, so a batch that
splits an instance is rejected.
"""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import torch

from pyro_lmmvae.data import Batch
from pyro_lmmvae.models import OFFSET_SITE, EffectPlates, LatentScale, PointEffects
from pyro_lmmvae.networks import GaussianEncoder
from pyro_lmmvae.pyro_module import LocalPyroModule

from .effects import MeanFieldEffects
from .pooling import POOLINGS, pool_mean, pool_precision


class SLMMGuide(LocalPyroModule):
    """Group encoder for the per-instance offsets, plus q(A) with Bayesian effects.

    Parameters
    ----------
    effects : MeanFieldEffects or None
        q(A_f) and q(u_p) with Bayesian effects; None when A is a point estimate.
    eta_source : PointEffects or MeanFieldEffects
        Gives the linear predictor of the residuals: the model's point estimates (shared
        module) or ``effects``.
    encoder : GaussianEncoder
        The per-observation network.
    latent_scale : LatentScale
        The model's sigma_z (shared), for ``include_prior_precision``.
    pooling : {"precision", "mean"}, default "precision"
    include_prior_precision : bool, default False
        Add sigma_z^-2 to the pooled precision.
    """

    def __init__(
        self,
        effects: MeanFieldEffects | None,
        eta_source: PointEffects | MeanFieldEffects,
        encoder: GaussianEncoder,
        latent_scale: LatentScale,
        pooling: str = "precision",
        include_prior_precision: bool = False,
    ) -> None:
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
        if include_prior_precision and pooling != "precision":
            raise ValueError("include_prior_precision applies to pooling='precision' only")
        self.effects = effects
        self.eta_source = eta_source
        self.encoder = encoder
        self.latent_scale = latent_scale
        self.pooling = pooling
        self.include_prior_precision = include_prior_precision

    def with_effects(self, effects: MeanFieldEffects | None, eta_source) -> SLMMGuide:
        """The same group encoder over other effects (e.g. of new instances)."""
        return SLMMGuide(
            effects,
            eta_source,
            self.encoder,
            self.latent_scale,
            self.pooling,
            self.include_prior_precision,
        )

    def offsets(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """``(m_p, s_p)`` of q(eps_p) for the batch's instances, each (B, L)."""
        if not batch.whole_instances:
            raise ValueError(
                "the sLMM-VAE pools all rows of an instance, but this batch holds only some "
                "rows of at least one of its instances; batch whole instances (InstanceBatcher) "
                "or pass all rows of each instance"
            )
        loc, scale = self.encoder.encode(batch)
        eta = self.eta_source.predictor_moments(batch)[0]
        n_inst = len(batch.instances)
        if self.pooling == "mean":
            return pool_mean(loc - eta, scale, batch.local, n_inst)
        prior_precision = (
            self.latent_scale().square().reciprocal() if self.include_prior_precision else None
        )
        return pool_precision(loc - eta, scale, batch.local, n_inst, prior_precision)

    def forward(self, batch: Batch) -> None:
        plates = EffectPlates(batch, self.encoder.latent_dim)
        if self.effects is not None:
            self.effects(batch, plates)
        mean, scale = self.offsets(batch)
        with plates.instances, plates.latent:
            pyro.sample(OFFSET_SITE, dist.Normal(mean, scale))
