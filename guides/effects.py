"""Mean-field Normal variational factors q(A_f) and q(u_p) (spec §2, "Variational family").

Variances are parameterised as ``log v = -8 + softplus(rho + 8)``, which floors them at
``e^-8``; they start at ``e^-6``. Fixed-effect means start at N(0, 0.01^2), random-effect means
at 0. The random-effect parameters are free per instance (not amortized) and are indexed by the
batch's instances.
"""

from __future__ import annotations

import math

import pyro
import pyro.distributions as dist
import torch
from torch import nn
from torch.nn import functional as F

from pyro_lmmvae.data import Batch
from pyro_lmmvae.models.effects import (
    FIXED_SITE,
    RANDOM_SITE,
    EffectMeans,
    EffectPlates,
    effect_moments_at_rows,
)
from pyro_lmmvae.objectives import prior_kl

_LOG_VAR_FLOOR = -8.0
_INIT_LOG_VAR = -6.0


def variance_from_rho(rho: torch.Tensor) -> torch.Tensor:
    """``exp(-8 + softplus(rho + 8))``: variance with a floor of e^-8."""
    return torch.exp(_LOG_VAR_FLOOR + F.softplus(rho - _LOG_VAR_FLOOR))


def _rho_init(shape: tuple[int, ...]) -> torch.Tensor:
    value = math.log(math.expm1(_INIT_LOG_VAR - _LOG_VAR_FLOOR)) + _LOG_VAR_FLOOR
    return torch.full(shape, value)


class MeanFieldEffects(EffectMeans):
    """Guide factors for the ``fixed_effects`` and ``random_effects`` sites.

    Parameters
    ----------
    latent_dim, n_fixed, n_random, n_groups : int
        L, Q_f, k and P, as in :class:`~pyro_lmmvae.models.effects.MixedEffects`.
    init_scale : float, default 0.01
        Standard deviation of the initial fixed-effect means.
    """

    def __init__(
        self, latent_dim: int, n_fixed: int, n_random: int, n_groups: int, init_scale: float = 0.01
    ) -> None:
        super().__init__(latent_dim, n_fixed, n_random, n_groups, init_scale)
        self.fixed_rho = nn.Parameter(_rho_init((latent_dim, n_fixed)))
        self.random_rho = nn.Parameter(_rho_init(self.random_shape))
        #: q over hyper-parameters that hierarchical priors sample (a HyperparameterGuide), set
        #: by VariationalPair.attach_hyperparameter_guide; None when the priors sample none
        self.hyper: nn.Module | None = None

    is_point = False
    description = (
        "mean-field variational posterior q(A_f) q(u_p); its fixed-effect sds are too narrow "
        "where random effects absorb part of a fixed effect (effects_guide='structured' "
        "calibrates them)"
    )

    @property
    def fixed_var(self) -> torch.Tensor:
        """V_f, entry-wise variances of q(A_f), (L, Q_f)."""
        return variance_from_rho(self.fixed_rho)

    def fixed_moments(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(M_f, V_f), each (L, Q_f)."""
        return self.fixed_loc, self.fixed_var

    def for_instances(self, n_groups: int) -> MeanFieldEffects:
        """Fresh q(u_p) for ``n_groups`` new instances; q(A_f) shared (same Parameters)."""
        new = MeanFieldEffects(self.latent_dim, self.n_fixed, self.n_random, n_groups)
        new.fixed_loc = self.fixed_loc
        new.fixed_rho = self.fixed_rho
        new.hyper = self.hyper
        return new.to(self.fixed_loc.device)

    def random_moments(self, groups: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Means and variances of q(u_p) for the given groups; zero for ``-1`` (unseen)."""
        seen = groups >= 0
        safe = groups.clamp(min=0)
        loc = self.instance_rows(self.random_loc, safe) * seen[:, None, None]
        var = variance_from_rho(self.instance_rows(self.random_rho, safe)) * seen[:, None, None]
        return loc, var

    def _start_sites(self, batch: Batch, plates: EffectPlates | None) -> EffectPlates:
        """Check the batch's instances, make the plates, sample the hyper-parameters first."""
        if self.n_random and bool((batch.instances < 0).any()):
            raise ValueError(
                "the ELBO needs instances seen in training: rows of unseen instances (-1) "
                "have no variational factor q(u_p)"
            )
        plates = plates if plates is not None else EffectPlates(batch, self.latent_dim)
        if self.hyper is not None:  # hyper-parameters first: the effects' priors depend on them
            self.hyper(batch, plates)
        return plates

    def forward(
        self, batch: Batch, plates: EffectPlates | None = None
    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """Sample the effect sites from q; returns (A_f, u_batch) like the model's effects."""
        fixed = random = None
        plates = self._start_sites(batch, plates)
        if self.n_fixed:
            with plates.latent:
                q = dist.Normal(self.fixed_loc, self.fixed_var.sqrt())
                fixed = pyro.sample(FIXED_SITE, q.to_event(1))
        if self.n_random:
            with plates.instances, plates.latent:
                loc = self.instance_rows(self.random_loc, batch.instances)
                scale = variance_from_rho(self.instance_rows(self.random_rho, batch.instances))
                scale = scale.sqrt()
                random = pyro.sample(RANDOM_SITE, dist.Normal(loc, scale).to_event(1))
        return fixed, random

    def fixed_kl(self, prior: torch.distributions.Distribution) -> torch.Tensor:
        """``KL(q(A_f) || p(A_f))`` summed (analytic where torch registers the pair)."""
        return prior_kl(self.fixed_loc, self.fixed_var, prior)

    def random_kl(
        self, prior: torch.distributions.Distribution, groups: torch.Tensor, particles: int = 1
    ) -> torch.Tensor:
        """``sum_p KL(q(u_p) || p(u_p))`` over ``groups`` (unscaled)."""
        loc, var = self.random_moments(groups)
        return prior_kl(loc, var, prior, particles)

    def predictor_moments(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean ``M x̄`` and variance ``V (x̄ ⊙ x̄)`` of eta under q(A), each (n, L).

        Rows of unseen instances (``batch.instances == -1``) get the prior mean of their random
        effects, i.e. no random-effect contribution.
        """
        return effect_moments_at_rows(self, batch)
