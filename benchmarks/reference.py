"""A hand-written pure-torch oLMM-VAE training step: the floor the library is timed against.

The same model as the library's oLMM-VAE with its defaults (spec §2): N(0, 1) priors on the
entries of A_f and u_p, sigma_z from the model, a Gaussian likelihood on the observed entries,
mean-field q(A) with ``v = exp(-8 + softplus(rho + 8))``, and the closed-form expected latent KL
(no draw of A). Written from the spec with plain torch ops, independently of the library's loss
code (nothing here imports :mod:`pyro_lmmvae.objectives` or the library's loss modules): it takes
only the estimator's networks and parameter tensors.

For a batch of B whole instances (P in all, rows i, scale P/B)::

    loss = (P/B) sum_i [ E_q(A) KL(q(z_i) || N(eta_i, sigma_z^2 I)) - log p(y_i | z_i) ]
           + KL(q(A_f) || N(0, 1)) + (P/B) sum_{p in batch} KL(q(u_p) || N(0, 1))

with one ``z_i = mu_i + sigma_i * xi_i``, ``xi = torch.randn_like(mu)`` (the step's only random
draw, so a seed fixes it). Batches are cut from in-memory tensors by plain indexing
(:class:`ReferenceData`), and one dense :class:`torch.optim.Adam` steps every parameter.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

__all__ = [
    "ReferenceBatch",
    "ReferenceData",
    "ReferenceOLMM",
    "reference_optimizer",
    "reference_step",
]

_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


def _variance(rho: torch.Tensor) -> torch.Tensor:
    """Variance of a mean-field factor from its raw parameter, floored at e^-8 (spec §2)."""
    return torch.exp(F.softplus(rho + 8.0) - 8.0)


def _kl_std_normal(mean: torch.Tensor, var: torch.Tensor) -> torch.Tensor:
    """Sum over entries of KL(N(mean, var) || N(0, 1))."""
    return 0.5 * (mean * mean + var - 1.0 - torch.log(var)).sum()


@dataclass(frozen=True)
class ReferenceBatch:
    """Rows of B whole instances: covariates, observations and instance bookkeeping."""

    x: torch.Tensor  # (n, Q_f)
    w: torch.Tensor  # (n, k)
    y: torch.Tensor  # (n, D), 0 where unobserved
    mask: torch.Tensor  # (n, D) bool
    instances: torch.Tensor  # (B,) global instance indices
    local: torch.Tensor  # (n,) position of each row's instance in ``instances``
    scale: float  # P / B


class ReferenceData:
    """In-memory training tensors and batches of whole instances made by indexing.

    A padded (P, max rows) table of row indices (-1 pads) turns the instances of a batch into
    their rows with one gather and one boolean selection.

    Parameters
    ----------
    x, w, y, mask : torch.Tensor
        (N, Q_f), (N, k), (N, D) with unobserved entries 0, (N, D) bool.
    instance : torch.Tensor
        Instance index in [0, P) of every row, (N,).
    """

    def __init__(self, x, w, y, mask, instance: torch.Tensor) -> None:
        self.x, self.w, self.y, self.mask = x, w, y, mask.bool()
        instance = instance.long()
        self.n_instances = int(instance.max()) + 1
        counts = torch.bincount(instance, minlength=self.n_instances)
        order = torch.argsort(instance, stable=True)
        starts = torch.cumsum(counts, 0) - counts
        width = int(counts.max())
        slot = torch.arange(len(instance)) - starts[instance[order]]
        table = torch.full((self.n_instances, width), -1, dtype=torch.long)
        table[instance[order], slot] = order
        self.rows_of = table

    @classmethod
    def from_estimator(cls, est) -> ReferenceData:
        """The training rows of a :class:`pyro_lmmvae.LMMVAE` (its encoded design)."""
        t = est.tensors()
        return cls(t.x, t.w, t.y, t.mask, t.instance)

    def batch(self, positions: torch.Tensor) -> ReferenceBatch:
        """The batch of the instances ``positions`` (global indices)."""
        rows = self.rows_of[positions]  # (B, width)
        keep = rows >= 0
        index = rows[keep]
        local = torch.arange(len(positions)).unsqueeze(1).expand_as(rows)[keep]
        return ReferenceBatch(
            x=self.x[index],
            w=self.w[index],
            y=self.y[index],
            mask=self.mask[index],
            instances=positions,
            local=local,
            scale=self.n_instances / len(positions),
        )

    def epochs(self, batch_size: int, seed: int = 0) -> Iterator[ReferenceBatch]:
        """Endless batches: a fresh permutation of the instances per epoch, cut in B's."""
        generator = torch.Generator().manual_seed(seed)
        while True:
            perm = torch.randperm(self.n_instances, generator=generator)
            for start in range(0, self.n_instances, batch_size):
                yield self.batch(perm[start : start + batch_size])


