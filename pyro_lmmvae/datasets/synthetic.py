r"""Synthetic longitudinal data with a known linear mixed model in latent space.

Implements spec section 7, "Synthetic ground truth". For instance ``p`` and
time ``t`` the true latent is

.. math::

    z_i = A_f^* x_i + u_{p(i)}^* w_i + \varepsilon_i,

with fixed design ``x_i = [1, t, g, c, g*t, sin 2 pi t, cos 2 pi t]``, random
design ``w_i = [1, t]``, ``A_f^* ~ N(0, 1)``, ``u_p^* ~ N(0, 0.5^2)`` and
``eps_i ~ N(0, 0.1^2 I)``. Observations are ``y = g^*(z) + N(0, noise_std^2)``
where ``g^*`` is a fixed random MLP, and entries are missing completely at
random.

The covariates are **not** z-scored: ``t`` already lies in ``[0, 1]`` and
``c ~ N(0, 1)``, and the saved truth (``A_f^*``, ``u^*``) is expressed in
these raw coordinates. A model must therefore use the columns of
``data`` as they are to make its fitted effects comparable with the truth.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from .base import LongitudinalDataset

__all__ = ["FIXED_TERMS", "RANDOM_TERMS", "make_synthetic", "synthetic_decoder"]

FIXED_TERMS: tuple[str, ...] = ("Intercept", "t", "g", "c", "g:t", "sin_2pi_t", "cos_2pi_t")
"""Names of the fixed-design columns, in the order used by ``truth["fixed_effects"]``."""

RANDOM_TERMS: tuple[str, ...] = ("1", "t")
"""Names of the random-design columns, in the order used by ``truth["random_effects"]``."""

HIDDEN_WIDTHS: tuple[int, ...] = (32, 64)
"""Hidden layer widths of the true decoder (spec: 4 -> 32 -> 64 -> 64)."""

NEGATIVE_SLOPE = 0.2
"""Leaky-ReLU negative slope of the true decoder."""

RANDOM_EFFECT_STD = 0.5
LATENT_NOISE_STD = 0.1
DECODER_BIAS_STD = 0.1


def _check_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def _check_rate(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a real number in [0, 1), got {value!r}")
    value = float(value)
    if not 0.0 <= value < 1.0:
        raise ValueError(f"{name} must be in [0, 1), got {value}")
    return value


def _check_scale(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a real number >= 0, got {value!r}")
    value = float(value)
    if not (np.isfinite(value) and value >= 0.0):
        raise ValueError(f"{name} must be finite and >= 0, got {value}")
    return value


def _orthogonal(rng: np.random.Generator, n_out: int, n_in: int) -> np.ndarray:
    """Random (semi-)orthogonal matrix of shape ``(n_out, n_in)``.

    Orthonormal columns when ``n_out >= n_in`` and orthonormal rows otherwise,
    as in :func:`torch.nn.init.orthogonal_` with gain 1 (QR of a Gaussian
    matrix with the sign of ``diag(R)`` fixed, so the draw is Haar).
    """
    a = rng.standard_normal((max(n_out, n_in), min(n_out, n_in)))
    q, r = np.linalg.qr(a)
    q = q * np.sign(np.diag(r))
    return q if n_out >= n_in else q.T


def _decoder_layers(truth: Mapping[str, np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
    layers = []
    k = 0
    while f"decoder_W{k}" in truth:
        if f"decoder_b{k}" not in truth:
            raise ValueError(f"truth has 'decoder_W{k}' but no 'decoder_b{k}'")
        layers.append((np.asarray(truth[f"decoder_W{k}"]), np.asarray(truth[f"decoder_b{k}"])))
        k += 1
    if not layers:
        raise ValueError("truth holds no decoder weights (expected keys 'decoder_W0', ...)")
    return layers


def random_decoder(
    rng: np.random.Generator, latent_dim: int, obs_dim: int
) -> dict[str, np.ndarray]:
    """Weights of a random MLP ``L* -> 32 -> 64 -> D``: orthogonal, biases ``N(0, 0.1²)``.

    Returns the ``decoder_W{k}``, ``decoder_b{k}`` entries of a truth dict (PyTorch layout).
    """
    widths = (latent_dim, *HIDDEN_WIDTHS, obs_dim)
    truth: dict[str, np.ndarray] = {}
    for k, (n_in, n_out) in enumerate(zip(widths[:-1], widths[1:], strict=True)):
        truth[f"decoder_W{k}"] = _orthogonal(rng, n_out, n_in)
        truth[f"decoder_b{k}"] = rng.normal(0.0, DECODER_BIAS_STD, size=n_out)
    return truth


def observe(
    rng: np.random.Generator, y_clean: np.ndarray, noise_std: float, missing_rate: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gaussian noise and an MCAR mask with at least one observed entry per row.

    Returns ``(y, y_true, mask)`` with ``y`` zero where unobserved.
    """
    n_rows, obs_dim = y_clean.shape
    y_true = y_clean + rng.normal(0.0, 1.0, size=y_clean.shape) * noise_std
    mask = rng.random((n_rows, obs_dim)) >= missing_rate
    empty = np.flatnonzero(~mask.any(axis=1))
    if empty.size:
        mask[empty, rng.integers(0, obs_dim, size=empty.size)] = True
    return np.where(mask, y_true, 0.0), y_true, mask


