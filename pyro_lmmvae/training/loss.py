"""The training objective as a :class:`torch.nn.Module`.

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