class ReferenceOLMM(nn.Module):
    """Negative oLMM ELBO of a batch with the closed-form expected latent KL, in torch ops.

    Parameters
    ----------
    encoder : torch.nn.Module
        Network (n, D) -> (n, 2L) ``[mu, log sigma^2]`` (or a tuple of the two).
    decoder : torch.nn.Module
        Network (n, L) -> (n, D), the Gaussian means.
    fixed_loc, fixed_rho : torch.Tensor
        Means and raw variances of q(A_f), (L, Q_f).
    random_loc, random_rho : torch.Tensor
        Means and raw variances of q(u_p), (P, L, k).
    noise_raw : torch.Tensor or None
        Learned per-feature noise: ``sigma_y = noise_floor + softplus(noise_raw)``, (D,).
    noise_fixed : torch.Tensor or None
        Fixed noise standard deviation (D,), used when ``noise_raw`` is None.
    noise_floor : float
    latent_raw : torch.Tensor
        ``sigma_z = softplus(latent_raw)``.
    latent_dim : int
    """

    def __init__(
        self,
        encoder: nn.Module,
        decoder: nn.Module,
        fixed_loc: torch.Tensor,
        fixed_rho: torch.Tensor,
        random_loc: torch.Tensor,
        random_rho: torch.Tensor,
        *,
        noise_raw: torch.Tensor | None,
        noise_fixed: torch.Tensor | None,
        noise_floor: float,
        latent_raw: torch.Tensor,
        latent_dim: int,
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder
        self.latent_dim = latent_dim
        self.noise_floor = float(noise_floor)
        for name, value in (
            ("fixed_loc", fixed_loc),
            ("fixed_rho", fixed_rho),
            ("random_loc", random_loc),
            ("random_rho", random_rho),
            ("noise_raw", noise_raw),
            ("latent_raw", latent_raw),
        ):
            if isinstance(value, nn.Parameter):
                self.register_parameter(name, value)
            else:
                self.register_buffer(name, value)
        self.register_buffer("noise_fixed", noise_fixed)

    @classmethod
    def from_estimator(cls, est) -> ReferenceOLMM:
        """Share the networks and effect parameters of an oLMM :class:`~pyro_lmmvae.LMMVAE`.

        The tensors are the estimator's own Parameters (not copies): the reference and the
        library then compute the loss of the same model. ``copy.deepcopy`` the result for an
        independent copy. Needs the defaults: Bayesian N(0, 1) effects, a Gaussian likelihood,
        no mask channel, no CVAE covariates.
        """
        model, guide = est.pair.model, est.pair.guide
        encoder = guide.encoder
        if encoder.mask_channel or encoder.conditional:
            raise ValueError("the reference covers the plain encoder input m * y only")
        effects = guide.effects
        if effects is None:
            raise ValueError("the reference needs Bayesian effects (mean-field q(A))")
        likelihood = model.likelihood
        if not hasattr(likelihood, "floor"):
            raise ValueError("the reference covers the Gaussian likelihood only")
        learned = likelihood.learned
        return cls(
            encoder.network,
            model.decoder,
            effects.fixed_loc,
            effects.fixed_rho,
            effects.random_loc,
            effects.random_rho,
            noise_raw=likelihood.raw_scale if learned else None,
            noise_fixed=None if learned else likelihood.fixed_scale,
            noise_floor=likelihood.floor,
            latent_raw=model.latent_scale.raw,
            latent_dim=est.latent_dim,
        )

    def forward(self, batch: ReferenceBatch) -> torch.Tensor:
        x, w, y, mask, local = batch.x, batch.w, batch.y, batch.mask, batch.local
        n_latent = self.latent_dim

        # q(z_i | y_i) and the one reparameterised draw
        out = self.encoder(y * mask)
        mu, log_var = out if isinstance(out, tuple) else (out[:, :n_latent], out[:, n_latent:])
        sigma = torch.exp(0.5 * log_var)
        z = mu + sigma * torch.randn_like(mu)

        # moments of eta_i = A_f x_i + u_{p(i)} w_i under q(A)
        eta_mean = torch.zeros_like(mu)
        eta_var = torch.zeros_like(mu)
        kl_effects = mu.new_zeros(())
        if self.fixed_loc.shape[-1]:
            var_f = _variance(self.fixed_rho)
            eta_mean = eta_mean + x @ self.fixed_loc.t()
            eta_var = eta_var + (x * x) @ var_f.t()
            kl_effects = kl_effects + _kl_std_normal(self.fixed_loc, var_f)
        if self.random_loc.shape[-1]:
            loc_u = self.random_loc[batch.instances]  # (B, L, k)
            var_u = _variance(self.random_rho[batch.instances])
            eta_mean = eta_mean + (loc_u[local] * w.unsqueeze(1)).sum(-1)
            eta_var = eta_var + (var_u[local] * (w * w).unsqueeze(1)).sum(-1)
            kl_effects = kl_effects + batch.scale * _kl_std_normal(loc_u, var_u)

        # E_q(A) KL(N(mu, sigma^2) || N(eta, sigma_z^2)), summed over rows and latent dims
        var_z = F.softplus(self.latent_raw).square()
        var = sigma * sigma
        expected_sq = (mu - eta_mean).square() + eta_var
        latent_kl = 0.5 * (torch.log(var_z) - log_var + (var + expected_sq) / var_z - 1.0).sum()

        # Gaussian log-likelihood of the observed entries
        if self.noise_raw is not None:
            sigma_y = self.noise_floor + F.softplus(self.noise_raw)
        else:
            sigma_y = self.noise_fixed
        resid = (y - self.decoder(z)) / sigma_y
        log_lik = ((-0.5 * resid * resid - torch.log(sigma_y) - _HALF_LOG_2PI) * mask).sum()

        return batch.scale * (latent_kl - log_lik) + kl_effects


def reference_optimizer(module: nn.Module, lr: float = 1e-3, fused: bool = True):
    """One dense Adam over every trainable parameter of the reference.

    ``fused`` uses torch's fused kernel (one pass over all parameters) where the device has
    one, falling back to the default per-tensor loop; the update rule is the same.
    """
    params = [p for p in module.parameters() if p.requires_grad]
    if fused:
        try:
            return torch.optim.Adam(params, lr=lr, fused=True)
        except (RuntimeError, TypeError, ValueError):
            pass
    return torch.optim.Adam(params, lr=lr)


def reference_step(
    module: ReferenceOLMM, optimizer: torch.optim.Optimizer, batch: ReferenceBatch
) -> float:
    """Zero the gradients, compute the loss, read it (one host sync), backward, Adam step."""
    optimizer.zero_grad(set_to_none=True)
    loss = module(batch)
    value = loss.item()
    loss.backward()
    optimizer.step()
    return value
