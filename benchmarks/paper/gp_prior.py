"""The additive sparse-GP latent prior of :mod:`benchmarks.paper.gp_vae` and its two bounds.

L independent channels, each ``k_s`` (shared: RBF over time, plus an ARD RBF over time and the
other covariates) as a whitened sparse GP on M inducing inputs, and an exact block-diagonal
instance part ``s_b² + k_id(t, t')`` plus white noise ``σ_z²``. :meth:`GPPrior.bound` is the
uncollapsed (SVI) bound on ``E_q log p(Z | X)`` of a batch of whole instances and
:meth:`GPPrior.collapsed` its maximum over q(u), derived in :mod:`benchmarks.paper.gp_vae`.
Kernels and the sparse-GP conditional are :mod:`pyro.contrib.gp`'s, run in Pyro's module-local
parameter mode (the global param store is never touched).
"""

from __future__ import annotations

import warnings

import numpy as np
import pyro.contrib.gp as gp
import torch
from pyro.contrib.gp.util import conditional
from torch import nn

from pyro_lmmvae.pyro_module import LocalPyroModule, local_params

__all__ = ["GPPrior", "chunks", "layout"]

JITTER = 1e-4
"""Diagonal jitter of K_ZZ (pyro's ``conditional``)."""
CHUNK = 16
"""Instances per chunk of the full-data computations (collapsed bound, prediction)."""
MIN_NOISE_VAR = 1e-4
"""Floor of the latent white-noise variance σ_z²."""
LOG_2PI = float(np.log(2 * np.pi))


def layout(codes: np.ndarray) -> tuple[np.ndarray, torch.Tensor, torch.Tensor]:
    """Rows grouped by instance: (instances, (B, T) row index padded with 0, (B, T) validity)."""
    instances, inverse, counts = np.unique(codes, return_inverse=True, return_counts=True)
    width = int(counts.max()) if len(counts) else 0
    index = np.zeros((len(instances), width), np.int64)
    valid = np.zeros((len(instances), width), bool)
    order = np.argsort(inverse, kind="stable")
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    for b, (start, count) in enumerate(zip(starts, counts, strict=True)):
        index[b, :count] = order[start : start + count]
        valid[b, :count] = True
    return instances, torch.as_tensor(index), torch.as_tensor(valid)


def chunks(codes: np.ndarray, size: int = CHUNK):
    """Row indices of consecutive chunks of ``size`` whole instances."""
    instances = np.unique(codes)
    for start in range(0, len(instances), size):
        yield np.flatnonzero(np.isin(codes, instances[start : start + size]))


