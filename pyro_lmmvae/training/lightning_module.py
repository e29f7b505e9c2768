"""The LightningModule that trains a loss module: optimizer, logging, validation, early stopping.

:class:`LMMVAELightningModule` runs the same loss modules as the plain loop
(:mod:`pyro_lmmvae.training.loss`) on batches of whole instances
(:mod:`~pyro_lmmvae.training.lightning_data`); :func:`~pyro_lmmvae.training.lightning.fit_lightning`
builds it from an estimator and runs the trainer.

Why averaging gradients over ranks is right for the global effects
    The loss of a batch S of B instances is ``G + (P / B) sum_{p in S} l_p``: G holds the terms
    that are not per instance (e.g. ``KL(q(A_f) || p(A_f))``), ``l_p`` those of instance p
    (its rows' likelihood and latent KL, ``KL(q(u_p) || p(u_p))``), and ``Batch.scale = P / B``
    makes the sum an unbiased estimate for the whole dataset. Under DDP each of the W ranks
    builds its batch ``S_r`` of b instances, so its scale is ``P / b`` (P over the *per-rank*
    batch), and DDP averages the gradients::

        (1 / W) sum_r grad[G + (P / b) sum_{p in S_r} l_p]
            = grad G + (P / (W b)) sum_{p in S} l_p,          S = union of the S_r

    which is the gradient of one process with the global batch S of ``B = W b`` instances and
    scale ``P / B``. The global terms enter once, as in one process; summing the ranks'
    gradients instead would count them W times. Monte Carlo draws differ: each rank draws its
    own noise (torch is seeded with ``seed + rank``), and with ``kl="trace_mean_field"`` each
    rank draws its own A, so the averaged gradient averages W draws of A (same expectation).
"""

from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Callable

import lightning as L
import torch
from torch import nn
from torch.utils.data import DataLoader

from pyro_lmmvae.data import Batch
from pyro_lmmvae.training.convergence import Convergence
from pyro_lmmvae.training.lightning_data import InstanceData
from pyro_lmmvae.training.loop import NonFiniteLossError, TrainingHistory, nonfinite_message
from pyro_lmmvae.training.optim import instance_tables, statistical_parameters

__all__ = ["LMMVAELightningModule"]

OptimizerFactory = Callable[..., torch.optim.Optimizer]


