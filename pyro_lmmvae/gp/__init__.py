"""Gaussian-process priors from Fourier bases: kernels, basis terms, the spectral prior, the
additive GP of the LVAE and the kernel a model's prior implies (spec §6).

Modules, in the order they build on each other (none imports a later one):

* :mod:`~pyro_lmmvae.gp.kernels`: :class:`Kernel` and the spectral densities (torch).
* :mod:`~pyro_lmmvae.gp.spectral`: Fourier features, regular and random frequency grids, the
  spectral scaling ``Λ`` of their prior and the kernel it implies.
* :mod:`~pyro_lmmvae.gp.bases`: the ``fourier()`` and ``rff()`` formula terms that
  :class:`~pyro_lmmvae.design.Design` evaluates, and :class:`BasisColumn`.
* :mod:`~pyro_lmmvae.gp.prior`: :class:`SpectralPrior`, the prior that makes a basis a
  reduced-rank GP (an :class:`~pyro_lmmvae.priors.EffectPrior`).
* :mod:`~pyro_lmmvae.gp.components`, :mod:`~pyro_lmmvae.gp.resolve`,
  :mod:`~pyro_lmmvae.gp.additive`: :func:`additive_gp`, the LVAE's additive GP as a formula
  and two spectral priors.
* :mod:`~pyro_lmmvae.gp.inspection`: :func:`prior_kernel`, the kernel of a model's prior.

The names below load on first use (PEP 562), so that :mod:`pyro_lmmvae.design`, which needs
only :mod:`~pyro_lmmvae.gp.bases`, does not load the rest.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pyro_lmmvae import lazy_exports

if TYPE_CHECKING:
    from .additive import AdditiveGPConfig, additive_gp
    from .bases import BASIS_NAMES, BasisColumn, FourierBasis, RandomFourierBasis
    from .components import Component, categorical, continuous, interaction
    from .inspection import prior_kernel
    from .kernels import KERNEL_NAMES, Kernel, periodic_weights, spectral_density
    from .prior import SpectralPrior
    from .resolve import MAX_LEVELS
    from .spectral import (
        BasisScaling,
        default_period,
        fourier_features,
        implied_kernel,
        implied_kernel_matrix,
        random_feature_scaling,
        regular_frequencies,
        regular_grid_scaling,
    )

_LAZY = {
    "AdditiveGPConfig": ".additive",
    "additive_gp": ".additive",
    "BASIS_NAMES": ".bases",
    "BasisColumn": ".bases",
    "FourierBasis": ".bases",
    "RandomFourierBasis": ".bases",
    "Component": ".components",
    "categorical": ".components",
    "continuous": ".components",
    "interaction": ".components",
    "prior_kernel": ".inspection",
    "KERNEL_NAMES": ".kernels",
    "Kernel": ".kernels",
    "periodic_weights": ".kernels",
    "spectral_density": ".kernels",
    "SpectralPrior": ".prior",
    "MAX_LEVELS": ".resolve",
    "BasisScaling": ".spectral",
    "default_period": ".spectral",
    "fourier_features": ".spectral",
    "implied_kernel": ".spectral",
    "implied_kernel_matrix": ".spectral",
    "random_feature_scaling": ".spectral",
    "regular_frequencies": ".spectral",
    "regular_grid_scaling": ".spectral",
}


__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())


__all__ = [
    "AdditiveGPConfig",
    "BASIS_NAMES",
    "BasisColumn",
    "BasisScaling",
    "Component",
    "FourierBasis",
    "KERNEL_NAMES",
    "Kernel",
    "MAX_LEVELS",
    "RandomFourierBasis",
    "SpectralPrior",
    "additive_gp",
    "categorical",
    "continuous",
    "default_period",
    "fourier_features",
    "implied_kernel",
    "implied_kernel_matrix",
    "interaction",
    "periodic_weights",
    "prior_kernel",
    "random_feature_scaling",
    "regular_frequencies",
    "regular_grid_scaling",
    "spectral_density",
]
