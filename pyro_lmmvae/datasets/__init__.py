"""Dataset container and generators: synthetic, GP-prior synthetic, Health/Rotating MNIST and
PhysioNet 2012 (the last three read the raw files from a local path; nothing is downloaded),
plus an ``.npz`` cache of built datasets (:func:`save_dataset`, :func:`load_dataset`)."""

from .base import LongitudinalDataset
from .cache import load_dataset, save_dataset
from .gp_synthetic import make_gp_synthetic
from .mnist import make_health_mnist, make_rotating_mnist, read_idx
from .physionet import load_physionet
from .synthetic import make_synthetic, synthetic_decoder

__all__ = [
    "LongitudinalDataset",
    "load_dataset",
    "load_physionet",
    "make_gp_synthetic",
    "make_health_mnist",
    "make_rotating_mnist",
    "make_synthetic",
    "read_idx",
    "save_dataset",
    "synthetic_decoder",
]