class LMMVAELightningModule(L.LightningModule):
    """A loss module (``forward(batch) -> scalar``) trained by Lightning.

    The optimizer and learning-rate schedule are those of the plain loop
    (:func:`~pyro_lmmvae.training.loop.train`): Adam with an exponential decay of the learning
    rate stepped once per epoch, and an optional learning rate of its own for the per-instance
    parameters (:data:`~pyro_lmmvae.training.loop.LOCAL_PARAMETERS`).

    Logged values (``self.log``; shown in the progress bar, and sent to a logger if the trainer
    has one): ``train_loss``, each step's loss divided by the number of training rows N (the
    loss estimates the negative ELBO of the whole training set, so this estimates it per row),
    and ``train_loss_epoch``, the epoch's value that also goes to :attr:`history`.

    Parameters
    ----------
    loss : torch.nn.Module
        Returns the negative ELBO (or GSNN objective) estimate of a
        :class:`~pyro_lmmvae.data.Batch`, e.g. ``LMMVAE.loss_module()``.
    data : InstanceData, optional
        The training batches (:meth:`train_dataloader`). Without it, pass loaders of
        :class:`~pyro_lmmvae.data.Batch` objects to ``Trainer.fit(train_dataloaders=...)``.
    n_rows : int, optional
        Number of training rows N (losses are logged per row); ``data.n_rows`` by default,
        required without ``data``.
    lr : float, default 1e-3
        Learning rate of the networks.
    effects_lr : float, default 1e-2
        Learning rate of the latent LMM's shared parameters, prior hyper-parameters, sigma_z
        and the likelihood noise (as in :meth:`~pyro_lmmvae.LMMVAE.fit`).
    lr_decay : float, default 1.0
        Factor applied to the learning rates after each epoch.
    local_lr : float, optional
        Learning rate of the per-instance parameters, ``effects_lr`` by default.
    optimizer : callable, default torch.optim.Adam
        Called as ``optimizer(param_groups, lr=lr)``; e.g. ``torch.optim.SGD``.
    seed : int, optional
        Seed of the Monte Carlo draws: torch is seeded with ``seed + global_rank`` when the fit
        starts. None leaves the RNG alone.

    Attributes
    ----------
    history : TrainingHistory
        Per epoch: the mean negative ELBO per training row (the losses of all processes' steps,
        each divided by its batch's scale, summed and divided by the rows they covered; the
        plain loop's definition) and the learning rate.
    """

    def __init__(
        self,
        loss: nn.Module,
        data: InstanceData | None = None,
        *,
        n_rows: int | None = None,
        lr: float = 1e-3,
        effects_lr: float = 1e-2,
        lr_decay: float = 1.0,
        local_lr: float | None = None,
        optimizer: OptimizerFactory = torch.optim.Adam,
        seed: int | None = None,
        validation: Callable[[torch.device], Callable[[], float]] | None = None,
        n_val_rows: int | None = None,
        patience: int | None = None,
        until_converged: bool = False,
    ) -> None:
        super().__init__()
        if n_rows is None:
            if data is None:
                raise ValueError("n_rows is needed without data (the number of training rows)")
            n_rows = data.n_rows
        self.loss = loss
        self.data = data
        self.n_rows = int(n_rows)
        self.lr = lr
        self.effects_lr = effects_lr
        self.lr_decay = lr_decay
        self.local_lr = local_lr
        self.optimizer_factory = optimizer
        self.seed = seed
        self.history = TrainingHistory()
        self._epoch_total: torch.Tensor | None = None
        self._epoch_lr = math.nan
        self.validation = validation
        self.n_val_rows = n_val_rows
        self.patience = patience
        self.until_converged = until_converged
        self._validate: Callable[[], float] | None = None
        self._rule: Convergence | None = None
        self._best_state: dict | None = None
        self._best_val = math.inf
        self._stale = 0

    # ------------------------------------------------------------------ setup
    def on_fit_start(self) -> None:
        sparse = [name for name, m in self.loss.named_modules() if getattr(m, "sparse_grad", False)]
        if sparse:
            raise ValueError(
                f"the Lightning path trains with dense gradients, but sparse_grad is set on "
                f"{sparse}; unset it before fit_lightning"
            )
        if self.seed is not None:
            torch.manual_seed(self.seed + self.global_rank)

    def on_train_start(self) -> None:
        if self.validation is not None:
            self._validate = self.validation(self.device)
        monitored_rows = self.n_val_rows if self.validation is not None else self.n_rows
        steps = self.trainer.num_training_batches
        steps = steps if isinstance(steps, int) and steps > 0 else 1
        self._rule = Convergence(n_rows=monitored_rows or self.n_rows, steps_per_epoch=steps)

    def train_dataloader(self) -> DataLoader:
        """This process's loader of :attr:`data` (rank and world size from the trainer)."""
        if self.data is None:
            raise ValueError(
                "this module has no data: pass data=InstanceData(...) or train_dataloaders= "
                "to Trainer.fit"
            )
        return self.data.dataloader(self.trainer.world_size, self.trainer.global_rank)

    def configure_optimizers(self):
        tables = instance_tables(self.loss)
        statistical = statistical_parameters(self.loss)
        skip = {id(p) for p in tables} | {id(p) for p in statistical}
        networks = [p for p in self.loss.parameters() if p.requires_grad and id(p) not in skip]
        groups = [{"params": networks}]
        if statistical:
            groups.append({"params": statistical, "lr": self.effects_lr})
        if tables:
            local = self.effects_lr if self.local_lr is None else self.local_lr
            groups.append({"params": tables, "lr": local})
        optimizer = self.optimizer_factory(groups, lr=self.lr)
        scheduler = torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=self.lr_decay)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "epoch", "frequency": 1},
        }

    def transfer_batch_to_device(self, batch, device: torch.device, dataloader_idx: int):
        """Move a :class:`Batch` (a frozen dataclass) by replacing its tensor fields."""
        if isinstance(batch, Batch):
            moved = {
                f.name: getattr(batch, f.name).to(device)
                for f in dataclasses.fields(batch)
                if isinstance(getattr(batch, f.name), torch.Tensor)
            }
            return dataclasses.replace(batch, **moved)
        return super().transfer_batch_to_device(batch, device, dataloader_idx)

    # ------------------------------------------------------------------ training
    def forward(self, batch: Batch) -> torch.Tensor:
        return self.loss(batch)

    def on_train_epoch_start(self) -> None:
        # [sum of loss / scale, rows covered] of this process's steps
        wide = torch.float32 if self.device.type == "mps" else torch.float64  # (no f64 on MPS)
        self._epoch_total = torch.zeros(2, dtype=wide, device=self.device)
        # (Lightning steps an epoch-interval scheduler after the epoch's last batch, before
        # on_train_epoch_end: the epoch's learning rate is read here.)
        self._epoch_lr = float(self.trainer.optimizers[0].param_groups[0]["lr"])

    def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        failure: ValueError | None = None
        try:
            value = self.loss(batch)
        except ValueError as err:  # e.g. a distribution rejecting a NaN/inf argument
            if "not finite:" not in self._diagnosis(batch, float("nan"), batch_idx):
                raise
            failure, value = err, None
        bad = failure is not None or not bool(torch.isfinite(value.detach()))
        if self.trainer.world_size > 1:
            # Every rank must stop together: one that raised alone would leave the others
            # waiting in the gradient all-reduce.
            flag = torch.tensor(float(bad), device=self.device)
            bad_anywhere = bool(self.trainer.strategy.reduce(flag, reduce_op="sum") > 0)
        else:
            bad_anywhere = bad
        if bad_anywhere:
            if not bad:
                raise NonFiniteLossError(
                    f"the loss is not finite on another process at epoch {self.current_epoch}, "
                    f"step {batch_idx}; the weights of the last good step are kept"
                )
            number = float("nan") if value is None else float(value.detach())
            raise NonFiniteLossError(self._diagnosis(batch, number, batch_idx)) from failure
        detached = value.detach()
        total = self._epoch_total
        total += torch.stack(
            [detached.to(total.dtype) / batch.scale, total.new_tensor(batch.n_rows)]
        )
        self.log(
            "train_loss",
            detached / self.n_rows,
            on_step=True,
            on_epoch=False,
            prog_bar=True,
            batch_size=batch.n_rows,
        )
        return value

    def _diagnosis(self, batch: Batch, number: float, step: int) -> str:
        """The error message of a non-finite loss, naming what is not finite."""
        try:
            return nonfinite_message(self.loss, batch, number, self.current_epoch, step)
        except Exception:  # the diagnosis itself failed: say what is known
            return f"loss is {number} at epoch {self.current_epoch}, step {step}"

    def on_train_epoch_end(self) -> None:
        total = self._epoch_total
        if total is None:
            return
        total = self.trainer.strategy.reduce(total.clone(), reduce_op="sum")
        epoch_loss = float(total[0] / total[1]) if float(total[1]) > 0 else math.nan
        self.history.train_loss.append(epoch_loss)
        self.history.lr.append(self._epoch_lr)
        # (already summed over the processes: the same on every rank, so syncing changes nothing
        # but avoids Lightning's warning about unsynced epoch-level values)
        self.log("train_loss_epoch", epoch_loss, prog_bar=True, sync_dist=True)
        self._epoch_total = None
        history = self.history
        if self._validate is not None:  # every rank: the weights are the same on all of them
            val = float(self._validate())
            history.val_loss.append(val)
            self.log("val_objective", val, prog_bar=True, sync_dist=True)
            if val < self._best_val:
                self._best_val, self._stale = val, 0
                history.best_epoch = len(history.val_loss) - 1
                self._best_state = copy.deepcopy(self.loss.state_dict())
            else:
                self._stale += 1
        else:
            history.best_epoch = len(history.train_loss) - 1
        monitored = history.val_loss if self._validate is not None else history.train_loss
        if self.patience is not None and self._stale >= self.patience:
            history.stop_reason = "patience"
            self.trainer.should_stop = True
        elif self.until_converged and self._rule is not None and self._rule.converged(monitored):
            history.stop_reason = "converged"
            self.trainer.should_stop = True

    def on_fit_end(self) -> None:
        if not self.history.stop_reason:
            self.history.stop_reason = "epoch_cap" if self.until_converged else "max_epochs"
        if self._best_state is not None:  # the weights of the best validation epoch
            self.loss.load_state_dict(self._best_state)
