"""The training objectives as :class:`torch.nn.Module` objects.

``ELBOLoss(model, guide)(batch)`` is the negative ELBO estimate of Pyro's
:class:`~pyro.infer.TraceMeanField_ELBO` for one batch (analytic KL for every Normal–Normal pair,
Monte Carlo otherwise), evaluated with module-local parameters. Because it is an ordinary module
whose ``parameters()`` are those of the model and the guide, the same object drives a plain
torch optimizer loop, a Lightning module or DDP (compare Pyro's ``examples/svi_lightning.py``).
"""

from __future__ import annotations

import torch
from pyro.infer import TraceMeanField_ELBO
from torch import nn

from pyro_lmmvae.data import Batch
from pyro_lmmvae.pyro_module import local_params


class ELBOLoss(nn.Module):
    """Negative ELBO of ``(model, guide)`` for a batch, as a differentiable scalar.

    Parameters
    ----------
    model, guide : callable torch.nn.Module
        Pyro model and guide taking a :class:`~pyro_lmmvae.data.Batch`.
    num_particles : int, default 1
        Samples of all latent sites per estimate.
    vectorize_particles : bool, default False
        Draw the particles in one vectorized pass.
    """

    def __init__(
        self,
        model: nn.Module,
        guide: nn.Module,
        num_particles: int = 1,
        vectorize_particles: bool = False,
    ) -> None:
        super().__init__()
        elbo = TraceMeanField_ELBO(
            num_particles=num_particles,
            vectorize_particles=vectorize_particles,
            max_plate_nesting=2,
        )
        self.elbo = elbo(model, guide)

    @property
    def model(self) -> nn.Module:
        """The generative model."""
        return self.elbo.model

    @property
    def guide(self) -> nn.Module:
        """The guide."""
        return self.elbo.guide

    def forward(self, batch: Batch) -> torch.Tensor:
        """Negative ELBO estimate for the batch (per-instance terms scaled by P/B)."""
        with local_params():
            return self.elbo(batch)


class LocalReparamGSNNLoss(nn.Module):
    """Negative GSNN objective of the oLMM-VAE with the local reparameterisation (spec §4).

    Every likelihood term depends on A only through the marginal of ``z_i``, so instead of one
    draw of A per step it draws ``z_i = M x̄_i + sqrt(V (x̄_i ⊙ x̄_i) + sigma_z^2) ⊙ xi_i``
    directly: same objective, lower variance. The effect KLs come from
    :class:`~pyro.infer.TraceMeanField_ELBO` over the effect sites alone (analytic for Normal
    priors)::

        loss = KL(q(A_f) || p(A_f)) + (P/B) sum_p KL(q(u_p) || p(u_p))
               - (P/B) sum_i log p(y_i | z_i)

    Parameters
    ----------
    model : OLMMModel
        A GSNN oLMM model.
    guide : GSNNGuide
        Its guide; with point effects (no q(A)) only the likelihood term remains.
    """

    def __init__(self, model: nn.Module, guide: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.guide = guide
        self.effects_kl = (
            TraceMeanField_ELBO(max_plate_nesting=2)(model.effects, guide.effects)
            if guide.effects is not None
            else None
        )

    def forward(self, batch: Batch) -> torch.Tensor:
        """Negative objective estimate for the batch (per-instance terms scaled by P/B)."""
        with local_params():
            estimates = self.guide.effects if self.guide.effects is not None else self.model.effects
            mean, var = estimates.predictor_moments(batch)
            sigma_z = self.model.latent_scale()
            z = mean + (var + sigma_z.square()).sqrt() * torch.randn_like(mean)
            params = self.model.decode(z, batch)
            log_lik = (self.model.likelihood(params).log_prob(batch.y) * batch.mask).sum()
            loss = -batch.scale * log_lik
            if self.effects_kl is not None:
                loss = loss + self.effects_kl(batch)
            return loss
