"""pyro_lmmvae: variational autoencoders whose latent prior is a linear mixed model, in Pyro.

The data flow: a formula and a DataFrame give a :class:`Design`; the design sizes the generative
model (:mod:`pyro_lmmvae.models`) and the guide (:mod:`pyro_lmmvae.guides`); training minimises
:class:`~pyro_lmmvae.training.loss.ELBOLoss`; :class:`LMMVAE` wraps it all and gives imputation,
prediction and :meth:`LMMVAE.effects` as ArviZ InferenceData. ``LMMVAE(variant=, objective=)``
selects the oLMM-VAE, the sLMM-VAE or the CVAE baseline, trained with the ELBO or GSNN
(:mod:`pyro_lmmvae.variants`). Formula terms ``fourier()`` and ``rff()`` with a
:class:`SpectralPrior` make it a reduced-rank GP-prior VAE (:mod:`pyro_lmmvae.bases`,
:mod:`pyro_lmmvae.additive_gp`).
"""

from .api import LMMVAE
from .design import Design, DesignMatrices
from .inference import GSNNUnavailableError
from .priors import DistributionPrior, EffectPrior, LearnedScaleNormal, as_prior
from .spectral import Kernel
from .spectral_priors import SpectralPrior
from .variants import VariantOptions

__version__ = "0.1.0"

__all__ = [
    "LMMVAE",
    "Design",
    "DesignMatrices",
    "DistributionPrior",
    "EffectPrior",
    "GSNNUnavailableError",
    "Kernel",
    "LearnedScaleNormal",
    "SpectralPrior",
    "VariantOptions",
    "as_prior",
    "__version__",
]
