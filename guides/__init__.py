"""Variational guides of the LMM-VAE family (installed as ``pyro_lmmvae.guides``)."""

from .effects import MeanFieldEffects, variance_from_rho
from .olmm import OLMMGuide

__all__ = ["MeanFieldEffects", "OLMMGuide", "variance_from_rho"]
