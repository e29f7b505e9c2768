"""Dataset container and generators: synthetic, GP-prior synthetic, Health/Rotating MNIST and
PhysioNet 2012 (the last three read the raw files from a local path; nothing is downloaded),
plus an ``.npz`` cache of built datasets (:func:`save_dataset`, :func:`load_dataset`).

Modules, one concept each:

* :mod:`~pyro_lmmvae.datasets.base`: :class:`LongitudinalDataset`, what every generator returns.
* :mod:`~pyro_lmmvae.datasets.cache`: the ``.npz`` cache of a built dataset.
* :mod:`~pyro_lmmvae.datasets.synthetic`: :func:`make_synthetic`, the oLMM-VAE generator.
* :mod:`~pyro_lmmvae.datasets.gp_synthetic`: :func:`make_gp_synthetic` (GP trajectories;
  the only generator that imports torch, through :class:`~pyro_lmmvae.gp.Kernel`).
* :mod:`~pyro_lmmvae.datasets.mnist_files`: the MNIST training set on disk (:func:`read_idx`).
* :mod:`~pyro_lmmvae.datasets.health_mnist`, :mod:`~pyro_lmmvae.datasets.rotating_mnist`: the
  two MNIST generators; :mod:`~pyro_lmmvae.datasets.mnist_common`: what they share;
  :mod:`~pyro_lmmvae.datasets.mnist` gathers their public names.
* :mod:`~pyro_lmmvae.datasets.physionet_files`: the raw PhysioNet 2012 files (records,
  outcomes); :mod:`~pyro_lmmvae.datasets.physionet`: :func:`load_physionet`, the dataset.

The names below load on first use (PEP 562), so that ``pyro-lmmvae data`` (numpy, pandas,
scipy) does not import torch for the GP-synthetic generator it never calls.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pyro_lmmvae import lazy_exports

if TYPE_CHECKING:
    from .base import LongitudinalDataset
    from .cache import load_dataset, save_dataset
    from .gp_synthetic import make_gp_synthetic
    from .health_mnist import make_health_mnist
    from .mnist_files import read_idx
    from .physionet import load_physionet
    from .rotating_mnist import make_rotating_mnist
    from .synthetic import make_synthetic, synthetic_decoder

_LAZY = {
    "LongitudinalDataset": ".base",
    "load_dataset": ".cache",
    "save_dataset": ".cache",
    "make_gp_synthetic": ".gp_synthetic",
    "make_health_mnist": ".health_mnist",
    "read_idx": ".mnist_files",
    "load_physionet": ".physionet",
    "make_rotating_mnist": ".rotating_mnist",
    "make_synthetic": ".synthetic",
    "synthetic_decoder": ".synthetic",
}


__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())


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
