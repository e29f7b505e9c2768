"""Training orchestration of :meth:`~pyro_lmmvae.LMMVAE.fit`: checks, split, validation, resume.

:func:`fit` turns the estimator's settings into one run of :func:`~pyro_lmmvae.training.loop.train`:
it checks the arguments (one-line errors before anything is trained), holds out validation rows,
builds the validation score, resumes from a checkpoint and writes one after every epoch. The
estimator (:class:`~pyro_lmmvae.LMMVAE`) keeps the public signature and documentation.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from pyro_lmmvae.data import InstanceBatcher, LongitudinalTensors
from pyro_lmmvae.persistence.estimator import estimator_payload
from pyro_lmmvae.training.checkpoint import (
    CHECKPOINT_KEY,
    TrainingState,
    read_checkpoint,
    write_checkpoint,
)
from pyro_lmmvae.training.loop import NonFiniteLossError, train
from pyro_lmmvae.validation import _int, check_fit_arguments

MAX_LOCAL_LR = 0.1
"""Cap of the default ``local_lr``: Adam steps of a random effect of order one stay small."""


def fit(estimator, *, threads: int | None = None, **settings) -> None:
    """Fit ``estimator`` in place; the arguments are those of :meth:`~pyro_lmmvae.LMMVAE.fit`.

    ``settings``: every other argument of :meth:`~pyro_lmmvae.LMMVAE.fit`, by name.
    """
    if threads is not None and not (_int(threads) and threads >= 1):
        raise ValueError(f"fit(threads={threads!r}): threads must be an integer >= 1, or None")
    with intra_op_threads(choose_threads(estimator, threads)):
        _fit(estimator, **settings)


LARGE_NETWORK = 1_000_000
"""Parameters of encoder and decoder from which a fit keeps torch's own thread count."""


def choose_threads(estimator, threads: int | None = None) -> int:
    """Intra-op threads for a fit: ``threads`` if given, else by the size of the networks.

    Small networks (MLPs, the identity network) get one thread: their per-step kernels are too
    small for a second thread to pay, and on a shared CPU the threads wait on each other.
    Convolutional networks, or networks of at least :data:`LARGE_NETWORK` parameters, keep
    ``torch.get_num_threads()``.
    """
    if threads is not None:
        return int(threads)
    networks = [getattr(estimator.pair.guide, "encoder", None), estimator.pair.model.decoder]
    modules = [m for net in networks if net is not None for m in net.modules()]
    size = sum(p.numel() for net in networks if net is not None for p in net.parameters())
    convolutional = any(isinstance(m, torch.nn.modules.conv._ConvNd) for m in modules)
    if convolutional or size >= LARGE_NETWORK:
        return torch.get_num_threads()
    return 1