def _block(mat: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """(..., n, n) → (..., B, T_r, T_c) blocks ``mat[rows[b], cols[b]]``."""
    return mat[..., rows[:, :, None], cols[:, None, :]]


class GPPrior(LocalPyroModule):
    """L independent additive sparse-GP priors (see the module docstring).

    Parameters
    ----------
    latent_dim : int
        L.
    inducing : torch.Tensor, (M, Q)
        Initial inducing inputs (standardised covariates, time first), shared initial value of
        every channel.
    """

    def __init__(self, latent_dim: int, inducing: torch.Tensor) -> None:
        super().__init__()
        n_inducing, q = inducing.shape
        self.latent_dim, self.n_inducing = latent_dim, n_inducing
        with local_params():
            self.shared = nn.ModuleList(self._shared_kernel(q) for _ in range(latent_dim))
            self.trend = nn.ModuleList(
                gp.kernels.RBF(1, variance=torch.tensor(0.1), lengthscale=torch.tensor(1.0))
                for _ in range(latent_dim)
            )
        self.log_intercept_var = nn.Parameter(torch.full((latent_dim,), np.log(0.1)))
        self.log_noise_var = nn.Parameter(torch.full((latent_dim,), np.log(0.1)))
        self.inducing = nn.Parameter(inducing.expand(latent_dim, -1, -1).clone())
        self.u_loc = nn.Parameter(torch.zeros(latent_dim, n_inducing))
        self.u_tril = nn.Parameter(torch.eye(n_inducing).expand(latent_dim, -1, -1).clone())

    @staticmethod
    def _shared_kernel(q: int) -> gp.kernels.Kernel:
        rbf_t = gp.kernels.RBF(
            1, variance=torch.tensor(1.0), lengthscale=torch.tensor(1.0), active_dims=[0]
        )
        if q == 1:
            return rbf_t
        joint = gp.kernels.RBF(q, variance=torch.tensor(0.3), lengthscale=torch.ones(q))
        return gp.kernels.Sum(rbf_t, joint)

    def time_kernel(self, channel: int) -> gp.kernels.RBF:
        """The shared RBF over time of a channel (its lengthscale is in standardised time)."""
        kernel = self.shared[channel]
        return kernel if isinstance(kernel, gp.kernels.RBF) else kernel.kern0

    def projections(self, x: torch.Tensor, channel: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Whitened ``A`` (n, M) and the residual covariance ``K̃`` (n, n) of the shared GP."""
        with local_params():
            eye = torch.eye(self.n_inducing, dtype=x.dtype, device=x.device)
            loc, resid = conditional(
                x,
                self.inducing[channel],
                self.shared[channel],
                eye,
                full_cov=True,
                whiten=True,
                jitter=JITTER,
            )
        return loc.T, resid[0]  # resid is expanded over the M columns of f_loc

    def instance_cov(self, t: torch.Tensor, channel: int) -> torch.Tensor:
        """``s_b² + k_id(t, t')`` (n, n); only its same-instance blocks are used."""
        with local_params():
            trend = self.trend[channel](t[:, None])
        return trend + self.log_intercept_var[channel].exp()

    def blocks(self, x: torch.Tensor, index: torch.Tensor, valid: torch.Tensor):
        """Per-instance blocks, stacked over channels: A (L,B,T,M), K̃ and C (L,B,T,T)."""
        a_all, resid_all, inst_all = [], [], []
        for channel in range(self.latent_dim):
            a, resid = self.projections(x, channel)
            a_all.append(a[index])
            resid_all.append(_block(resid, index, index))
            inst_all.append(_block(self.instance_cov(x[:, 0], channel), index, index))
        pair = (valid[:, :, None] & valid[:, None, :]).to(x.dtype)
        eye = torch.eye(index.shape[1], dtype=x.dtype, device=x.device)
        noise = self.noise_var()[:, None, None, None] * eye
        inst = (torch.stack(inst_all) + noise) * pair + eye * (1 - pair)  # padding: identity
        a = torch.stack(a_all) * valid[..., None].to(x.dtype)
        return a, torch.stack(resid_all) * pair, inst

    def noise_var(self) -> torch.Tensor:
        """σ_z² per channel, floored at :data:`MIN_NOISE_VAR` (keeps every C_p invertible)."""
        return self.log_noise_var.exp() + MIN_NOISE_VAR

    def kl_u(self) -> torch.Tensor:
        """Σ_l KL(N(m_l, S_l S_lᵀ) || N(0, I))."""
        tril = torch.tril(self.u_tril)
        diag = torch.diagonal(tril, dim1=-2, dim2=-1)
        trace = tril.pow(2).sum((-2, -1))
        quad = self.u_loc.pow(2).sum(-1)
        logdet = 2 * diag.abs().clamp_min(1e-12).log().sum(-1)
        return 0.5 * (trace + quad - self.n_inducing - logdet).sum()

    def bound(self, x, index, valid, mu, var) -> torch.Tensor:
        """The uncollapsed bound on Σ_l E_q log p(Z_l | X) of a batch of instances (no KL(u))."""
        a, resid, c = self.blocks(x, index, valid)
        m = valid.to(x.dtype)
        mu_b, var_b = mu.T[:, index] * m, var.T[:, index] * m  # (L, B, T)
        r = mu_b - torch.einsum("lbtm,lm->lbt", a, self.u_loc)
        a_s = torch.einsum("lbtm,lmk->lbtk", a, torch.tril(self.u_tril))
        psi = resid + a_s @ a_s.transpose(-1, -2) + torch.diag_embed(var_b)
        chol = torch.linalg.cholesky(c)
        sol = torch.cholesky_solve(r[..., None], chol)[..., 0]
        logdet = 2 * torch.diagonal(chol, dim1=-2, dim2=-1).log().sum(-1)
        trace = torch.diagonal(torch.cholesky_solve(psi, chol), dim1=-2, dim2=-1).sum(-1)
        n_valid = m.sum(-1)
        return -0.5 * ((r * sol).sum(-1) + logdet + n_valid * LOG_2PI + trace).sum()

    def collapsed_terms(self, x, index, valid, mu, var):
        """Sums over a chunk of whole instances that the collapsed bound needs, per channel:
        ``Λ`` (L, M, M), ``b`` (L, M) and ``-½ Σ_p [μ_pᵀC_p⁻¹μ_p + log|2π C_p| + tr C_p⁻¹Ψ_p]``
        (L,), ``Ψ_p = K̃_p + diag v_p``."""
        a, resid, c = self.blocks(x, index, valid)
        m = valid.to(x.dtype)
        mu_b, var_b = mu.T[:, index] * m, var.T[:, index] * m
        chol = torch.linalg.cholesky(c)
        c_inv_mu = torch.cholesky_solve(mu_b[..., None], chol)[..., 0]
        lam = torch.einsum("lbtm,lbtk->lmk", a, torch.cholesky_solve(a, chol))
        b = torch.einsum("lbtm,lbt->lm", a, c_inv_mu)
        psi = resid + torch.diag_embed(var_b)
        trace = torch.diagonal(torch.cholesky_solve(psi, chol), dim1=-2, dim2=-1).sum((-1, -2))
        logdet = 2 * torch.diagonal(chol, dim1=-2, dim2=-1).log().sum((-1, -2))
        quad = (mu_b * c_inv_mu).sum((-1, -2))
        return lam, b, -0.5 * (quad + logdet + m.sum() * LOG_2PI + trace)

    def collapsed(self, lam, b, partial):
        """The collapsed bound per channel (L,) from :meth:`collapsed_terms` summed over all
        instances, and the optimal q(u): ``m`` (L, M) and ``S Sᵀ = (I + Λ)⁻¹`` (L, M, M)."""
        eye = torch.eye(self.n_inducing, dtype=b.dtype, device=b.device)
        chol = torch.linalg.cholesky(eye + lam)
        w = torch.cholesky_solve(b[..., None], chol)[..., 0]
        logdet = 2 * torch.diagonal(chol, dim1=-2, dim2=-1).log().sum(-1)
        return partial + 0.5 * (b * w).sum(-1) - 0.5 * logdet, w, torch.cholesky_inverse(chol)

    def posterior_mean(self, x, index, valid, known, mu, var) -> torch.Tensor:
        """GP posterior mean of the latents of the rows of ``x`` (n, L), given the encoder
        outputs ``mu``, ``var`` (n, L) of the rows flagged ``known`` (n,) of the same instance:
        ``A m + (K̃ + K_id)_{·k} (K̃ + C + diag v)_{kk}⁻¹ (μ - A m)_k``."""
        a, resid, c = self.blocks(x, index, valid)
        loc = torch.einsum("lbtm,lm->lbt", a, self.u_loc)
        k = (known[index] & valid).to(x.dtype)
        new = valid.to(x.dtype) - k
        joint = resid + c
        cov = joint * k[:, :, None] * k[:, None, :] + torch.diag_embed(var.T[:, index] * k + 1 - k)
        r = (mu.T[:, index] - loc) * k
        gain = joint * new[:, :, None] * k[:, None, :]
        mean = loc + (gain @ torch.linalg.solve(cov, r[..., None]))[..., 0]
        out = torch.zeros_like(mu)
        out[index[valid]] = mean[:, valid].T
        return out

    def hyperparameters(self, channel: int) -> list[nn.Parameter]:
        """Unconstrained kernel hyperparameters of a channel (log scale for positive ones)."""
        with local_params():
            kernel_params = list(self.shared[channel].parameters())
            kernel_params += list(self.trend[channel].parameters())
        return kernel_params + [self.log_intercept_var, self.log_noise_var]

    def collapsed_bound(self, x, codes, mu, var) -> tuple[torch.Tensor, tuple]:
        """Σ_l collapsed bound of all rows (inputs ``x``, instance ``codes``, encoder outputs
        ``mu``, ``var``), summed over chunks of instances, and the optimal q(u) ``(m, S Sᵀ)``."""
        terms = []
        for rows in chunks(codes):
            _, index, valid = layout(codes[rows])
            index, valid = index.to(x.device), valid.to(x.device)
            terms.append(self.collapsed_terms(x[rows], index, valid, mu[rows], var[rows]))
        value, m, cov = self.collapsed(*(sum(t[i] for t in terms) for i in range(3)))
        return value.sum(), (m, cov)

    def all_hyperparameters(self) -> list[nn.Parameter]:
        """The unconstrained kernel hyperparameters of every channel, each once."""
        params = [p for c in range(self.latent_dim) for p in self.hyperparameters(c)]
        return list({id(p): p for p in params}.values())

    def polish(self, x, codes, mu, var, steps: int = 50) -> None:
        """Maximise :meth:`collapsed_bound` over the kernel hyperparameters (L-BFGS; its graph
        spans all rows, so keep ``steps=0`` for large data), then set q(u) to its optimum. The
        inducing inputs stay fixed. Restores the hyperparameters if L-BFGS fails."""
        if steps > 0:
            params = self.all_hyperparameters()
            optim = torch.optim.LBFGS(params, lr=0.5, max_iter=steps, line_search_fn="strong_wolfe")

            def closure():
                optim.zero_grad()
                loss = -self.collapsed_bound(x, codes, mu, var)[0]
                loss.backward()
                return loss

            saved = [p.detach().clone() for p in params]
            try:
                optim.step(closure)
            except torch.linalg.LinAlgError:  # a line-search trial made K_ZZ singular
                with torch.no_grad():
                    for p, value in zip(params, saved, strict=True):
                        p.copy_(value)
                message = "GP prior polish: L-BFGS failed; kept the previous hyperparameters"
                warnings.warn(message, RuntimeWarning, stacklevel=3)
        with torch.no_grad():
            m, cov = self.collapsed_bound(x, codes, mu, var)[1]
            self.u_loc.copy_(m)
            self.u_tril.copy_(torch.linalg.cholesky(cov))

    def lengthscale_laplace(self, x, codes, mu, var) -> tuple[np.ndarray, np.ndarray]:
        """Each channel's log time lengthscale (standardised time) and its Laplace sd.

        The Laplace approximation of :meth:`collapsed_bound` over all kernel hyperparameters:
        ``sd = sqrt([(-H)^{-1}]_{jj})``, H the Hessian in the unconstrained (log)
        hyperparameters, j the channel's log lengthscale; equivalently one over the curvature of
        the profile bound in log ℓ. Meaningful at a maximum (after :meth:`polish`).
        """
        params = self.all_hyperparameters()
        value = self.collapsed_bound(x, codes, mu, var)[0]
        flat = torch.cat(
            [g.reshape(-1) for g in torch.autograd.grad(value, params, create_graph=True)]
        )
        rows = [torch.autograd.grad(g, params, retain_graph=True) for g in flat]
        hessian = torch.stack([torch.cat([h.reshape(-1) for h in row]) for row in rows])
        cov = torch.linalg.inv(-hessian.detach().double())
        offsets = np.cumsum([0] + [p.numel() for p in params])
        logs, sds = [], []
        for c in range(self.latent_dim):
            kernel = self.time_kernel(c)
            with local_params():
                j = next(i for i, p in enumerate(params) if p is kernel.lengthscale_unconstrained)
                logs.append(float(kernel.lengthscale.detach().log()))
            sds.append(float(cov[offsets[j], offsets[j]].clamp_min(0).sqrt()))
        return np.array(logs), np.array(sds)
