"""The latent linear mixed model shared by every variant: effects and linear predictor.

``eta_i = A_f x_i + u_{p(i)} w_i`` (spec §1). The fixed effects ``A_f`` (L, Q_f) are sampled in
``plate("latent", L, dim=-1)`` with the Q_f columns as the event; the random effects ``u``
(P, L, k) in ``plate("instances", P, subsample=batch.instances, dim=-2)`` × the latent plate,
with the k expression columns as the event. The instance plate scales their prior terms by P/B.
The random effects of a row are gathered by its instance index: never a dense one-hot product.

:class:`PointEffects` holds A as point estimates instead (parameters of the model, no prior
term): the sLMM-VAE default (spec §3).
"""

from __future__ import annotations

from collections.abc import Sequence

import pyro
import torch

from pyro_lmmvae.data import Batch
from pyro_lmmvae.prior_specs import as_prior
from pyro_lmmvae.priors import EffectPrior, RandomEffectCovariance
from pyro_lmmvae.pyro_module import LocalPyroModule

FIXED_SITE = "fixed_effects"
RANDOM_SITE = "random_effects"


def gather_rows(per_instance: torch.Tensor, local: torch.Tensor, event_dims: int = 1):
    """Each row's slice of a per-instance tensor, aligned with the obs plate.

    Parameters
    ----------
    per_instance : torch.Tensor
        (..., B, *event) with ``event_dims`` trailing dims per instance.
    local : torch.Tensor
        Position of each row's instance, (n,).
    event_dims : int, default 1

    Returns
    -------
    torch.Tensor
        (n, *event); with leading sample dims (vectorized particles, which sit left of the
        instance and latent plates) the result is (S, 1, n, *event), matching a site in
        ``plate("obs", n, dim=-1)``.
    """
    rows = per_instance.index_select(-1 - event_dims, local)
    if per_instance.dim() > 1 + event_dims:
        rows = rows.unsqueeze(-2 - event_dims)
    return rows


def linear_predictor(
    fixed: torch.Tensor | None, random: torch.Tensor | None, batch: Batch
) -> torch.Tensor:
    """``eta = A_f x + u[local] w`` for the batch's rows, shape (..., n, L).

    Parameters
    ----------
    fixed : torch.Tensor or None
        Fixed effects, (..., L, Q_f); leading dims (e.g. vectorized particles) broadcast.
    random : torch.Tensor or None
        Random effects of the batch's instances, (..., B, L, k).
    batch : Batch
    """
    eta = None
    if fixed is not None and fixed.shape[-1] > 0:
        eta = torch.einsum("...lq,nq->...nl", fixed, batch.x)
    if random is not None and random.shape[-1] > 0:
        gathered = gather_rows(random, batch.local, event_dims=2)  # (..., n, L, k)
        eta_r = torch.einsum("...nlk,nk->...nl", gathered, batch.w)
        eta = eta_r if eta is None else eta + eta_r
    return eta