@contextlib.contextmanager
def intra_op_threads(n: int) -> Iterator[None]:
    """Set torch's intra-op thread count inside the block; restore the caller's afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _fit(
    estimator,
    *,
    max_epochs,
    batch_size,
    lr,
    effects_lr,
    lr_decay,
    local_lr,
    validation,
    select,
    patience,
    clip_norm,
    device,
    progress,
    seed,
    kl,
    sparse_updates,
    checkpoint,
    resume,
) -> None:
    check_fit_arguments(
        max_epochs=max_epochs,
        batch_size=batch_size,
        lr=lr,
        effects_lr=effects_lr,
        lr_decay=lr_decay,
        local_lr=local_lr,
        patience=patience,
        clip_norm=clip_norm,
    )
    if select not in ("objective", "prediction_mse"):
        raise ValueError(f"select must be 'objective' or 'prediction_mse', got {select!r}")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device='cuda' was requested but torch.cuda.is_available() is False")
    kl = estimator._kl_estimator(kl)
    settings = {
        "batch_size": batch_size,
        "lr": lr,
        "effects_lr": effects_lr,
        "lr_decay": lr_decay,
        "local_lr": local_lr,
        "validation": validation if isinstance(validation, float | None) else "given rows",
        "select": select,
        "patience": patience,
        "clip_norm": clip_norm,
        "seed": seed,
        "kl": kl,
        "sparse_updates": sparse_updates,
    }
    resumed = resume_state(estimator, checkpoint, settings) if resume else None
    estimator._attach_hyperparameter_guide()  # a prior swapped since construction may need one
    train_rows, val_tensors = split(estimator, validation, seed, device)
    estimator.to(device)
    train_tensors = estimator._row_subset(train_rows, device)
    cuda = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):
        torch.manual_seed(seed)
        generator = torch.Generator().manual_seed(seed)
        batcher = InstanceBatcher(train_tensors, batch_size, generator)
        if local_lr is None:
            local_lr = min(effects_lr * len(batcher), MAX_LOCAL_LR)
        validate = None
        if val_tensors is not None:
            validate = validator(estimator, val_tensors, train_tensors, select, seed)
        writer = CheckpointWriter(estimator, checkpoint, settings) if checkpoint else None
        try:
            estimator.history = train(
                estimator.pair.loss_module(kl=kl),
                batcher,
                n_rows=len(train_tensors),
                max_epochs=max_epochs,
                lr=lr,
                lr_decay=lr_decay,
                local_lr=local_lr,
                effects_lr=effects_lr,
                n_val_rows=len(val_tensors) if val_tensors is not None else None,
                clip_norm=clip_norm,
                validate=validate,
                patience=patience,
                progress=progress,
                sparse_updates=sparse_updates,
                on_epoch_end=writer,
                resume=resumed,
            )
        except NonFiniteLossError as err:
            if writer is None:
                raise
            raise NonFiniteLossError(f"{err} {writer.describe()}") from err


def resume_state(estimator, checkpoint, settings: dict) -> TrainingState | None:
    """The training state to resume from, after checking it belongs to this fit."""
    if checkpoint is None:
        raise ValueError("resume=True needs checkpoint=: the file to resume from")
    if not Path(checkpoint).exists():
        return None
    payload = read_checkpoint(checkpoint)
    if payload["options"] != asdict(estimator.options):
        raise ValueError(f"{checkpoint} is a checkpoint of another model; cannot resume")
    if payload["design"]["formula"] != estimator.design.formula:
        raise ValueError(
            f"{checkpoint} was written for the formula {payload['design']['formula']!r}, "
            f"not {estimator.design.formula!r}; cannot resume"
        )
    saved = payload.get("fit_settings", {})
    differ = sorted(k for k in settings if saved.get(k) != settings[k])
    if differ:
        pairs = ", ".join(f"{k}={saved.get(k)!r} (now {settings[k]!r})" for k in differ)
        raise ValueError(f"{checkpoint} was written by a fit with other settings: {pairs}")
    return payload[CHECKPOINT_KEY]


def validator(
    estimator, val_tensors: LongitudinalTensors, train_tensors: LongitudinalTensors, select, seed
):
    """The validation score of a fit, a function of no arguments (lower is better)."""
    chunks = val_tensors.chunks()
    n_rows = len(val_tensors)
    if select == "objective":

        def validate() -> float:
            with torch.no_grad():
                g = torch.Generator().manual_seed(seed)
                total = sum(
                    float(estimator.pair.validation_objective(chunk, g)) * chunk.n_rows
                    for chunk in chunks
                )
                return total / n_rows

        return validate

    def validate_mse() -> float:
        with torch.no_grad():
            offsets = estimator._offset_table(train_tensors)
            total = 0.0
            for chunk in chunks:
                pred = estimator.pair.predict(chunk, estimator._row_offsets(offsets, chunk))
                mask = chunk.mask.to(pred.dtype)
                row_mse = ((pred - chunk.y).square() * mask).sum(-1) / mask.sum(-1)
                total += float(row_mse.sum())
            return total / n_rows

    return validate_mse


def split(estimator, validation, seed: int, device: torch.device):
    """Training row indices and validation tensors (None) of ``validation=``."""
    n = len(estimator._data)
    if validation is None:
        return np.arange(n), None
    if isinstance(validation, float):
        if not 0.0 < validation < 1.0:
            raise ValueError(f"validation fraction must be in (0, 1), got {validation}")
        rng = np.random.default_rng(seed)
        perm = rng.permutation(n)
        n_val = int(round(validation * n))
        val_rows, train_rows = np.sort(perm[:n_val]), np.sort(perm[n_val:])
        val = estimator._row_subset(val_rows, device)
        return train_rows, val
    if isinstance(validation, tuple) and len(validation) in (2, 3):
        data, y, *rest = validation
        mask = rest[0] if rest else None
        estimator.device = device
        return np.arange(n), estimator.tensors(data, y, mask)
    raise TypeError("validation must be a fraction, a (data, y, mask) tuple or None")


class CheckpointWriter:
    """Writes the estimator and the training state of a fit after every epoch."""

    def __init__(self, estimator, path: str | Path, settings: dict) -> None:
        self.estimator = estimator
        self.path = Path(path)
        self.settings = settings
        self.epoch: int | None = None

    def __call__(self, state: TrainingState) -> None:
        payload = estimator_payload(self.estimator)
        payload["history"] = state.history
        payload["fit_settings"] = self.settings
        write_checkpoint(self.path, payload, state)
        self.epoch = state.epoch

    def describe(self) -> str:
        """Which checkpoint survives a failed step."""
        if self.epoch is None:
            return f"No checkpoint was written to {self.path} in this fit."
        return (
            f"The checkpoint {self.path} is intact: it holds the state after {self.epoch} "
            "completed epoch(s)."
        )
