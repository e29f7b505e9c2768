r"""Synthetic longitudinal data whose true latent trajectory is a Gaussian-process draw.

The setting of the reduced-rank GP-prior VAE of spec section 6: each latent
dimension follows a stationary GP in time, shared by all instances, plus a
per-instance random intercept and white noise. The generative process is

1. A regular grid ``grid_t = linspace(0, t_max, n_grid)``. For every latent
   dimension ``l`` a population trajectory ``f_l ~ GP(0, k)`` is drawn jointly
   on the grid, ``f_l = chol(K + jitter I) xi_l`` with ``K_jk = k(t_j - t_k)``,
   ``xi_l ~ N(0, I)`` and ``jitter = 1e-8 * k(0)`` (float64).
2. Instance ``p`` observes ``n_times`` distinct grid points chosen uniformly at
   random and sorted, so observation times are irregular across instances.
3. Its latent at those times is

   .. math::

       z_i = f(t_i) + b_{p(i)} + \varepsilon_i, \qquad
       b_p \sim N(0, s_b^2 I_L), \quad \varepsilon_i \sim N(0, s_\varepsilon^2 I_L),

   with ``s_b = random_intercept_std`` and ``s_eps = latent_noise_std``.
4. Observations are ``y = g^*(z) + N(0, noise_std^2)`` with ``g^*`` a fixed
   random MLP built exactly as in :func:`~pyro_lmmvae.datasets.synthetic.make_synthetic`
   (see :func:`~pyro_lmmvae.datasets.synthetic.synthetic_decoder`), and entries
   are missing completely at random with at least one observed entry per row.

Times are kept in raw units (not standardized).
"""

from __future__ import annotations

import numbers

import numpy as np
import pandas as pd

from ..gp.kernels import Kernel
from .base import LongitudinalDataset
from .synthetic import (
    HIDDEN_WIDTHS,
    _check_int,
    _check_rate,
    _check_scale,
    future_split,
    observe,
    random_decoder,
    synthetic_decoder,
)

__all__ = ["CHOLESKY_JITTER", "make_gp_synthetic"]

CHOLESKY_JITTER = 1e-8
"""Relative diagonal jitter: the grid covariance is ``K + CHOLESKY_JITTER * k(0) * I``."""


def _default_kernel() -> Kernel:
    return Kernel("se", variance=1.0, lengthscale=1.5)


