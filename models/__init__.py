"""Generative models of the LMM-VAE family (installed as ``pyro_lmmvae.models``)."""

from .effects import FIXED_SITE, RANDOM_SITE, MixedEffects, linear_predictor
from .likelihoods import BernoulliLikelihood, GaussianLikelihood, Likelihood, make_likelihood
from .olmm import LATENT_SITE, OBS_SITE, LatentScale, OLMMModel

__all__ = [
    "FIXED_SITE",
    "LATENT_SITE",
    "OBS_SITE",
    "RANDOM_SITE",
    "BernoulliLikelihood",
    "GaussianLikelihood",
    "LatentScale",
    "Likelihood",
    "MixedEffects",
    "OLMMModel",
    "linear_predictor",
    "make_likelihood",
]
