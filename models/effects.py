"""The latent linear mixed model shared by every variant: effect sites and linear predictor.

``eta_i = A_f x_i + u_{p(i)} w_i`` (spec §1). The fixed effects ``A_f`` (L, Q_f) are sampled in
``plate("latent", L, dim=-1)`` with the Q_f columns as the event; the random effects ``u``
(P, L, k) in ``plate("instances", P, subsample=batch.instances, dim=-2)`` × the latent plate,
with the k expression columns as the event. The instance plate scales their prior terms by P/B.
The random effects of a row are gathered by its instance index: never a dense one-hot product.
"""

from __future__ import annotations

import pyro
import torch

from pyro_lmmvae.data import Batch
from pyro_lmmvae.priors import EffectPrior, as_prior
from pyro_lmmvae.pyro_module import LocalPyroModule

FIXED_SITE = "fixed_effects"
RANDOM_SITE = "random_effects"


def linear_predictor(
    fixed: torch.Tensor | None, random: torch.Tensor | None, batch: Batch
) -> torch.Tensor:
    """``eta = A_f x + u[local] w`` for the batch's rows, shape (..., n, L).

    Parameters
    ----------
    fixed : torch.Tensor or None
        Fixed effects, (..., L, Q_f); leading dims (e.g. vectorized particles) broadcast.
    random : torch.Tensor or None
        Random effects of the batch's instances, (..., B, L, k).
    batch : Batch
    """
    eta = None
    if fixed is not None and fixed.shape[-1] > 0:
        eta = torch.einsum("...lq,nq->...nl", fixed, batch.x)
    if random is not None and random.shape[-1] > 0:
        gathered = random.index_select(-3, batch.local)  # (..., n, L, k)
        eta_r = torch.einsum("...nlk,nk->...nl", gathered, batch.w)
        if random.dim() > 3:  # particle dims sit left of the instance plate
            eta_r = eta_r.unsqueeze(-3)
        eta = eta_r if eta is None else eta + eta_r
    return eta


class MixedEffects(LocalPyroModule):
    """Priors on the fixed and random effects, sampled as Pyro sites.

    Parameters
    ----------
    latent_dim : int
        L.
    n_fixed : int
        Q_f, number of fixed-effect columns (0 for none).
    n_random : int
        k, number of random-effect expression columns (0 for none).
    n_groups : int
        P, number of instances with random effects.
    fixed_prior, random_prior : EffectPrior or pyro distribution, optional
        Priors on the entries; Normal(0, 1) by default. Swap them at any time by assigning
        ``effects.fixed_prior = dist.Laplace(0., 1.)`` (distributions are wrapped by
        :func:`~pyro_lmmvae.priors.as_prior`).
    """

    def __init__(
        self,
        latent_dim: int,
        n_fixed: int,
        n_random: int,
        n_groups: int,
        fixed_prior: EffectPrior | pyro.distributions.TorchDistribution | None = None,
        random_prior: EffectPrior | pyro.distributions.TorchDistribution | str | None = None,
    ) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.n_fixed = n_fixed
        self.n_random = n_random
        self.n_groups = n_groups
        self.fixed_prior = as_prior(fixed_prior)
        self.random_prior = as_prior(random_prior)

    def __setattr__(self, name: str, value) -> None:
        if name in ("fixed_prior", "random_prior") and not isinstance(value, EffectPrior):
            value = as_prior(value)
        super().__setattr__(name, value)

    def forward(self, batch: Batch) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """Sample ``fixed_effects`` (L, Q_f) and the batch's ``random_effects`` (B, L, k)."""
        fixed = random = None
        latent_plate = pyro.plate("latent", self.latent_dim, dim=-1)
        if self.n_fixed:
            with latent_plate:
                prior = self.fixed_prior((self.latent_dim, self.n_fixed))
                fixed = pyro.sample(FIXED_SITE, prior.to_event(1))
        if self.n_random:
            with (
                pyro.plate("instances", batch.n_instances_total, subsample=batch.instances, dim=-2),
                latent_plate,
            ):
                shape = (len(batch.instances), self.latent_dim, self.n_random)
                random = pyro.sample(RANDOM_SITE, self.random_prior(shape).to_event(1))
        return fixed, random
