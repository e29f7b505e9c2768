"""A user's prior specification as an :class:`~pyro_lmmvae.priors.EffectPrior`: :func:`as_prior`.

The ``fixed_prior`` and ``random_prior`` of :class:`~pyro_lmmvae.LMMVAE` (and of
:class:`~pyro_lmmvae.models.MixedEffects`) accept a prior object, a Pyro distribution, None or a
name. The names cover the priors of :mod:`pyro_lmmvae.priors` and the spectral priors of
:mod:`pyro_lmmvae.gp`, which build on them; this module sits above both, so that neither
imports the other's user-facing names.

Examples
--------
>>> import pyro.distributions as dist
>>> as_prior(dist.Laplace(0.0, 0.5)).describe()
'Laplace(loc=0, scale=0.5)'
>>> type(as_prior("matern32")).__name__
'SpectralPrior'
"""

from __future__ import annotations

import pyro.distributions as dist

from pyro_lmmvae.gp.kernels import KERNEL_NAMES
from pyro_lmmvae.gp.prior import SpectralPrior
from pyro_lmmvae.priors import (
    DistributionPrior,
    EffectPrior,
    LearnedScaleNormal,
    RandomEffectCovariance,
)

__all__ = ["PriorSpec", "as_prior"]

#: What ``fixed_prior=`` / ``random_prior=`` accept (see :func:`as_prior`).
PriorSpec = EffectPrior | dist.TorchDistribution | str | None


def as_prior(prior: PriorSpec, default_scale: float = 1.0) -> EffectPrior:
    """Turn a user's prior specification into an :class:`~pyro_lmmvae.priors.EffectPrior`.

    Parameters
    ----------
    prior : EffectPrior, pyro distribution, str or None
        ``None`` gives ``Normal(0, default_scale)``; a distribution is wrapped in
        :class:`~pyro_lmmvae.priors.DistributionPrior`; ``"learned_scale"`` gives
        :class:`~pyro_lmmvae.priors.LearnedScaleNormal`; ``"covariance"`` gives
        :class:`~pyro_lmmvae.priors.RandomEffectCovariance` (random effects only); a kernel name
        (``"se"``, ``"matern12"``, ``"matern32"``, ``"matern52"``, ``"periodic"``) gives a
        :class:`~pyro_lmmvae.gp.prior.SpectralPrior` with default settings.
    default_scale : float, default 1.0
        Scale of the default Normal prior.
    """
    if prior is None:
        return DistributionPrior(dist.Normal(0.0, default_scale))
    if isinstance(prior, EffectPrior):
        return prior
    if isinstance(prior, str):
        if prior == "learned_scale":
            return LearnedScaleNormal(default_scale)
        if prior == "covariance":
            return RandomEffectCovariance(default_scale)
        if prior in KERNEL_NAMES:
            return SpectralPrior(prior, scale=default_scale)
        raise ValueError(
            f"unknown prior name {prior!r}; use 'learned_scale', 'covariance', a kernel name "
            f"{KERNEL_NAMES} "
            "or a distribution"
        )
    return DistributionPrior(prior)