def future_split(
    rng: np.random.Generator,
    inst: np.ndarray,
    time_rank: np.ndarray,
    n_times: int,
    n_test_times: int,
    test_instance_fraction: float,
    val_fraction: float,
) -> np.ndarray:
    """Last ``n_test_times`` rows of a random subset of instances -> "test"; the rest -> train/val.

    Parameters
    ----------
    inst, time_rank : numpy.ndarray
        Each row's instance index and its time rank within the instance, (N,).
    """
    n_instances = int(inst.max()) + 1
    n_test_inst = round(test_instance_fraction * n_instances)
    test_inst = rng.permutation(n_instances)[:n_test_inst]
    is_test = np.isin(inst, test_inst) & (time_rank >= n_times - n_test_times)
    split = np.full(inst.size, "train", dtype=object)
    split[is_test] = "test"
    rest = np.flatnonzero(~is_test)
    n_val = round(val_fraction * rest.size)
    split[rng.permutation(rest)[:n_val]] = "val"
    return split


def synthetic_decoder(z: Any, truth: Mapping[str, np.ndarray]) -> np.ndarray:
    """Apply the true decoder ``g^*`` stored in a synthetic dataset's truth.

    Parameters
    ----------
    z : array_like or torch.Tensor
        Latents of shape ``(n, L*)`` or ``(L*,)``.
    truth : mapping of str to numpy.ndarray
        The ``truth`` dict of a dataset built by :func:`make_synthetic`. The
        layers are read from ``decoder_W0, decoder_b0, decoder_W1, ...``; each
        weight has the PyTorch layout ``(out_features, in_features)``.

    Returns
    -------
    numpy.ndarray
        Noise-free outputs ``g^*(z)`` of shape ``(n, D)`` (or ``(D,)`` for a
        single latent), ``float64``. Every layer but the last is followed by
        a leaky ReLU with negative slope 0.2; the last layer is linear.

    Raises
    ------
    ValueError
        If the decoder weights are missing or ``z`` has the wrong last
        dimension.
    """
    if hasattr(z, "detach"):
        z = z.detach().cpu().numpy()
    h = np.asarray(z, dtype=np.float64)
    layers = _decoder_layers(truth)
    in_dim = layers[0][0].shape[1]
    if h.ndim not in (1, 2) or h.shape[-1] != in_dim:
        raise ValueError(f"z must have shape (n, {in_dim}) or ({in_dim},), got shape {h.shape}")
    for k, (w, b) in enumerate(layers):
        h = h @ w.T + b
        if k < len(layers) - 1:
            h = np.where(h > 0, h, NEGATIVE_SLOPE * h)
    return h


