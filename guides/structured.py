"""Structured Gaussian factors: full-rank q(A_f) and q(u_p | A_f) linear in A_f.

Per latent dimension l::

    A_f[l]       ~ N(mu_l, L_l L_lᵀ)                               full-rank over the Q_f terms
    u_p[l] | A_f ~ N(m_pl + B_pl (A_f[l] − mu_l), S_pl S_plᵀ)       full k × k, per instance

This is the form the exact posterior of a linear-Gaussian mixed model has: given the fixed
effects, the random effects of different instances are independent Gaussians whose means are
linear in the fixed effects. The mean-field q(A_f) q(u_p) drops the coupling ``B``, so it cannot
represent how a shift of the intercept trades off against every instance's random intercept,
and its fixed-effect sds come out several times smaller than lme4's standard errors. With the
coupling they match lme4's (measured in ``benchmarks/lme4_agreement.py``).

Every closed form the library uses has a structured counterpart here: the moments of the
linear predictor (its variance picks up ``(x + Bᵀw)ᵀ L Lᵀ (x + Bᵀw)``), the marginal of
``u_p`` and ``E_q(A_f) KL(q(u_p | A_f) || p(u_p))`` (exact for Gaussian priors,
:func:`~pyro_lmmvae.objectives.expected_conditional_kl`). The guide samples the same two sites
as the mean-field one, so Pyro's ``TraceMeanField_ELBO`` trains it unchanged.
"""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import torch
from torch import nn

from pyro_lmmvae.data import Batch
from pyro_lmmvae.models.effects import FIXED_SITE, RANDOM_SITE, EffectPlates
from pyro_lmmvae.objectives import expected_conditional_kl, joint_prior_kl

from .effects import MeanFieldEffects, variance_from_rho

__all__ = ["StructuredEffects", "lower_cholesky"]


def lower_cholesky(rho: torch.Tensor, offdiag: torch.Tensor) -> torch.Tensor:
    """``diag(sqrt(variance_from_rho(rho))) + strictly_lower(offdiag)``: a Cholesky factor.

    ``rho`` (..., k), ``offdiag`` (..., k, k) (only its strictly lower triangle is used).
    """
    return torch.diag_embed(variance_from_rho(rho).sqrt()) + offdiag.tril(-1)


