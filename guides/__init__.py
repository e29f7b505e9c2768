"""Variational guides of the LMM-VAE family (installed as ``pyro_lmmvae.guides``)."""

if __name__ != "pyro_lmmvae.guides":  # e.g. the repository root on sys.path (python -m pytest)
    raise ImportError(
        f"the variational guides are the package pyro_lmmvae.guides: import them as "
        f"pyro_lmmvae.guides, not as {__name__!r}"
    )


from .effects import MeanFieldEffects, variance_from_rho
from .gsnn import GSNNGuide
from .hyper import HyperparameterGuide, hyperparameter_sites
from .olmm import OLMMGuide
from .pooling import POOLINGS, pool_mean, pool_precision, segment_sum
from .slmm import SLMMGuide
from .structured import StructuredEffects

__all__ = [
    "POOLINGS",
    "GSNNGuide",
    "HyperparameterGuide",
    "MeanFieldEffects",
    "OLMMGuide",
    "SLMMGuide",
    "StructuredEffects",
    "pool_mean",
    "pool_precision",
    "segment_sum",
    "hyperparameter_sites",
    "variance_from_rho",
]
