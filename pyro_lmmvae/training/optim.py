"""The optimizer of a fit: Adam over the shared parameters, lazy Adam over the instance tables.

The per-instance random-effect parameters (``random_loc``, ``random_rho``, and for the
structured guide ``random_offdiag`` and ``random_coupling``: one row per instance, P rows) are
gathered with sparse gradients (:func:`~pyro_lmmvae.models.effects.gather_table_rows`) and
stepped by :class:`torch.optim.SparseAdam`, which updates only the rows of the batch's instances
("lazy" Adam: a row's moments advance when the row is in a batch). A step then costs O(batch)
whatever the number of instances P. Everything else (networks, fixed effects, prior
hyper-parameters) is stepped by one dense :class:`torch.optim.Adam`. Both learning rates decay
by the same factor after every epoch (spec §8).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

from pyro_lmmvae.models.effects import EffectDims

LOCAL_PARAMETERS = ("random_loc", "random_rho", "random_offdiag", "random_coupling")
"""Names of the per-instance parameters (one row per instance): the ``local_lr`` group."""


def instance_tables(module: nn.Module) -> list[nn.Parameter]:
    """The trainable per-instance parameter tables of every effects module inside ``module``."""
    found: dict[int, nn.Parameter] = {}
    for sub in module.modules():
        if isinstance(sub, EffectDims):
            for name in LOCAL_PARAMETERS:
                param = sub._parameters.get(name)
                if param is not None and param.requires_grad and param.numel():
                    found[id(param)] = param
    return list(found.values())


@contextlib.contextmanager
def sparse_instance_gradients(module: nn.Module, enabled: bool = True) -> Iterator[None]:
    """Within the block, the effects modules of ``module`` gather instance rows sparsely."""
    effects = [sub for sub in module.modules() if isinstance(sub, EffectDims)]
    before = [getattr(sub, "sparse_grad", False) for sub in effects]
    try:
        for sub in effects:
            sub.sparse_grad = enabled
        yield
    finally:
        for sub, flag in zip(effects, before, strict=True):
            sub.sparse_grad = flag


def statistical_parameters(module: nn.Module) -> list[nn.Parameter]:
    """The shared parameters of the latent LMM and the likelihood (not the networks').

    Parameters of effects modules (fixed-effect means and variances), effect priors (variance
    components, learned scales), the latent scale ``sigma_z`` and the likelihood (noise): few
    numbers of order one, which get ``effects_lr``. The per-instance tables are excluded.
    """
    from pyro_lmmvae.models import LatentScale, Likelihood  # noqa: PLC0415 (models import us)
    from pyro_lmmvae.priors import EffectPrior  # noqa: PLC0415

    kinds = (EffectDims, EffectPrior, LatentScale, Likelihood)
    tables = {id(p) for p in instance_tables(module)}
    found: dict[int, nn.Parameter] = {}
    for sub in module.modules():
        if isinstance(sub, kinds):
            for param in sub.parameters():
                if param.requires_grad and id(param) not in tables:
                    found[id(param)] = param
    return list(found.values())


def _adam(params, lr: float) -> torch.optim.Adam:
    """Adam with the fused kernel (one pass over all parameters) where torch has one.

    On a CPU it costs about half the default per-tensor loop for networks of many small
    tensors; the update rule is the same.
    """
    try:
        return torch.optim.Adam(params, lr=lr, fused=True)
    except (RuntimeError, TypeError, ValueError):  # e.g. a device without a fused kernel
        return torch.optim.Adam(params, lr=lr)


class FitOptimizer:
    """Adam + (optionally) SparseAdam with per-epoch exponential learning-rate decay.

    Parameters
    ----------
    module : torch.nn.Module
        The loss module; its trainable parameters are optimised.
    lr : float
        Learning rate of the shared parameters (of the networks, when ``effects_lr`` is given).
    lr_decay : float
        Factor applied to both learning rates after each epoch.
    local_lr : float, optional
        Learning rate of the per-instance tables (:data:`LOCAL_PARAMETERS`); ``lr`` by default.
    sparse : bool, default True
        Step the tables with :class:`torch.optim.SparseAdam` (their gradients must then be
        sparse: run the loss under :func:`sparse_instance_gradients`); otherwise they are a
        second parameter group of the dense Adam, updated on every step like the rest.
    effects_lr : float, optional
        Learning rate of the :func:`statistical_parameters` (latent LMM, priors, sigma_z,
        likelihood noise); ``lr`` (one group with the networks) when omitted.
    """

    def __init__(
        self,
        module: nn.Module,
        lr: float,
        lr_decay: float,
        local_lr: float | None = None,
        sparse: bool = True,
        effects_lr: float | None = None,
    ) -> None:
        tables = instance_tables(module)
        table_ids = {id(p) for p in tables}
        statistical = statistical_parameters(module) if effects_lr is not None else []
        stat_ids = {id(p) for p in statistical}
        networks = [
            p
            for p in module.parameters()
            if p.requires_grad and id(p) not in table_ids and id(p) not in stat_ids
        ]
        local_lr = lr if local_lr is None else local_lr
        for name, value in (("lr", lr), ("local_lr", local_lr), ("effects_lr", effects_lr)):
            if value is not None and not value >= 0:
                raise ValueError(f"{name} must be non-negative, got {value}")
        self.sparse = sparse and bool(tables)
        self.params = networks + statistical + tables
        groups = [{"params": networks}]
        if statistical:
            groups.append({"params": statistical, "lr": effects_lr})
        self.optimizers: list[torch.optim.Optimizer] = []
        if self.sparse:
            self.optimizers.append(_adam(groups, lr))
            if local_lr > 0:  # local_lr = 0 freezes the tables (SparseAdam rejects lr = 0)
                self.optimizers.append(torch.optim.SparseAdam(tables, lr=local_lr))
        else:
            if tables:
                groups.append({"params": tables, "lr": local_lr})
            self.optimizers.append(_adam(groups, lr))
        self.schedulers = [
            torch.optim.lr_scheduler.ExponentialLR(opt, gamma=lr_decay) for opt in self.optimizers
        ]

    @property
    def lr(self) -> float:
        """The current learning rate of the shared parameters."""
        return self.schedulers[0].get_last_lr()[0]

    def zero_grad(self) -> None:
        """Drop every parameter's gradient (``None``, so sparse and dense start alike)."""
        for p in self.params:
            p.grad = None

    def clip_grad_norm(self, max_norm: float) -> torch.Tensor:
        """Scale all gradients (dense and sparse) so that their joint 2-norm is ``max_norm``."""
        norms = []
        for p in self.params:
            if p.grad is None:
                continue
            if p.grad.is_sparse:
                p.grad = p.grad.coalesce()
                norms.append(p.grad.values().norm())
            else:
                norms.append(p.grad.norm())
        if not norms:
            return torch.zeros(())
        total = torch.stack(norms).norm()
        coef = (max_norm / (total + 1e-6)).clamp(max=1.0)
        for p in self.params:
            if p.grad is not None:
                p.grad = p.grad * coef
        return total

    def step(self) -> None:
        """Apply one update of every optimizer."""
        for opt in self.optimizers:
            opt.step()

    def end_epoch(self) -> None:
        """Decay the learning rates."""
        for scheduler in self.schedulers:
            scheduler.step()

    def state_dict(self) -> dict:
        """Optimizer and scheduler states, for checkpoints."""
        return {
            "sparse": self.sparse,
            "optimizers": [opt.state_dict() for opt in self.optimizers],
            "schedulers": [s.state_dict() for s in self.schedulers],
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore a :meth:`state_dict` of an optimizer built the same way."""
        if state["sparse"] != self.sparse or len(state["optimizers"]) != len(self.optimizers):
            # (the same arguments always build the same optimizers)
            raise ValueError(
                "the checkpoint's optimizer was built with sparse_updates="
                f"{state['sparse']}, this fit with sparse_updates={self.sparse}"
            )
        for opt, saved in zip(self.optimizers, state["optimizers"], strict=True):
            opt.load_state_dict(saved)
        for scheduler, saved in zip(self.schedulers, state["schedulers"], strict=True):
            scheduler.load_state_dict(saved)
