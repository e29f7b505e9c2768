"""Pooling per-observation encoder outputs into one Gaussian per instance (spec §3).

The sLMM-VAE's group encoder turns the residuals ``r_i = mu_phi(y~_i) - eta_i`` and encoder
variances of an instance's rows into ``q(eps_p) = N(m_p, diag s_p^2)``. Both rules are segment
sums over the rows of a batch (``index_add``), linear in the number of rows: no Python loop over
instances.
"""

from __future__ import annotations

from typing import Literal

import torch

Pooling = Literal["precision", "mean"]
POOLINGS = ("precision", "mean")


def segment_sum(values: torch.Tensor, segments: torch.Tensor, n_segments: int) -> torch.Tensor:
    """Sum the rows of ``values`` (n, ...) into ``n_segments`` bins given by ``segments`` (n,)."""
    out = values.new_zeros((n_segments, *values.shape[1:]))
    return out.index_add(0, segments, values)


def pool_precision(
    residual: torch.Tensor,
    scale: torch.Tensor,
    segments: torch.Tensor,
    n_segments: int,
    prior_precision: torch.Tensor | float | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Precision-weighted pooling: the product of the rows' Gaussians (times the prior).

    With ``lambda_i = sigma_i^-2``: ``s_p^2 = (sum_i lambda_i [+ sigma_z^-2])^-1`` and
    ``m_p = s_p^2 ⊙ sum_i lambda_i ⊙ r_i``. For Gaussian row likelihoods ``r_i ~ N(eps_p,
    sigma_i^2)`` and prior ``eps_p ~ N(0, sigma_z^2)`` this is the exact posterior.

    Parameters
    ----------
    residual, scale : torch.Tensor
        ``r_i`` and the encoder standard deviations ``sigma_i``, (n, L).
    segments : torch.Tensor
        Instance position of each row, (n,).
    n_segments : int
        Number of instances B.
    prior_precision : float or torch.Tensor, optional
        ``sigma_z^-2`` to add to the precision sum (``include_prior_precision``).

    Returns
    -------
    (torch.Tensor, torch.Tensor)
        ``m_p`` and ``s_p``, each (B, L).
    """
    precision = scale.square().reciprocal()
    total = segment_sum(precision, segments, n_segments)
    if prior_precision is not None:
        total = total + prior_precision
    var = total.reciprocal()
    mean = var * segment_sum(precision * residual, segments, n_segments)
    return mean, var.sqrt()


def pool_mean(
    residual: torch.Tensor, scale: torch.Tensor, segments: torch.Tensor, n_segments: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Average pooling: ``m_p = n_p^-1 sum_i r_i``, ``s_p^2 = n_p^-2 sum_i sigma_i^2``.

    Parameters and returns as in :func:`pool_precision`.
    """
    count = segment_sum(torch.ones_like(residual[:, :1]), segments, n_segments)
    mean = segment_sum(residual, segments, n_segments) / count
    var = segment_sum(scale.square(), segments, n_segments) / count.square()
    return mean, var.sqrt()
