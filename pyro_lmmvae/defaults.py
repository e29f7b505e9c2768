"""Default values shared by the library's signatures and the ``pyro-lmmvae`` command line.

The signatures of :class:`~pyro_lmmvae.LMMVAE` (``__init__``, ``fit``, ``predict``,
``effects``), :class:`~pyro_lmmvae.demo.DemoConfig` and the dataset generators
(:func:`~pyro_lmmvae.datasets.make_health_mnist`, :func:`~pyro_lmmvae.datasets.make_rotating_mnist`,
:func:`~pyro_lmmvae.datasets.load_physionet`) take these constants as their defaults, and the
command line shows and uses the same objects. This module imports nothing, so that
``pyro-lmmvae VERB --help`` lists the defaults without loading torch or Pyro.
``tests/cli/test_cli.py`` checks every default the command line shows against
:func:`inspect.signature` of the function it calls.

Defaults that are None are written in the signatures themselves (None says "not set").
"""

from __future__ import annotations

# --------------------------------------------------------------------------- LMMVAE(...)
LATENT_DIM = 16
"""``LMMVAE(latent_dim=)``: L, the latent dimension."""
VARIANT = "olmm"
"""``LMMVAE(variant=)``: the oLMM-VAE."""
OBJECTIVE = "elbo"
"""``LMMVAE(objective=)``: the ELBO."""
NETWORK = "mlp"
"""``LMMVAE(network=)``: MLP encoder and decoder."""
LIKELIHOOD = "gaussian"
"""``LMMVAE(likelihood=)``."""
SEED = 0
"""``seed=`` of ``LMMVAE(...)``, ``LMMVAE.predict`` and ``LMMVAE.effects``."""

# --------------------------------------------------------------------------- LMMVAE.fit(...)
BATCH_SIZE = 32
"""``fit(batch_size=)``: instances per batch."""
LR = 1e-3
"""``fit(lr=)``: Adam learning rate of the encoder and decoder networks."""
EFFECTS_LR = 1e-2
"""``fit(effects_lr=)``: Adam learning rate of the latent LMM's shared parameters."""
LR_DECAY = 1.0
"""``fit(lr_decay=)``: per-epoch learning-rate factor (1: constant)."""
SELECT = "objective"
"""``fit(select=)``: the validation score that picks the kept weights."""
DEVICE = "cpu"
"""``fit(device=)``: the torch device."""
PROGRESS = True
"""``fit(progress=)``: show a progress bar."""
KL = "auto"
"""``fit(kl=)``: the KL estimator of the ELBO."""

# --------------------------------------------------------------------------- predict, effects
UNSEEN = "error"
"""``predict(unseen=)``: instances not seen in training are an error."""
CONTEXT_STEPS = 200
"""``predict(context_steps=)``: Adam steps adapting unseen instances to their context rows."""
CONTEXT_LR = 1e-2
"""``predict(context_lr=)``: learning rate of those steps."""
NUM_DRAWS = 500
"""``effects(num_draws=)``: draws from the posterior of the effects."""

# --------------------------------------------------------------------------- DemoConfig
# The demo's own settings (its fits use fit()'s defaults unless max_epochs or lr are given).
DEMO_N_INSTANCES = 300
DEMO_LATENT_DIM = 4
DEMO_BATCH_SIZE = 32
DEMO_VARIANT = "olmm"
DEMO_OBJECTIVE = "elbo"
DEMO_BASELINES = "vae"
DEMO_SEED = 0
DEMO_DATA_SEED = 0
DEMO_DEVICE = "cpu"

# --------------------------------------------------------------------------- dataset generators
MNIST_ROOT = "../shared/data/mnist"
"""Folder of the MNIST training files (Health and Rotating MNIST)."""
PHYSIONET_ROOT = "../shared/data/physionet2012"
"""Folder of the PhysioNet 2012 archives."""

HEALTH_MNIST_N_PER_DIGIT = 500
HEALTH_MNIST_N_TIMES = 20
HEALTH_MNIST_MISSING_RATE = 0.25
HEALTH_MNIST_BALANCED = False

ROTATING_MNIST_N_INSTANCES = 400
ROTATING_MNIST_N_ANGLES = 16
ROTATING_MNIST_DIGIT = 3
ROTATING_MNIST_N_TEST_INSTANCES = 40
ROTATING_MNIST_TEST_BLOCK = 4

PHYSIONET_SET_NAME = "a"
PHYSIONET_MIN_HOURS = 10
PHYSIONET_TEST_FRACTION = 0.2
PHYSIONET_SPLIT_HOUR = 36
PHYSIONET_VAL_FRACTION = 0.2

DATA_SEED = 0
"""``seed=`` of the dataset generators."""
