"""pyro_lmmvae: variational autoencoders whose latent prior is a linear mixed model, in Pyro.

The data flow: a formula and a DataFrame give a :class:`Design`; the design sizes the generative
model (:mod:`pyro_lmmvae.models`) and the guide (:mod:`pyro_lmmvae.guides`); training minimises
:class:`~pyro_lmmvae.training.loss.ELBOLoss`; :class:`LMMVAE` wraps it all and gives imputation,
prediction and :meth:`LMMVAE.effects` as ArviZ InferenceData (an ``xarray.DataTree`` on ArviZ
>= 1.0; :mod:`pyro_lmmvae.arviz_compat` reads both lines). ``LMMVAE(variant=, objective=)``
selects the oLMM-VAE, the sLMM-VAE or the CVAE baseline, trained with the ELBO or GSNN
(:mod:`pyro_lmmvae.variants`). Formula terms ``fourier()`` and ``rff()`` with a
:class:`SpectralPrior` make it a reduced-rank GP-prior VAE (:mod:`pyro_lmmvae.gp`).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the names below load on first use (PEP 562): a CLI `--help` stays fast
    from .api import LMMVAE
    from .design import Design, DesignMatrices
    from .gp.kernels import Kernel
    from .gp.prior import SpectralPrior
    from .inference import GSNNUnavailableError
    from .prior_specs import as_prior
    from .priors import DistributionPrior, EffectPrior, LearnedScaleNormal
    from .variants import VariantOptions

_LAZY = {
    "LMMVAE": ".api",
    "Design": ".design",
    "DesignMatrices": ".design",
    "GSNNUnavailableError": ".inference",
    "DistributionPrior": ".priors",
    "EffectPrior": ".priors",
    "LearnedScaleNormal": ".priors",
    "as_prior": ".prior_specs",
    "Kernel": ".gp.kernels",
    "SpectralPrior": ".gp.prior",
    "VariantOptions": ".variants",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__version__ = "0.4.0"

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
