"""Generative models of the LMM-VAE family (installed as ``pyro_lmmvae.models``)."""

if __name__ != "pyro_lmmvae.models":  # e.g. the repository root on sys.path (python -m pytest)
    raise ImportError(
        f"the generative models are the package pyro_lmmvae.models: import them as "
        f"pyro_lmmvae.models, not as {__name__!r}"
    )


from .base import LATENT_SITE, OBJECTIVES, OBS_SITE, LatentLMMModel, LatentScale
from .effects import (
    FIXED_SITE,
    RANDOM_SITE,
    EffectPlates,
    MixedEffects,
    PointEffects,
    effect_moments_at_rows,
    gather_rows,
    linear_predictor,
)
from .likelihoods import BernoulliLikelihood, GaussianLikelihood, Likelihood, make_likelihood
from .olmm import OLMMModel
from .slmm import OFFSET_SITE, SLMMModel

__all__ = [
    "FIXED_SITE",
    "LATENT_SITE",
    "OBJECTIVES",
    "OBS_SITE",
    "OFFSET_SITE",
    "RANDOM_SITE",
    "BernoulliLikelihood",
    "EffectPlates",
    "GaussianLikelihood",
    "LatentLMMModel",
    "LatentScale",
    "Likelihood",
    "MixedEffects",
    "OLMMModel",
    "PointEffects",
    "SLMMModel",
    "effect_moments_at_rows",
    "gather_rows",
    "linear_predictor",
    "make_likelihood",
]
