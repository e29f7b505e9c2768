"""Training under PyTorch Lightning, on one device or data-parallel (DDP) on several.

The same loss modules as the plain loop (:mod:`pyro_lmmvae.training.loss`) drive a
:class:`LMMVAELightningModule`, whose :class:`InstanceData` makes batches of whole instances.
Its dataset is the list of instance positions ``0..P-1``; a batch of positions is turned into a
:class:`~pyro_lmmvae.data.Batch` in one step by :class:`InstanceCollate`, which indexes every row
of those instances from the in-memory tensors at once (no per-row collation).

:func:`fit_lightning` is the entry point (``LMMVAE.fit_lightning``): it splits off the
validation rows, builds the module and its data, and runs a :class:`lightning.Trainer`.
How the instances are split across processes: :mod:`~pyro_lmmvae.training.lightning_data`;
why averaging the gradients over ranks is right: :mod:`~pyro_lmmvae.training.lightning_module`.

Scope
    Validation, early stopping, the convergence rule and best-weights selection are those of
    :meth:`~pyro_lmmvae.LMMVAE.fit`; there are no checkpoints or resume. Gradients are dense:
    the sparse random-effect gradients of the plain loop (``sparse_grad`` on the effects
    modules) are not used here, and a loss module with ``sparse_grad`` set is refused.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Callable, Iterator

import lightning as L
import torch
from lightning.pytorch.utilities.warnings import PossibleUserWarning

from pyro_lmmvae.training.lightning_data import InstanceCollate, InstanceData, InstanceDataset
from pyro_lmmvae.training.lightning_module import LMMVAELightningModule, OptimizerFactory
from pyro_lmmvae.training.loop import EPOCH_CAP, ConvergenceWarning

__all__ = [
    "InstanceCollate",
    "InstanceData",
    "InstanceDataset",
    "LMMVAELightningModule",
    "fit_lightning",
]


@contextlib.contextmanager
def _quiet_lightning(quiet: bool) -> Iterator[None]:
    """Silence Lightning's info messages (device summary, DDP set-up) and two warnings.

    One suggests DataLoader workers: they would only add inter-process copies here, since a
    batch is indexed from tensors already in memory. The other is torch's deprecation of
    ``LeafSpec``, which Lightning 2.6's ``CombinedLoader`` still builds (harmless).
    """
    loggers = [logging.getLogger(name) for name in ("lightning.pytorch", "lightning.fabric")]
    levels = [logger.level for logger in loggers]
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message=".*does not have many workers.*", category=PossibleUserWarning
        )
        warnings.filterwarnings(
            "ignore", message=r".*isinstance\(treespec, LeafSpec\).*", category=FutureWarning
        )
        try:
            if quiet:
                for logger in loggers:
                    logger.setLevel(logging.WARNING)
            yield
        finally:
            for logger, level in zip(loggers, levels, strict=True):
                logger.setLevel(level)


def fit_lightning(
    estimator,
    *,
    max_epochs: int | None,
    batch_size: int,
    lr: float = 1e-3,
    lr_decay: float = 1.0,
    local_lr: float | None = None,
    effects_lr: float = 1e-2,
    seed: int = 0,
    accelerator: str = "cpu",
    devices: int | str | list[int] = 1,
    strategy: str | object = "auto",
    num_nodes: int = 1,
    kl: str | None = None,
    progress: bool = False,
    optimizer: OptimizerFactory = torch.optim.Adam,
    validation: float | tuple | None = None,
    select: str = "objective",
    patience: int | None = None,
    **trainer_kwargs,
) -> L.Trainer:
    """Train an :class:`~pyro_lmmvae.LMMVAE` with a Lightning trainer.

    Parameters
    ----------
    estimator : LMMVAE
        Trained in place; its :attr:`history` is replaced by the per-epoch training loss.
    max_epochs : int or None
        None: until the monitored objective converges (the rule of :meth:`LMMVAE.fit`), at most
        :data:`~pyro_lmmvae.training.loop.EPOCH_CAP` epochs.
    batch_size : int
        Instances per batch and process (global batch: ``batch_size`` times the world size).
    lr, effects_lr, lr_decay, local_lr
        As in :meth:`LMMVAE.fit` (``local_lr`` defaults to ``effects_lr`` here: every row is
        stepped on every step by the dense Adam).
    seed : int, default 0
        Seed of the per-epoch instance order (identical for any number of processes) and of
        the Monte Carlo draws (``seed + rank``); the caller's CPU and CUDA RNG states are
        restored afterwards (in the calling process).
    accelerator, devices, strategy, num_nodes
        Passed to :class:`lightning.Trainer`, e.g. ``devices=2, strategy="ddp"``. With
        ``strategy="ddp"`` Lightning starts the other ranks by running the calling script
        again, so call this from a script (or use ``"ddp_notebook"`` in a notebook).
    kl : {"trace_mean_field", "closed_form"}, optional
        ``LMMVAE.loss_module(kl=kl)``; the estimator's default loss when None.
    progress : bool, default False
        Progress bar, model summary and Lightning's info messages.
    optimizer : callable, default torch.optim.Adam
        Called as ``optimizer(param_groups, lr=lr)``.
    validation, select, patience
        As in :meth:`LMMVAE.fit`: held-out rows (a fraction or ``(data, y, mask)``), their
        score, and early stopping; the best-validation weights are kept. Every process scores
        all validation rows (the weights are the same on all of them).
    **trainer_kwargs
        Further :class:`lightning.Trainer` arguments (callbacks, logger, precision, ...).
        ``logger=False`` and ``enable_checkpointing=False`` unless given.

    Returns
    -------
    lightning.Trainer
        The trainer after ``fit``.

    Notes
    -----
    Validation, early stopping, the convergence rule and best-weights selection are those of
    :meth:`LMMVAE.fit`; what differs: no checkpoints or resume (use Lightning's own
    ``ModelCheckpoint``), dense gradients for the instance tables (every row moves on every
    step) and ``local_lr`` defaulting to ``effects_lr``. See
    :mod:`~pyro_lmmvae.training.lightning_data` for how batches are split across processes and
    :mod:`~pyro_lmmvae.training.lightning_module` for why averaging the gradients of DDP is the
    single-process gradient of the global batch.
    With ``"ddp_spawn"`` the weights come back to the calling process but the history does not.
    """
    if max_epochs is not None and max_epochs < 1:
        raise ValueError(f"max_epochs must be at least 1, got {max_epochs}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    if select not in ("objective", "prediction_mse"):
        raise ValueError(f"select must be 'objective' or 'prediction_mse', got {select!r}")
    from pyro_lmmvae import fitting  # noqa: PLC0415 (fitting imports the estimator's modules)

    cpu = torch.device("cpu")
    train_rows, val_tensors = fitting.split(estimator, validation, seed, cpu)
    tensors = estimator._row_subset(train_rows, cpu)

    def validation_on(device: torch.device) -> Callable[[], float]:
        """The validation score with the held-out rows on the module's device."""
        rows = fitting.split(estimator, validation, seed, device)[1]
        return fitting.validator(
            estimator, rows, estimator._row_subset(train_rows, device), select, seed
        )

    loss = estimator.loss_module() if kl is None else estimator.loss_module(kl=kl)
    module = LMMVAELightningModule(
        loss,
        InstanceData(tensors, batch_size, seed=seed),
        lr=lr,
        lr_decay=lr_decay,
        local_lr=local_lr,
        effects_lr=effects_lr,
        optimizer=optimizer,
        seed=seed,
        validation=validation_on if val_tensors is not None else None,
        n_val_rows=len(val_tensors) if val_tensors is not None else None,
        patience=patience,
        until_converged=max_epochs is None,
    )
    trainer_kwargs.setdefault("logger", False)
    trainer_kwargs.setdefault("enable_checkpointing", False)
    trainer_kwargs.setdefault("enable_progress_bar", progress)
    trainer_kwargs.setdefault("enable_model_summary", progress)
    cuda = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    with _quiet_lightning(not progress), torch.random.fork_rng(devices=cuda):
        trainer = L.Trainer(
            accelerator=accelerator,
            devices=devices,
            strategy=strategy,
            num_nodes=num_nodes,
            max_epochs=EPOCH_CAP if max_epochs is None else max_epochs,
            **trainer_kwargs,
        )
        try:
            trainer.fit(module)
        finally:
            # Lightning's teardown leaves the modules on the CPU: put them where the
            # estimator says they are.
            estimator.to(estimator.device)
    estimator.history = module.history
    if module.history.stop_reason == "epoch_cap":
        warnings.warn(
            f"training stopped at the cap of {EPOCH_CAP} epochs before the objective converged; "
            "pass a larger max_epochs",
            ConvergenceWarning,
            stacklevel=2,
        )
    return trainer