class StructuredEffects(MeanFieldEffects):
    """Full-rank q(A_f) and per-instance q(u_p | A_f) with a linear coupling to A_f.

    Parameters
    ----------
    latent_dim, n_fixed, n_random, n_groups : int
        L, Q_f, k and P, as in :class:`~pyro_lmmvae.models.effects.MixedEffects`.
    init_scale : float, default 0.01
        Standard deviation of the initial fixed-effect means.

    Notes
    -----
    Starts exactly where :class:`~pyro_lmmvae.guides.MeanFieldEffects` starts (zero
    off-diagonals and zero coupling). Beyond the mean-field parameters it holds
    ``fixed_offdiag`` (L, Q_f, Q_f) and, per instance, ``random_offdiag`` (P, L, k, k) and
    ``random_coupling`` (P, L, k, Q_f): the per-instance tables grow from 2k to
    k(2 + k + Q_f) numbers per instance and latent dimension.
    """

    description = "structured Gaussian variational posterior (full-rank q(A_f), q(u_p | A_f))"

    def __init__(
        self, latent_dim: int, n_fixed: int, n_random: int, n_groups: int, init_scale: float = 0.01
    ) -> None:
        super().__init__(latent_dim, n_fixed, n_random, n_groups, init_scale)
        self.fixed_offdiag = nn.Parameter(torch.zeros(latent_dim, n_fixed, n_fixed))
        p, _, k = self.random_shape
        self.random_offdiag = nn.Parameter(torch.zeros(p, latent_dim, k, k))
        self.random_coupling = nn.Parameter(torch.zeros(p, latent_dim, k, n_fixed))

    # ------------------------------------------------------------------ factors
    @property
    def fixed_scale_tril(self) -> torch.Tensor:
        """L_l, the Cholesky factor of Cov q(A_f[l]), (L, Q_f, Q_f)."""
        return lower_cholesky(self.fixed_rho, self.fixed_offdiag)

    @property
    def fixed_cov(self) -> torch.Tensor:
        """Cov q(A_f[l]) = L_l L_lᵀ, (L, Q_f, Q_f)."""
        tril = self.fixed_scale_tril
        return tril @ tril.mT

    @property
    def fixed_var(self) -> torch.Tensor:
        """Marginal variances of q(A_f), (L, Q_f)."""
        return self.fixed_scale_tril.square().sum(-1)

    def conditional(self, groups: torch.Tensor):
        """``(m_p, S_p, B_p)`` of q(u_p | A_f) for ``groups`` (all >= 0).

        Shapes (B, L, k), (B, L, k, k), (B, L, k, Q_f).
        """
        loc = self.instance_rows(self.random_loc, groups)
        tril = lower_cholesky(
            self.instance_rows(self.random_rho, groups),
            self.instance_rows(self.random_offdiag, groups),
        )
        coupling = self.instance_rows(self.random_coupling, groups)
        return loc, tril, coupling

    def _marginal_cov(self, tril: torch.Tensor, coupling: torch.Tensor) -> torch.Tensor:
        """Cov q(u_p) = S Sᵀ + B C Bᵀ, (B, L, k, k)."""
        cov = tril @ tril.mT
        if self.n_fixed:
            cov = cov + coupling @ self.fixed_cov @ coupling.mT
        return cov

    def random_moments(self, groups: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Marginal means and variances of q(u_p), (B, L, k); zero for ``-1`` (unseen)."""
        seen = (groups >= 0)[:, None, None]
        loc, tril, coupling = self.conditional(groups.clamp(min=0))
        var = self._marginal_cov(tril, coupling).diagonal(dim1=-2, dim2=-1)
        return loc * seen, var * seen

    def for_instances(self, n_groups: int) -> StructuredEffects:
        """Fresh q(u_p | A_f) for ``n_groups`` new instances; q(A_f) shared (same Parameters)."""
        new = StructuredEffects(self.latent_dim, self.n_fixed, self.n_random, n_groups)
        new.fixed_loc = self.fixed_loc
        new.fixed_rho = self.fixed_rho
        new.fixed_offdiag = self.fixed_offdiag
        new.hyper = self.hyper
        return new.to(self.fixed_loc.device)

    # ------------------------------------------------------------------ Pyro sites
    def forward(
        self, batch: Batch, plates: EffectPlates | None = None
    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """Sample A_f, then the batch's u_p given A_f; returns them like the model's effects."""
        fixed = random = None
        plates = self._start_sites(batch, plates)
        if self.n_fixed:
            with plates.latent:
                q = dist.MultivariateNormal(self.fixed_loc, scale_tril=self.fixed_scale_tril)
                fixed = pyro.sample(FIXED_SITE, q)
        if self.n_random:
            loc, tril, coupling = self.conditional(batch.instances)
            if fixed is not None:  # (..., L, Q_f) -> (..., L, 1, Q_f) against (B, L, k, Q_f)
                delta = (fixed - self.fixed_loc).unsqueeze(-2)
                loc = loc + (coupling * delta).sum(-1)
            with plates.instances, plates.latent:
                random = pyro.sample(RANDOM_SITE, dist.MultivariateNormal(loc, scale_tril=tril))
        return fixed, random

    # ------------------------------------------------------------------ closed forms
    def predictor_moments(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and variance of ``eta_i = A_f x_i + u_p w_i`` under q, each (n, L).

        ``Var eta_il = |L_lᵀ (x_i + B_plᵀ w_i)|² + |S_plᵀ w_i|²``. Rows of unseen instances
        (``-1``) get no random-effect contribution (their prior mean).
        """
        n, L = batch.n_rows, self.latent_dim
        mean = batch.y.new_zeros(n, L)
        coef = batch.x.new_zeros(n, L, self.n_fixed)  # x_i + B_pᵀ w_i per latent dim
        var = batch.y.new_zeros(n, L)
        if self.n_fixed:
            mean = mean + batch.x @ self.fixed_loc.T
            coef = coef + batch.x[:, None, :]
        if self.n_random:
            groups = batch.instances
            seen = (groups >= 0)[:, None, None]
            loc, tril, coupling = self.conditional(groups.clamp(min=0))
            rows_seen = seen[batch.local]
            w = batch.w
            mean = mean + torch.einsum("nlk,nk->nl", (loc * seen)[batch.local], w)
            spread = torch.einsum("nlkj,nk->nlj", tril[batch.local], w)
            var = var + spread.square().sum(-1) * rows_seen[..., 0]
            if self.n_fixed:
                coef = coef + torch.einsum("nlkq,nk->nlq", coupling[batch.local], w) * rows_seen
        if self.n_fixed:
            var = var + torch.einsum("nlq,lqr->nlr", coef, self.fixed_scale_tril).square().sum(-1)
        return mean, var

    def fixed_kl(self, prior: torch.distributions.Distribution) -> torch.Tensor:
        """``KL(q(A_f) || p(A_f))`` summed (analytic for Normal priors)."""
        q = torch.distributions.MultivariateNormal(self.fixed_loc, scale_tril=self.fixed_scale_tril)
        return joint_prior_kl(q, prior)

    def random_kl(
        self, prior: torch.distributions.Distribution, groups: torch.Tensor, particles: int = 1
    ) -> torch.Tensor:
        """``sum_p E_q(A_f) KL(q(u_p | A_f) || p(u_p))`` over ``groups`` (unscaled)."""
        loc, tril, coupling = self.conditional(groups)
        if self.n_fixed:
            parent = self.fixed_cov.unsqueeze(0)  # (1, L, Q_f, Q_f): one A_f for all instances
        else:
            parent = loc.new_zeros(1, self.latent_dim, 0, 0)
        return expected_conditional_kl(loc, tril, coupling, parent, prior, particles)
