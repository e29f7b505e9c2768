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
from collections.abc import Callable
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


def lazy_exports(
    package: str, table: dict[str, str], namespace: dict[str, Any]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """PEP 562 ``__getattr__`` and ``__dir__`` of a package whose names load on first use.

    ``table`` maps each exported name to the module (relative to ``package``) that defines it;
    a loaded name is kept in the package's ``namespace``.
    """

    def __getattr__(name: str) -> Any:
        if name in table:
            value = getattr(importlib.import_module(table[name], package), name)
            namespace[name] = value
            return value
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(table))

    return __getattr__, __dir__


__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())


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
