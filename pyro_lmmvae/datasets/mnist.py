"""MNIST-based longitudinal datasets: Health MNIST and Rotating MNIST (spec section 7).

The public names of the MNIST modules, in one place:

* :mod:`~pyro_lmmvae.datasets.mnist_files`: the MNIST training set on disk (:func:`read_idx`,
  :func:`load_mnist_training`, :func:`load_mnist_digits`); nothing is downloaded.
* :mod:`~pyro_lmmvae.datasets.health_mnist`: :func:`make_health_mnist` and its image transform.
* :mod:`~pyro_lmmvae.datasets.rotating_mnist`: :func:`make_rotating_mnist`.
* :mod:`~pyro_lmmvae.datasets.mnist_common`: what the two generators share (seeding,
  interpolation and rounding to ``uint8``, instance labels, the val split).
"""

from __future__ import annotations

from .health_mnist import health_transform, make_health_mnist, pad_image
from .mnist_files import DEFAULT_MNIST_ROOT, load_mnist_digits, load_mnist_training, read_idx
from .rotating_mnist import make_rotating_mnist, rotate_image

__all__ = [
    "DEFAULT_MNIST_ROOT",
    "health_transform",
    "load_mnist_digits",
    "load_mnist_training",
    "make_health_mnist",
    "make_rotating_mnist",
    "pad_image",
    "read_idx",
    "rotate_image",
]
