"""The plain training loop: one torch optimizer over the loss module's parameters.

Adam with exponential learning-rate decay stepped once per epoch (spec §8), a validation
objective after every epoch, the best-validation weights restored at the end, a tqdm progress
bar, and a NaN/inf guard that stops before a bad step is applied and names the parameters
and sample sites that are not finite (:mod:`pyro_lmmvae.training.diagnose`).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn
from tqdm.auto import tqdm

from pyro_lmmvae.data import InstanceBatcher
from pyro_lmmvae.training.diagnose import nonfinite_sources


@dataclass
class TrainingHistory:
    """Per-epoch record of a fit.

    Attributes
    ----------
    train_loss : list of float
        Mean negative ELBO per training row of each epoch.
    val_loss : list of float
        Validation objective per row after each epoch (empty without validation data).
    best_epoch : int
        Epoch (0-based) whose weights were kept; the last epoch without validation data.
    lr : list of float
        Learning rate used in each epoch.
    """

    train_loss: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    best_epoch: int = -1

    @property
    def best_val_loss(self) -> float | None:
        """The validation objective of the kept weights."""
        return self.val_loss[self.best_epoch] if self.val_loss else None

    def to_dict(self) -> dict:
        """A JSON-serialisable copy."""
        return {
            "train_loss": self.train_loss,
            "val_loss": self.val_loss,
            "lr": self.lr,
            "best_epoch": self.best_epoch,
        }


LOCAL_PARAMETERS = ("random_loc", "random_rho")
"""Names of the per-instance parameters (one row per instance): the ``local_lr`` group."""


class NonFiniteLossError(FloatingPointError):
    """Raised when the training loss becomes NaN or infinite."""


def _nonfinite_message(loss: nn.Module, batch, number: float, epoch: int, step: int) -> str:
    """Where a non-finite loss came from, and what the caller keeps."""
    where = ""
    model, guide = getattr(loss, "model", None), getattr(loss, "guide", None)
    if model is not None and guide is not None:
        sources = nonfinite_sources(model, guide, batch)
        where = (
            f"; not finite: {', '.join(sources)}"
            if sources
            else "; every parameter and sample site is finite (the loss arithmetic overflowed)"
        )
    return (
        f"loss is {number} at epoch {epoch}, step {step}{where}. The weights of the last good "
        "step are kept. Check the data of that batch, lower the learning rate or set clip_norm."
    )


def train(
    loss: nn.Module,
    batcher: InstanceBatcher,
    *,
    n_rows: int,
    max_epochs: int,
    lr: float = 1e-3,
    lr_decay: float = 0.99,
    local_lr: float | None = None,
    clip_norm: float | None = None,
    validate: Callable[[], float] | None = None,
    patience: int | None = None,
    progress: bool = True,
    history: TrainingHistory | None = None,
) -> TrainingHistory:
    """Minimise ``loss(batch)`` over epochs of instance batches.

    Parameters
    ----------
    loss : torch.nn.Module
        Returns the negative ELBO estimate of a batch (e.g. :class:`ELBOLoss`).
    batcher : InstanceBatcher
        Batches of whole training instances.
    n_rows : int
        Number of training rows N; losses are reported per row.
    max_epochs : int
    lr : float, default 1e-3
        Adam learning rate.
    lr_decay : float, default 0.99
        Factor applied to the learning rate after each epoch.
    local_lr : float, optional
        Learning rate of the per-instance parameters (:data:`LOCAL_PARAMETERS`: the random
        effects' means and variances), ``lr`` by default. An instance's parameters are updated
        only in the one batch per epoch that holds it, and an Adam step moves a parameter by
        about its learning rate, so with ``lr`` they move at most about
        ``lr / (1 - lr_decay)`` in total (0.1 with the defaults); see BENCHMARKS.md.
    clip_norm : float, optional
        Clip the gradient norm to this value.
    validate : callable, optional
        Returns the validation objective (lower is better); the best weights are kept.
    patience : int, optional
        Stop after this many epochs without a better validation objective.
    progress : bool, default True
        Show a tqdm progress bar.
    history : TrainingHistory, optional
        A history to append to.

    Returns
    -------
    TrainingHistory
    """
    if max_epochs < 1:
        raise ValueError(f"max_epochs must be at least 1, got {max_epochs}")
    history = history if history is not None else TrainingHistory()
    named = [(name, p) for name, p in loss.named_parameters() if p.requires_grad]
    params = [p for _, p in named]
    is_local = [name.rsplit(".", 1)[-1] in LOCAL_PARAMETERS for name, _ in named]
    local = [p for p, flag in zip(params, is_local, strict=True) if flag]
    groups = [{"params": [p for p, flag in zip(params, is_local, strict=True) if not flag]}]
    if local:
        groups.append({"params": local, "lr": lr if local_lr is None else local_lr})
    optimizer = torch.optim.Adam(groups, lr=lr)
    scheduler = torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=lr_decay)
    best_state = None
    best_val = math.inf
    stale = 0
    bar = tqdm(range(max_epochs), disable=not progress, desc="fit", unit="epoch")
    for epoch in bar:
        total = 0.0
        for step, batch in enumerate(batcher):
            optimizer.zero_grad(set_to_none=True)
            try:
                value = loss(batch)
            except ValueError as err:  # e.g. a distribution rejecting a NaN/inf argument
                try:
                    message = _nonfinite_message(loss, batch, float("nan"), epoch, step)
                except Exception:
                    message = ""  # not a non-finite value: the original error stands
                if "not finite:" not in message:
                    raise
                bar.close()
                raise NonFiniteLossError(message) from err
            number = float(value.detach())  # the step's one host sync
            if not math.isfinite(number):
                bar.close()
                raise NonFiniteLossError(_nonfinite_message(loss, batch, number, epoch, step))
            value.backward()
            if clip_norm is not None:
                torch.nn.utils.clip_grad_norm_(params, clip_norm)
            optimizer.step()
            total += number / batch.scale
        history.lr.append(scheduler.get_last_lr()[0])
        scheduler.step()
        history.train_loss.append(total / n_rows)
        postfix = {"train": f"{history.train_loss[-1]:.4g}"}
        if validate is not None:
            val = float(validate())
            history.val_loss.append(val)
            postfix["val"] = f"{val:.4g}"
            if val < best_val:
                best_val = val
                history.best_epoch = len(history.val_loss) - 1
                best_state = copy.deepcopy(loss.state_dict())
                stale = 0
            else:
                stale += 1
        else:
            history.best_epoch = len(history.train_loss) - 1
        bar.set_postfix(postfix)
        if patience is not None and stale >= patience:
            break
    bar.close()
    if best_state is not None:
        loss.load_state_dict(best_state)
    return history
