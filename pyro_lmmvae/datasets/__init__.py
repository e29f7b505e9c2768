"""Dataset container and generators."""

from .base import LongitudinalDataset
from .gp_synthetic import make_gp_synthetic
from .synthetic import make_synthetic, synthetic_decoder

__all__ = ["LongitudinalDataset", "make_gp_synthetic", "make_synthetic", "synthetic_decoder"]
