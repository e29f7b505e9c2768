"""The plain training loop: torch optimizers over the loss module's parameters.

Adam with exponential learning-rate decay stepped once per epoch (spec §8), lazy (sparse) Adam
updates of the per-instance random-effect tables so that a step costs O(batch)
(:mod:`~pyro_lmmvae.training.optim`), distribution-argument validation on the first step only,
a validation objective after every epoch, the best-validation weights restored at the end, an
exact-resume training state after every epoch (:mod:`~pyro_lmmvae.training.checkpoint`), a tqdm
progress bar, and a NaN/inf guard that stops before a bad step is applied and names the
parameters and sample sites that are not finite (:mod:`pyro_lmmvae.training.diagnose`).
"""

from __future__ import annotations

import copy
import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import pyro
import pyro.infer
from torch import nn
from tqdm.auto import tqdm

from pyro_lmmvae.data import Batch, InstanceBatcher
from pyro_lmmvae.training.checkpoint import RandomState, TrainingState
from pyro_lmmvae.training.convergence import Convergence
from pyro_lmmvae.training.diagnose import nonfinite_sources
from pyro_lmmvae.training.optim import (
    LOCAL_PARAMETERS,
    FitOptimizer,
    sparse_instance_gradients,
)

__all__ = [
    "LOCAL_PARAMETERS",
    "NonFiniteLossError",
    "TrainingHistory",
    "nonfinite_message",
    "optimisation_step",
    "train",
]


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
    stop_reason : str
        Why training stopped: ``"converged"`` (the objective stopped improving),
        ``"epoch_cap"`` (the cap was reached first: not converged), ``"max_epochs"`` (the
        number of epochs asked for), ``"patience"`` (early stopping); empty before a fit.
    """

    train_loss: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    best_epoch: int = -1
    stop_reason: str = ""

    @property
    def best_val_loss(self) -> float | None:
        """The validation objective of the kept weights."""
        return self.val_loss[self.best_epoch] if self.val_loss else None

    @classmethod
    def from_dict(cls, record: dict) -> TrainingHistory:
        """Inverse of :meth:`to_dict`."""
        return cls(
            train_loss=list(record["train_loss"]),
            val_loss=list(record["val_loss"]),
            lr=list(record["lr"]),
            best_epoch=int(record["best_epoch"]),
            stop_reason=str(record.get("stop_reason", "")),
        )

    def to_dict(self) -> dict:
        """A JSON-serialisable copy."""
        return {
            "train_loss": self.train_loss,
            "val_loss": self.val_loss,
            "lr": self.lr,
            "best_epoch": self.best_epoch,
            "stop_reason": self.stop_reason,
        }


EPOCH_CAP = 1000
"""Most epochs of a fit without ``max_epochs`` (one that runs until convergence)."""


class ConvergenceWarning(UserWarning):
    """A fit reached its epoch cap before its objective stopped improving."""


class NonFiniteLossError(FloatingPointError):
    """Raised when the training loss becomes NaN or infinite."""


def nonfinite_message(loss: nn.Module, batch, number: float, epoch: int, step: int) -> str:
    """The error message of a non-finite loss: where it came from, and what the caller keeps.

    ``epoch`` and ``step`` are 0-based; the sources come from
    :func:`~pyro_lmmvae.training.diagnose.nonfinite_sources` (whatever it raises propagates).
    """
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


class _NonFiniteValue(ArithmeticError):
    """The loss of a step was NaN or infinite (carries the value)."""

    def __init__(self, value: float) -> None:
        super().__init__(value)
        self.value = value


def optimisation_step(
    loss: nn.Module,
    optimizer: FitOptimizer,
    batch: Batch,
    *,
    clip_norm: float | None = None,
) -> float:
    """One step of a fit: loss, finiteness check, backward, clipping, update.

    The loop's hot path, exposed for benchmarks and custom loops. Run it under
    :func:`~pyro_lmmvae.training.optim.sparse_instance_gradients` when ``optimizer.sparse``.

    Returns
    -------
    float
        The loss value of the batch (the step's one host synchronisation).

    Raises
    ------
    ArithmeticError
        If the loss is not finite; no parameter has been changed then.
    """
    optimizer.zero_grad()
    value = loss(batch)
    number = float(value.detach())
    if not math.isfinite(number):
        raise _NonFiniteValue(number)
    value.backward()
    if clip_norm is not None:
        optimizer.clip_grad_norm(clip_norm)
    optimizer.step()
    return number


def _failure_message(err: Exception, loss, batch: Batch, epoch: int, step: int) -> str:
    """The NonFiniteLossError message of a failed step; re-raises errors of other causes."""
    if isinstance(err, _NonFiniteValue):
        return nonfinite_message(loss, batch, err.value, epoch, step)
    # A ValueError, e.g. a distribution rejecting a NaN/inf argument on a validated step.
    try:
        message = nonfinite_message(loss, batch, float("nan"), epoch, step)
    except Exception:
        message = ""  # not a non-finite value: the original error stands
    if "not finite:" not in message:
        raise err
    return message


def train(
    loss: nn.Module,
    batcher: InstanceBatcher,
    *,
    n_rows: int,
    max_epochs: int | None,
    lr: float = 1e-3,
    lr_decay: float = 1.0,
    local_lr: float | None = None,
    effects_lr: float | None = None,
    n_val_rows: int | None = None,
    epoch_cap: int = EPOCH_CAP,
    clip_norm: float | None = None,
    validate: Callable[[], float] | None = None,
    patience: int | None = None,
    progress: bool | str = True,
    history: TrainingHistory | None = None,
    sparse_updates: bool = True,
    on_epoch_end: Callable[[TrainingState], None] | None = None,
    resume: TrainingState | None = None,
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
    max_epochs : int or None
        Total number of epochs, those of ``resume`` included; None trains until the monitored
        objective converges (:class:`~pyro_lmmvae.training.convergence.Convergence`), at most
        ``epoch_cap`` epochs (a :class:`ConvergenceWarning` says when the cap stopped it).
    lr : float, default 1e-3
        Adam learning rate (of the networks, when ``effects_lr`` is given).
    lr_decay : float, default 1.0
        Factor applied to the learning rates after each epoch (1: constant).
    local_lr : float, optional
        Learning rate of the per-instance parameters (:data:`LOCAL_PARAMETERS`: the random
        effects' means and variances), ``lr`` by default. An instance's parameters are updated
        only in the one batch per epoch that holds it, and Adam moves a parameter by at most
        about ``3 lr`` per epoch then, so with ``lr`` they move little over a fit (see
        BENCHMARKS.md).
    effects_lr : float, optional
        Learning rate of the latent LMM's shared parameters, the priors' hyper-parameters,
        sigma_z and the likelihood noise (``lr`` when omitted).
    n_val_rows : int, optional
        Rows behind ``validate`` (for the convergence rule's units).
    epoch_cap : int
        Most epochs when ``max_epochs`` is None.
    clip_norm : float, optional
        Clip the gradient norm to this value.
    validate : callable, optional
        Returns the validation objective (lower is better); the best weights are kept.
    patience : int, optional
        Stop after this many epochs without a better validation objective.
    progress : bool or str, default True
        Show a tqdm progress bar; a string labels it (e.g. the model's name).
    history : TrainingHistory, optional
        A history to append to.
    sparse_updates : bool, default True
        Gather the per-instance tables with sparse gradients and step them with lazy Adam
        (:class:`torch.optim.SparseAdam`), so that a step's cost does not grow with the number
        of instances; ``False`` steps them with the dense Adam (every row, every step).
    on_epoch_end : callable, optional
        Called with the :class:`~pyro_lmmvae.training.checkpoint.TrainingState` after every
        completed epoch (e.g. to write a checkpoint).
    resume : TrainingState, optional
        Continue a fit from this state: weights, optimizer, history and random states are
        restored, and training runs from its epoch to ``max_epochs``.

    Returns
    -------
    TrainingHistory
    """
    if max_epochs is not None and max_epochs < 1:
        raise ValueError(f"max_epochs must be at least 1, got {max_epochs}")
    optimizer = FitOptimizer(
        loss, lr, lr_decay, local_lr, sparse=sparse_updates, effects_lr=effects_lr
    )
    until_converged = max_epochs is None
    last_epoch = epoch_cap if until_converged else max_epochs
    rule = Convergence(
        n_rows=n_val_rows if validate is not None and n_val_rows else n_rows,
        steps_per_epoch=len(batcher),
    )
    history = history if history is not None else TrainingHistory()
    best_state, best_val, stale, start = None, math.inf, 0, 0
    if resume is not None:
        loss.load_state_dict(resume.weights)
        optimizer.load_state_dict(resume.optimizer)
        history = TrainingHistory.from_dict(resume.history)
        best_state, best_val, stale = resume.best_weights, resume.best_val, resume.stale
        start = resume.epoch
        resume.random.restore(batcher.generator)
    validating = pyro.infer.is_validation_enabled()
    sparse = sparse_instance_gradients(loss, enabled=optimizer.sparse)
    monitored = history.val_loss if validate is not None else history.train_loss
    stopped = (patience is not None and stale >= patience) or (
        until_converged and rule.converged(monitored)
    )
    bar = tqdm(
        range(start, last_epoch if not stopped else start),
        disable=not progress,
        desc=progress if isinstance(progress, str) else "fit",
        unit="epoch",
    )
    # Distribution arguments are validated on the first step only: they are the same
    # computation on every later step, and validation costs a large share of a small step.
    with sparse, pyro.validation_enabled(False):
        for epoch in bar:
            total = 0.0
            for step, batch in enumerate(batcher):
                try:
                    with pyro.validation_enabled(validating and epoch == start and step == 0):
                        number = optimisation_step(loss, optimizer, batch, clip_norm=clip_norm)
                except (ValueError, _NonFiniteValue) as err:
                    message = _failure_message(err, loss, batch, epoch, step)
                    bar.close()
                    raise NonFiniteLossError(message) from err
                total += number / batch.scale
            history.lr.append(optimizer.lr)
            optimizer.end_epoch()
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
            if on_epoch_end is not None:
                on_epoch_end(
                    TrainingState(
                        epoch=epoch + 1,
                        weights=copy.deepcopy(loss.state_dict()),
                        optimizer=copy.deepcopy(optimizer.state_dict()),
                        history=copy.deepcopy(history.to_dict()),
                        random=RandomState.capture(batcher.generator),
                        best_weights=best_state,
                        best_val=best_val,
                        stale=stale,
                    )
                )
            if patience is not None and stale >= patience:
                history.stop_reason = "patience"
                break
            if until_converged and rule.converged(monitored):
                history.stop_reason = "converged"
                break
        else:
            if not stopped:
                history.stop_reason = "epoch_cap" if until_converged else "max_epochs"
    bar.close()
    if history.stop_reason == "epoch_cap":
        warnings.warn(
            f"training stopped at the cap of {epoch_cap} epochs before the "
            f"{'validation' if validate is not None else 'training'} objective converged; "
            "pass a larger max_epochs, or raise effects_lr/lr if it was still improving "
            "steadily",
            ConvergenceWarning,
            stacklevel=3,
        )
    if best_state is not None:
        loss.load_state_dict(best_state)
    return history
