"""Dataset container and generators."""

from .base import LongitudinalDataset
from .synthetic import make_synthetic, synthetic_decoder

__all__ = ["LongitudinalDataset", "make_synthetic", "synthetic_decoder"]