class _SparseRowGather(torch.autograd.Function):
    """``table[index]`` whose gradient is a sparse COO tensor holding only the gathered rows."""

    @staticmethod
    def forward(ctx, table: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(index)
        ctx.table_shape = table.shape
        return table.index_select(0, index)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (index,) = ctx.saved_tensors
        rows = torch.sparse_coo_tensor(
            index.unsqueeze(0), grad, ctx.table_shape, check_invariants=False
        )
        return rows, None


def gather_table_rows(table: torch.Tensor, index: torch.Tensor, sparse: bool) -> torch.Tensor:
    """Rows ``table[index]`` of a per-instance parameter table.

    With ``sparse`` the gradient of ``table`` is a sparse tensor over the gathered rows only, so
    a step costs O(batch) instead of O(P) (pair it with :class:`torch.optim.SparseAdam`);
    otherwise it is the usual dense gradient.
    """
    if sparse and table.requires_grad and torch.is_grad_enabled():
        return _SparseRowGather.apply(table, index)
    return table[index]


class EffectDims(LocalPyroModule):
    """Sizes of the effect matrices: L, Q_f, k and P (the base of every effects module).

    Parameters
    ----------
    latent_dim, n_fixed, n_random, n_groups : int
        L, Q_f (0 for none), k (0 for none) and P.
    """

    def __init__(self, latent_dim: int, n_fixed: int, n_random: int, n_groups: int) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.n_fixed = n_fixed
        self.n_random = n_random
        self.n_groups = n_groups
        self.sparse_grad = False

    def instance_rows(self, table: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
        """Rows of a per-instance table (P, ...) for ``groups``.

        Their gradient is sparse when :attr:`sparse_grad` is set (the plain training loop sets
        it; see :func:`gather_table_rows`).
        """
        return gather_table_rows(table, groups, getattr(self, "sparse_grad", False))

    @property
    def random_shape(self) -> tuple[int, int, int]:
        """Shape of the per-instance table, (P, L, k); P is 0 without random effects."""
        return (self.n_groups if self.n_random else 0, self.latent_dim, self.n_random)


class EffectMeans(EffectDims):
    """Estimates (or variational means) of A_f and u as parameters.

    A_f starts at N(0, init_scale^2) entries, u at 0 (spec §2, default initialisation).
    """

    def __init__(
        self, latent_dim: int, n_fixed: int, n_random: int, n_groups: int, init_scale: float = 0.01
    ) -> None:
        super().__init__(latent_dim, n_fixed, n_random, n_groups)
        self.fixed_loc = torch.nn.Parameter(init_scale * torch.randn(latent_dim, n_fixed))
        self.random_loc = torch.nn.Parameter(torch.zeros(self.random_shape))


class EffectPlates:
    """The instance and latent plates of one model or guide run, each created once.

    Pyro records a site for every ``pyro.plate`` it creates, so a run that samples the effects
    and another instance-level site (the sLMM's ``eps``) must share one plate object per name.
    Plates are created on first use.

    Parameters
    ----------
    batch : Batch
        Gives the subsampled instances and P.
    latent_dim : int
        L.
    """

    def __init__(self, batch: Batch, latent_dim: int) -> None:
        self._batch = batch
        self._latent_dim = latent_dim
        self._instances: pyro.plate | None = None
        self._latent: pyro.plate | None = None

    @property
    def instances(self) -> pyro.plate:
        """``plate("instances", P, subsample=batch.instances, dim=-2)``: scales terms by P/B."""
        if self._instances is None:
            b = self._batch
            self._instances = pyro.plate(
                "instances", b.n_instances_total, subsample=b.instances, dim=-2
            )
        return self._instances

    @property
    def latent(self) -> pyro.plate:
        """``plate("latent", L, dim=-1)``."""
        if self._latent is None:
            self._latent = pyro.plate("latent", self._latent_dim, dim=-1)
        return self._latent


Moments = tuple[torch.Tensor, torch.Tensor]


def effect_moments(effects, batch: Batch) -> tuple[Moments | None, Moments | None]:
    """Means and variances of A_f, (L, Q_f), and of the batch's u_p, (B, L, k).

    ``None`` for a part the model does not have. The random-effect rows are gathered once
    (with sparse gradients when the effects' ``sparse_grad`` is set).
    """
    fixed = effects.fixed_moments() if effects.n_fixed else None
    random = effects.random_moments(batch.instances) if effects.n_random else None
    return fixed, random


def effect_moments_at_rows(
    effects, batch: Batch, moments: tuple[Moments | None, Moments | None] | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean ``M x̄`` and variance ``V (x̄ ⊙ x̄)`` of eta at the batch's rows, each (n, L).

    Parameters
    ----------
    effects : PointEffects or MeanFieldEffects
        Anything with ``fixed_moments()`` and ``random_moments(groups)``.
    batch : Batch
        Rows of unseen instances (``batch.instances == -1``) get the prior mean of their random
        effects, i.e. no random-effect contribution.
    moments : tuple, optional
        :func:`effect_moments` of the batch, if the caller has them already.
    """
    fixed, random = moments if moments is not None else effect_moments(effects, batch)
    n = batch.n_rows
    mean = batch.y.new_zeros(n, effects.latent_dim)
    var = batch.y.new_zeros(n, effects.latent_dim)
    if fixed is not None:
        loc, v = fixed
        mean = mean + batch.x @ loc.T
        var = var + batch.x.square() @ v.T
    if random is not None:
        loc, v = random
        mean = mean + torch.einsum("nlk,nk->nl", loc[batch.local], batch.w)
        var = var + torch.einsum("nlk,nk->nl", v[batch.local], batch.w.square())
    return mean, var


class MixedEffects(EffectDims):
    """Priors on the fixed and random effects, sampled as Pyro sites.

    Parameters
    ----------
    latent_dim : int
        L.
    n_fixed : int
        Q_f, number of fixed-effect columns (0 for none).
    n_random : int
        k, number of random-effect expression columns (0 for none).
    n_groups : int
        P, number of instances with random effects.
    fixed_prior, random_prior : EffectPrior or pyro distribution, optional
        Priors on the entries: Normal(0, 1) on the fixed effects and, on the random effects,
        :class:`~pyro_lmmvae.priors.RandomEffectCovariance` (learned variance components, the
        terms of a block correlated) by default. Swap them at any time by assigning
        ``effects.fixed_prior = dist.Laplace(0., 1.)`` (distributions are wrapped by
        :func:`~pyro_lmmvae.prior_specs.as_prior`).
    fixed_columns, random_columns : sequence of (BasisColumn or None), optional
        What each column is (``Design.fixed_bases``, ``Design.random_bases``); every prior is
        bound to them when attached, which is how a
        :class:`~pyro_lmmvae.gp.prior.SpectralPrior` finds its basis columns.
    random_blocks : sequence of sequence of int, optional
        Column indices of each block of correlated random terms (``Design.random_blocks``);
        one block per term by default.
    """

    def __init__(
        self,
        latent_dim: int,
        n_fixed: int,
        n_random: int,
        n_groups: int,
        fixed_prior: EffectPrior | pyro.distributions.TorchDistribution | str | None = None,
        random_prior: EffectPrior | pyro.distributions.TorchDistribution | str | None = None,
        fixed_columns: Sequence | None = None,
        random_columns: Sequence | None = None,
        random_blocks: Sequence[Sequence[int]] | None = None,
    ) -> None:
        super().__init__(latent_dim, n_fixed, n_random, n_groups)
        self.columns = {
            "fixed_prior": tuple(fixed_columns) if fixed_columns is not None else (None,) * n_fixed,
            "random_prior": tuple(random_columns)
            if random_columns is not None
            else (None,) * n_random,
        }
        self.random_blocks = (
            tuple(tuple(b) for b in random_blocks)
            if random_blocks is not None
            else tuple((j,) for j in range(n_random))
        )
        self.fixed_prior = fixed_prior
        self.random_prior = RandomEffectCovariance() if random_prior is None else random_prior

    def for_instances(self, n_groups: int) -> MixedEffects:
        """The same priors over ``n_groups`` new instances (for context adaptation)."""
        return MixedEffects(
            self.latent_dim,
            self.n_fixed,
            self.n_random,
            n_groups,
            self.fixed_prior,
            self.random_prior,
            self.columns["fixed_prior"],
            self.columns["random_prior"],
            self.random_blocks,
        )

    def __setattr__(self, name: str, value) -> None:
        if name in ("fixed_prior", "random_prior"):
            value = as_prior(value)
            value.bind(self.columns[name])
            if name == "random_prior" and self.n_random:
                value.bind_layout(self.latent_dim, self.random_blocks)
        super().__setattr__(name, value)

    def forward(
        self, batch: Batch, plates: EffectPlates | None = None
    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """Sample ``fixed_effects`` (L, Q_f) and the batch's ``random_effects`` (B, L, k).

        ``plates`` shares the run's plates with other sites (created here if omitted).
        """
        fixed = random = None
        plates = plates if plates is not None else EffectPlates(batch, self.latent_dim)
        if self.n_fixed:
            with plates.latent:
                prior = self.fixed_prior((self.latent_dim, self.n_fixed))
                fixed = pyro.sample(FIXED_SITE, prior.to_event(1))
        if self.n_random:
            with plates.instances, plates.latent:
                shape = (len(batch.instances), self.latent_dim, self.n_random)
                prior = self.random_prior(shape)  # entry-wise, or jointly over the k terms
                random = pyro.sample(RANDOM_SITE, prior.to_event(1 - len(prior.event_shape)))
        return fixed, random


class PointEffects(EffectMeans):
    """Point estimates of A_f (L, Q_f) and u (P, L, k): parameters, no sample sites, no prior.

    The sLMM-VAE default (spec §3) and the GSNN-sLMM instance intercepts (spec §4). Exposes the
    same moment interface as the mean-field guide factors with zero variance, so prediction and
    :meth:`~pyro_lmmvae.LMMVAE.effects` treat both alike.

    Parameters
    ----------
    latent_dim, n_fixed, n_random, n_groups : int
        L, Q_f, k and P, as in :class:`MixedEffects`.
    init_scale : float, default 0.01
        Standard deviation of the initial fixed effects; random effects start at 0.
    """

    is_point = True
    description = "point estimates (one draw, no posterior uncertainty)"

    def for_instances(self, n_groups: int) -> PointEffects:
        """Effects of ``n_groups`` new instances sharing these fixed effects (same Parameter)."""
        new = PointEffects(self.latent_dim, self.n_fixed, self.n_random, n_groups)
        new.fixed_loc = self.fixed_loc
        return new.to(self.fixed_loc.device)

    def fixed_moments(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(A_f, 0): the estimate and a zero variance, each (L, Q_f)."""
        return self.fixed_loc, torch.zeros_like(self.fixed_loc)

    def random_moments(self, groups: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(u_p, 0) for the given groups; zero for ``-1`` (unseen)."""
        seen = (groups >= 0)[:, None, None]
        loc = self.instance_rows(self.random_loc, groups.clamp(min=0)) * seen
        return loc, torch.zeros_like(loc)

    def predictor_moments(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """``eta`` at the point estimates and a zero variance, each (n, L)."""
        return effect_moments_at_rows(self, batch)

    def forward(
        self, batch: Batch, plates: EffectPlates | None = None
    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """(A_f, u of the batch's instances), like :meth:`MixedEffects.forward` but no sites."""
        if self.n_random and bool((batch.instances < 0).any()):
            raise ValueError("rows of unseen instances (-1) have no random-effect estimate")
        fixed = self.fixed_loc if self.n_fixed else None
        random = self.instance_rows(self.random_loc, batch.instances) if self.n_random else None
        return fixed, random
