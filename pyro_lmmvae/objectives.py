"""Closed forms of the oLMM-VAE objective (spec §2).

These deterministic expressions are what :class:`~pyro.infer.TraceMeanField_ELBO` estimates with
one draw of the effects per step. They give a low-noise validation objective, and the tests
check Pyro's estimate against them.
"""

from __future__ import annotations

import torch
from torch.distributions import kl_divergence


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


def prior_kl(
    loc: torch.Tensor,
    var: torch.Tensor,
    prior: torch.distributions.Distribution,
    particles: int = 1,
) -> torch.Tensor:
    """``KL(N(loc, diag var) || prior)`` summed: analytic where torch registers the pair, else
    one draw of q.

    ``prior`` is entry-wise (batch shape ``loc.shape``) or joint over the last dim (event
    shape ``loc.shape[-1:]``, e.g. :class:`~pyro_lmmvae.priors.RandomEffectCovariance`); q is
    then the same diagonal Normal as a MultivariateNormal. The one-draw estimate
    ``log q(a) - log p(a)`` is unbiased, so the loss stays unbiased for priors without a
    registered KL (e.g. StudentT, Cauchy); ``particles`` draws are averaged there.
    """
    if len(prior.event_shape) == 1:
        q = torch.distributions.MultivariateNormal(loc, scale_tril=torch.diag_embed(var.sqrt()))
    else:
        q = torch.distributions.Normal(loc, var.sqrt())
    try:
        return kl_divergence(q, prior).sum()
    except NotImplementedError:
        draws = q.rsample((particles,))
        return (q.log_prob(draws) - prior.log_prob(draws)).sum() / particles


def as_multivariate_normal(
    prior: torch.distributions.Distribution,
) -> torch.distributions.MultivariateNormal | None:
    """A Gaussian prior over the last dim as a MultivariateNormal; None if it is not Gaussian.

    Entry-wise Normal priors (batch shape ``(..., k)``) become diagonal MultivariateNormals
    with event ``(k,)``; a MultivariateNormal prior is returned as it is.
    """
    base = prior
    while isinstance(base, torch.distributions.Independent):
        base = base.base_dist
    if isinstance(base, torch.distributions.MultivariateNormal):
        return base
    if type(base) is torch.distributions.Normal or type(base).__name__ == "Normal":
        loc, scale = torch.broadcast_tensors(base.loc, base.scale)
        return torch.distributions.MultivariateNormal(loc, scale_tril=torch.diag_embed(scale))
    return None


def joint_prior_kl(
    q: torch.distributions.MultivariateNormal,
    prior: torch.distributions.Distribution,
    particles: int = 1,
) -> torch.Tensor:
    """``KL(q || prior)`` summed, for a MultivariateNormal q over the last dim.

    Analytic when the prior is Gaussian (entry-wise Normal or MultivariateNormal), else the
    mean of ``particles`` draws of ``log q(a) - log p(a)`` (unbiased).
    """
    gaussian = as_multivariate_normal(prior)
    if gaussian is not None:
        return kl_divergence(q, gaussian).sum()
    draws = q.rsample((particles,))
    log_p = prior.log_prob(draws)
    if len(prior.event_shape) == 0:
        log_p = log_p.sum(-1)
    return (q.log_prob(draws) - log_p).sum() / particles


def expected_conditional_kl(
    loc: torch.Tensor,
    scale_tril: torch.Tensor,
    coupling: torch.Tensor,
    parent_cov: torch.Tensor,
    prior: torch.distributions.Distribution,
    particles: int = 1,
) -> torch.Tensor:
    """``E_{δ ~ N(0, C)} KL(N(loc + B δ, S Sᵀ) || prior)`` summed over the batch.

    For a Gaussian prior ``N(μ₀, Σ₀)`` this is, exactly,
    ``KL(N(loc, S Sᵀ + B C Bᵀ) || N(μ₀, Σ₀)) + ½ [log|S Sᵀ + B C Bᵀ| − log|S Sᵀ|]``: the
    KL of q's marginal plus the information q's coupling carries about its parent. Otherwise it
    averages ``particles`` draws of ``log q(u | δ) − log p(u)`` with δ and u drawn jointly.

    Parameters
    ----------
    loc : torch.Tensor
        Conditional mean at δ = 0, (..., k).
    scale_tril : torch.Tensor
        Conditional Cholesky factor S, (..., k, k).
    coupling : torch.Tensor
        B, (..., k, q).
    parent_cov : torch.Tensor
        C = Cov(δ), (..., q, q), broadcast against the batch.
    prior : Distribution
        Entry-wise (batch shape (..., k)) or joint over the last dim (event (k,)).
    particles : int, default 1
    """
    marginal_cov = scale_tril @ scale_tril.mT + coupling @ parent_cov @ coupling.mT
    marginal = torch.distributions.MultivariateNormal(loc, covariance_matrix=marginal_cov)
    gaussian = as_multivariate_normal(prior)
    if gaussian is not None:
        log_det_conditional = 2.0 * scale_tril.diagonal(dim1=-2, dim2=-1).log().sum(-1)
        log_det_marginal = 2.0 * marginal._unbroadcasted_scale_tril.diagonal(
            dim1=-2, dim2=-1
        ).log().sum(-1)
        return (
            kl_divergence(marginal, gaussian) + 0.5 * (log_det_marginal - log_det_conditional)
        ).sum()
    parent = torch.distributions.MultivariateNormal(
        torch.zeros(parent_cov.shape[:-1], dtype=loc.dtype, device=loc.device),
        covariance_matrix=parent_cov,
    )
    delta = parent.rsample((particles,))  # (S, ..., q) broadcast over the batch
    cond_loc = loc + (coupling @ delta.unsqueeze(-1)).squeeze(-1)
    q = torch.distributions.MultivariateNormal(cond_loc, scale_tril=scale_tril)
    draws = q.rsample()
    log_p = prior.log_prob(draws)
    if len(prior.event_shape) == 0:
        log_p = log_p.sum(-1)
    return (q.log_prob(draws) - log_p).sum() / particles
