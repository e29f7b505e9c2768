"""Closed forms of the oLMM-VAE objective (spec §2).

These deterministic expressions are what :class:`~pyro.infer.TraceMeanField_ELBO` estimates with
one draw of the effects per step. They give a low-noise validation objective, and the tests
check Pyro's estimate against them.
"""

from __future__ import annotations

import torch


def normal_kl(
    mean: torch.Tensor, var: torch.Tensor, prior_var: torch.Tensor | float
) -> torch.Tensor:
    """Entry-wise ``KL(N(mean, var) || N(0, prior_var))``.

    ``½[(mean² + var)/prior_var − 1 − log(var/prior_var)]``.
    """
    prior_var = torch.as_tensor(prior_var, dtype=mean.dtype, device=mean.device)
    return 0.5 * ((mean.square() + var) / prior_var - 1.0 - torch.log(var / prior_var))


def expected_latent_kl(
    loc: torch.Tensor,
    scale: torch.Tensor,
    eta_mean: torch.Tensor,
    eta_var: torch.Tensor,
    latent_scale: torch.Tensor | float,
) -> torch.Tensor:
    """``E_q(A) KL(N(loc, scale²) || N(eta(A), sigma_z² I))`` per row, summed over latent dims.

    Parameters
    ----------
    loc, scale : torch.Tensor
        Encoder mean and standard deviation, (n, L).
    eta_mean, eta_var : torch.Tensor
        Mean ``M x̄`` and variance ``V(x̄ ⊙ x̄)`` of the linear predictor under q(A), (n, L).
    latent_scale : float or torch.Tensor
        sigma_z.

    Returns
    -------
    torch.Tensor
        Shape (n,):
        ``½ Σ_l [log σ_z² − log s² + (s² + (μ − Mx̄)² + V(x̄⊙x̄))/σ_z² − 1]``.
    """
    var_z = torch.as_tensor(latent_scale, dtype=loc.dtype, device=loc.device).square()
    var = scale.square()
    sq = (loc - eta_mean).square() + eta_var
    return 0.5 * (torch.log(var_z) - torch.log(var) + (var + sq) / var_z - 1.0).sum(-1)