def make_gp_synthetic(
    n_instances: int = 60,
    n_times: int = 20,
    latent_dim: int = 2,
    obs_dim: int = 12,
    kernel: Kernel | None = None,
    t_max: float = 10.0,
    n_grid: int = 200,
    random_intercept_std: float = 0.3,
    latent_noise_std: float = 0.05,
    noise_std: float = 0.1,
    missing_rate: float = 0.1,
    test_instance_fraction: float = 0.3,
    n_test_times: int = 4,
    val_fraction: float = 0.15,
    seed: int = 0,
) -> LongitudinalDataset:
    """Generate longitudinal data with a Gaussian-process latent trajectory.

    See the module docstring for the generative process.

    Parameters
    ----------
    n_instances : int, optional
        Number of instances P (>= 1). Default 60.
    n_times : int, optional
        Observed time points per instance, distinct grid points chosen at
        random (>= 2, <= ``n_grid``). Default 20.
    latent_dim : int, optional
        True latent dimension L (>= 1). Each dimension has its own
        independent GP draw. Default 2.
    obs_dim : int, optional
        Observed dimension D (>= 1). Default 12.
    kernel : Kernel, optional
        Stationary covariance of the population trajectories, a
        :class:`pyro_lmmvae.gp.Kernel`. Default
        ``Kernel("se", variance=1.0, lengthscale=1.5)``.
    t_max : float, optional
        End of the time grid, finite and > 0. Default 10.0.
    n_grid : int, optional
        Number of grid points (>= 2). The GP is drawn jointly on the grid, at
        cost ``O(n_grid^3)``. Default 200.
    random_intercept_std : float, optional
        Standard deviation of the per-instance random intercepts b_p (>= 0).
        Default 0.3.
    latent_noise_std : float, optional
        Standard deviation of the per-row latent white noise (>= 0).
        Default 0.05.
    noise_std : float, optional
        Standard deviation of the Gaussian observation noise (>= 0); the clean
        outputs have unit variance. Default 0.1.
    missing_rate : float, optional
        Probability that an entry is unobserved (MCAR), in ``[0, 1)``.
        Default 0.1.
    test_instance_fraction : float, optional
        Fraction of instances (rounded to the nearest count) whose last
        ``n_test_times`` rows form the test split (future prediction), in
        ``[0, 1)``. Default 0.3.
    n_test_times : int, optional
        Number of final rows held out for test instances (>= 1); must be
        smaller than ``n_times`` so that test instances keep earlier rows.
        Default 4.
    val_fraction : float, optional
        Fraction of the non-test rows sent to the validation split (rounded
        to the nearest count), in ``[0, 1)``. Default 0.15.
    seed : int, optional
        Seed (>= 0) of the single :func:`numpy.random.default_rng` generator
        used for every draw; the output is a deterministic function of the
        arguments. Default 0.

    Returns
    -------
    LongitudinalDataset
        Named ``"gp_synthetic"``. ``data`` has columns ``id`` (string labels
        ``"i000"``, ...), ``t`` (float, raw units, a grid point) and ``split``
        (``"train"``, ``"val"`` or ``"test"``), with rows ordered by instance
        then time. ``y`` has the unobserved entries set to 0, ``y_true`` is
        the noisy outcome before masking, and ``truth`` holds:

        - ``"grid_t"``: the time grid, shape ``(n_grid,)``;
        - ``"population_z"``: the GP draws f on the grid, shape ``(n_grid, L)``;
        - ``"random_intercepts"``: b, shape ``(P, L)``, row ``p`` for
          instance ``instance_labels[p]``;
        - ``"z"``: true latents of the rows, shape ``(N, L)``;
        - ``"grid_index"``: the grid index of each row's time, shape ``(N,)``,
          so that ``data["t"] == grid_t[grid_index]``;
        - ``"instance_labels"``: shape ``(P,)``;
        - ``"kernel_name"`` (0-d str array), ``"kernel_variance"``,
          ``"kernel_lengthscale"`` and ``"kernel_period"`` (0-d float arrays;
          the period is NaN except for the periodic kernel);
        - ``"decoder_W0"``, ``"decoder_b0"``, ..., ``"decoder_W2"``,
          ``"decoder_b2"``: the true decoder, usable with
          :func:`~pyro_lmmvae.datasets.synthetic.synthetic_decoder`.

    Raises
    ------
    TypeError
        If ``kernel`` is neither ``None`` nor a :class:`~pyro_lmmvae.gp.Kernel`.
    ValueError
        If a count is not an integer or is below its minimum, a rate is
        outside ``[0, 1)``, a standard deviation is negative or not finite,
        ``t_max`` is not finite and > 0, ``n_times > n_grid``,
        ``n_test_times >= n_times``, or the grid covariance cannot be
        factorized. The message names the offending argument.

    Notes
    -----
    - The Cholesky jitter adds ``1e-8 * k(0)`` to the grid covariance, so the
      population trajectories have covariance ``K + 1e-8 k(0) I``.
    - The decoder has orthogonal weights (Haar, gain 1), biases drawn from
      ``N(0, 0.1^2)``, leaky ReLU 0.2 after each hidden layer
      ``L -> 32 -> 64`` and a linear output ``64 -> D``, as in
      :func:`~pyro_lmmvae.datasets.synthetic.make_synthetic`; the output layer
      is then rescaled so that every output of ``g^*(z)`` has mean 0 and
      variance 1 over the generated rows (signal-to-noise ratio
      ``1 / noise_std^2`` per entry).
    - A row whose entries are all drawn missing gets one entry, chosen
      uniformly, forced to be observed.
    """
    n_instances = _check_int("n_instances", n_instances, 1)
    n_times = _check_int("n_times", n_times, 2)
    latent_dim = _check_int("latent_dim", latent_dim, 1)
    obs_dim = _check_int("obs_dim", obs_dim, 1)
    n_grid = _check_int("n_grid", n_grid, 2)
    n_test_times = _check_int("n_test_times", n_test_times, 1)
    if n_times > n_grid:
        raise ValueError(
            f"n_times must be <= n_grid ({n_grid}) because each instance observes distinct "
            f"grid points, got {n_times}"
        )
    if n_test_times >= n_times:
        raise ValueError(
            f"n_test_times must be smaller than n_times ({n_times}) so that test instances "
            f"keep training rows, got {n_test_times}"
        )
    if kernel is None:
        kernel = _default_kernel()
    elif not isinstance(kernel, Kernel):
        raise TypeError(
            f"kernel must be a pyro_lmmvae.gp.Kernel or None, got {type(kernel).__name__}"
        )
    if isinstance(t_max, bool) or not isinstance(t_max, numbers.Real):
        raise ValueError(f"t_max must be a finite real number > 0, got {t_max!r}")
    t_max = float(t_max)
    if not (np.isfinite(t_max) and t_max > 0.0):
        raise ValueError(f"t_max must be finite and > 0, got {t_max}")
    random_intercept_std = _check_scale("random_intercept_std", random_intercept_std)
    latent_noise_std = _check_scale("latent_noise_std", latent_noise_std)
    noise_std = _check_scale("noise_std", noise_std)
    missing_rate = _check_rate("missing_rate", missing_rate)
    test_instance_fraction = _check_rate("test_instance_fraction", test_instance_fraction)
    val_fraction = _check_rate("val_fraction", val_fraction)
    seed = _check_int("seed", seed, 0)

    rng = np.random.default_rng(seed)
    n_rows = n_instances * n_times

    # Population trajectories: one joint GP draw per latent dimension on the grid.
    grid_t = np.linspace(0.0, t_max, n_grid)
    cov = np.asarray(kernel(grid_t[:, None] - grid_t[None, :]), dtype=np.float64)
    cov[np.diag_indices(n_grid)] += CHOLESKY_JITTER * kernel.variance
    try:
        chol = np.linalg.cholesky(cov)
    except np.linalg.LinAlgError as err:
        raise ValueError(
            f"the covariance of kernel {kernel!r} on the grid (n_grid={n_grid}, t_max={t_max}) "
            "is not positive definite even with jitter; use a coarser grid"
        ) from err
    population_z = chol @ rng.standard_normal((n_grid, latent_dim))

    # Irregular observation times: n_times distinct grid points per instance, sorted.
    grid_index = np.sort(
        np.argsort(rng.random((n_instances, n_grid)), axis=1)[:, :n_times], axis=1
    ).reshape(-1)
    inst = np.repeat(np.arange(n_instances), n_times)
    time_rank = np.tile(np.arange(n_times), n_instances)
    t = grid_t[grid_index]

    width = max(3, len(str(n_instances - 1)))
    labels = np.array([f"i{p:0{width}d}" for p in range(n_instances)], dtype=str)

    # Latents: population trajectory + random intercept + white noise.
    intercepts = rng.normal(0.0, random_intercept_std, size=(n_instances, latent_dim))
    eps = rng.normal(0.0, latent_noise_std, size=(n_rows, latent_dim))
    z = population_z[grid_index] + intercepts[inst] + eps

    # Fixed random decoder, built as in make_synthetic, with its output layer standardised:
    # every output of g*(z) has mean 0 and variance 1 over the rows, so that noise_std sets the
    # signal-to-noise ratio (1 / noise_std^2) whatever D and L are.
    truth = random_decoder(rng, latent_dim, obs_dim)
    last = len(HIDDEN_WIDTHS)
    raw = synthetic_decoder(z, truth)
    centre, spread = raw.mean(0), raw.std(0)
    spread = np.where(spread > 0, spread, 1.0)
    truth[f"decoder_W{last}"] = truth[f"decoder_W{last}"] / spread[:, None]
    truth[f"decoder_b{last}"] = (truth[f"decoder_b{last}"] - centre) / spread
    y, y_true, mask = observe(rng, synthetic_decoder(z, truth), noise_std, missing_rate)
    split = future_split(
        rng, inst, time_rank, n_times, n_test_times, test_instance_fraction, val_fraction
    )

    data = pd.DataFrame({"id": labels[inst], "t": t, "split": split.astype(str)})

    truth.update(
        {
            "grid_t": grid_t,
            "population_z": population_z,
            "random_intercepts": intercepts,
            "z": z,
            "grid_index": grid_index,
            "instance_labels": labels,
            "kernel_name": np.array(kernel.name, dtype=str),
            "kernel_variance": np.array(kernel.variance, dtype=np.float64),
            "kernel_lengthscale": np.array(kernel.lengthscale, dtype=np.float64),
            "kernel_period": np.array(
                np.nan if kernel.period is None else kernel.period, dtype=np.float64
            ),
        }
    )
    return LongitudinalDataset(
        data=data,
        y=y.astype(np.float32),
        mask=mask,
        y_true=y_true.astype(np.float32),
        truth=truth,
        name="gp_synthetic",
        instance_column="id",
    )