def make_synthetic(
    n_instances: int = 300,
    n_times: int = 20,
    latent_dim: int = 4,
    obs_dim: int = 16,
    missing_rate: float = 0.2,
    noise_std: float = 0.05,
    random_effect_std: float = RANDOM_EFFECT_STD,
    latent_noise_std: float = LATENT_NOISE_STD,
    test_instance_fraction: float = 0.2,
    n_test_times: int = 5,
    val_fraction: float = 0.2,
    seed: int = 0,
) -> LongitudinalDataset:
    """Generate the synthetic ground-truth dataset of spec section 7.

    Parameters
    ----------
    n_instances : int, optional
        Number of instances P. Default 300.
    n_times : int, optional
        Time points per instance, ``t = linspace(0, 1, n_times)``. Must be at
        least 2. Default 20.
    latent_dim : int, optional
        True latent dimension L*. Default 4.
    obs_dim : int, optional
        Observed dimension D. Default 16 for speed; the spec's decoder
        ``4 -> 32 -> 64 -> 64`` is obtained with ``obs_dim=64``.
    missing_rate : float, optional
        Probability that an entry is unobserved (MCAR), in ``[0, 1)``.
        Default 0.2.
    noise_std : float, optional
        Standard deviation of the Gaussian observation noise. Default 0.05.
    random_effect_std : float, optional
        Standard deviation of the true random effects u*. Default 0.5.
    latent_noise_std : float, optional
        Standard deviation of the per-row latent noise eps. Default 0.1. With both at 0 the
        latents are determined by the covariates (a miniature of Rotating MNIST, where the
        rotation angle fixes the image).
    test_instance_fraction : float, optional
        Fraction of instances (rounded to the nearest count) whose last
        ``n_test_times`` time points form the test split, in ``[0, 1)``.
        Default 0.2.
    n_test_times : int, optional
        Number of final time points held out for test instances; must be
        smaller than ``n_times`` so that test instances keep training rows.
        Default 5.
    val_fraction : float, optional
        Fraction of the non-test rows sent to the validation split (rounded
        to the nearest count), in ``[0, 1)``. Default 0.2.
    seed : int, optional
        Seed of the single :func:`numpy.random.default_rng` generator used for
        every draw; the output is a deterministic function of the arguments.

    Returns
    -------
    LongitudinalDataset
        ``data`` has columns ``id`` (string labels ``"i000"``, ...), ``t``,
        ``g`` (int 0/1), ``c``, ``sin_2pi_t``, ``cos_2pi_t`` and ``split``,
        with rows ordered by instance then time. ``y`` has the unobserved
        entries set to 0, ``y_true`` is the noisy outcome before masking, and
        ``truth`` holds:

        - ``"fixed_effects"``: A_f*, shape ``(L*, 7)``;
        - ``"random_effects"``: u*, shape ``(P, L*, 2)``;
        - ``"z"``: true latents, shape ``(N, L*)``;
        - ``"fixed_terms"``: ``["Intercept", "t", "g", "c", "g:t",
          "sin_2pi_t", "cos_2pi_t"]``, the column order of A_f*;
        - ``"random_terms"``: ``["1", "t"]``, the column order of u*;
        - ``"instance_labels"``: shape ``(P,)``, the id of instance ``p``
          (row ``p`` of ``random_effects``);
        - ``"decoder_W0"``, ``"decoder_b0"``, ``"decoder_W1"``,
          ``"decoder_b1"``, ``"decoder_W2"``, ``"decoder_b2"``: the true
          decoder (see :func:`synthetic_decoder`).

    Raises
    ------
    ValueError
        If a count is not a positive integer, a rate is outside ``[0, 1)``,
        ``noise_std`` is negative, or ``n_test_times >= n_times``.

    Notes
    -----
    - Covariates are left in raw units (no z-scoring; see the module
      docstring), so ``x_i`` can be rebuilt from ``data`` directly.
    - The decoder has orthogonal weights (Haar-distributed, gain 1), biases
      drawn from ``N(0, 0.1^2)``, leaky ReLU 0.2 after each hidden layer and a
      linear output. Hidden layers ``L* -> 32 -> 64`` are injective for
      ``L* <= 32`` (orthonormal columns, bijective activation); the output
      layer ``64 -> D`` has orthonormal columns, hence the whole map is
      injective, when ``D >= 64``. For ``D < 64`` the projection is only
      generically injective on the ``L*``-dimensional image.
    - A row whose entries are all drawn missing gets one entry, chosen
      uniformly, forced to be observed, so every row has an observation.
    """
    n_instances = _check_int("n_instances", n_instances, 1)
    n_times = _check_int("n_times", n_times, 2)
    latent_dim = _check_int("latent_dim", latent_dim, 1)
    obs_dim = _check_int("obs_dim", obs_dim, 1)
    n_test_times = _check_int("n_test_times", n_test_times, 1)
    if n_test_times >= n_times:
        raise ValueError(
            f"n_test_times must be smaller than n_times ({n_times}) so that test instances "
            f"keep training rows, got {n_test_times}"
        )
    missing_rate = _check_rate("missing_rate", missing_rate)
    test_instance_fraction = _check_rate("test_instance_fraction", test_instance_fraction)
    val_fraction = _check_rate("val_fraction", val_fraction)
    noise_std = _check_scale("noise_std", noise_std)
    random_effect_std = _check_scale("random_effect_std", random_effect_std)
    latent_noise_std = _check_scale("latent_noise_std", latent_noise_std)
    seed = _check_int("seed", seed, 0)

    rng = np.random.default_rng(seed)
    n_rows = n_instances * n_times

    # Per-instance and per-row covariates.
    g_inst = rng.binomial(1, 0.5, size=n_instances).astype(np.int64)
    c_inst = rng.standard_normal(n_instances)
    t_grid = np.linspace(0.0, 1.0, n_times)
    inst = np.repeat(np.arange(n_instances), n_times)
    time_index = np.tile(np.arange(n_times), n_instances)
    t = t_grid[time_index]
    g = g_inst[inst]
    c = c_inst[inst]
    sin_t = np.sin(2.0 * np.pi * t)
    cos_t = np.cos(2.0 * np.pi * t)

    width = max(3, len(str(n_instances - 1)))
    labels = np.array([f"i{p:0{width}d}" for p in range(n_instances)], dtype=str)

    # Designs: x_i = [1, t, g, c, g t, sin 2 pi t, cos 2 pi t], w_i = [1, t].
    x = np.column_stack([np.ones(n_rows), t, g, c, g * t, sin_t, cos_t])
    w = np.column_stack([np.ones(n_rows), t])

    # Latent linear mixed model.
    fixed = rng.standard_normal((latent_dim, len(FIXED_TERMS)))
    random = rng.normal(0.0, random_effect_std, size=(n_instances, latent_dim, len(RANDOM_TERMS)))
    eps = rng.normal(0.0, latent_noise_std, size=(n_rows, latent_dim))
    z = x @ fixed.T + np.einsum("nlk,nk->nl", random[inst], w) + eps

    # Fixed random decoder.
    truth = random_decoder(rng, latent_dim, obs_dim)
    y, y_true, mask = observe(rng, synthetic_decoder(z, truth), noise_std, missing_rate)
    split = future_split(
        rng, inst, time_index, n_times, n_test_times, test_instance_fraction, val_fraction
    )

    data = pd.DataFrame(
        {
            "id": labels[inst],
            "t": t,
            "g": g,
            "c": c,
            "sin_2pi_t": sin_t,
            "cos_2pi_t": cos_t,
            "split": split.astype(str),
        }
    )

    truth.update(
        {
            "fixed_effects": fixed,
            "random_effects": random,
            "z": z,
            "fixed_terms": np.array(FIXED_TERMS, dtype=str),
            "random_terms": np.array(RANDOM_TERMS, dtype=str),
            "instance_labels": labels,
        }
    )
    return LongitudinalDataset(
        data=data,
        y=y.astype(np.float32),
        mask=mask,
        y_true=y_true.astype(np.float32),
        truth=truth,
        name="synthetic",
        instance_column="id",
    )
