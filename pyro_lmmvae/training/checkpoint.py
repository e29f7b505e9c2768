"""Checkpoints that resume exactly: one atomically written file per fit.

A checkpoint holds everything a fit needs to continue as if it had never stopped: the weights of
the model and the guide, the optimizer and scheduler states, the best-validation weights and the
early-stopping counter, the history, and the random states (torch's global generator, which
drives Pyro's draws, the batch shuffler's generator and CUDA's). :meth:`~pyro_lmmvae.LMMVAE.fit`
adds the estimator's saved values (constructor arguments, data, design encodings; see
:mod:`pyro_lmmvae.persistence`) so that the same file also loads with
:meth:`~pyro_lmmvae.LMMVAE.load`. Like a saved model, a checkpoint holds only plain values and
tensors, read with ``torch.load(weights_only=True)``. Files are written to a temporary name and
renamed, so the previous checkpoint stays whole until the new one is complete.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path

import torch

from pyro_lmmvae.persistence import ModelFileError, read_model_file, write_model_file

__all__ = ["RandomState", "TrainingState", "read_checkpoint", "write_checkpoint"]


@dataclass
class RandomState:
    """The random generators a fit draws from."""

    torch_state: torch.Tensor
    batcher_state: torch.Tensor | None = None
    cuda_states: list[torch.Tensor] = field(default_factory=list)

    @classmethod
    def capture(cls, generator: torch.Generator | None) -> RandomState:
        """The current states of torch's global RNG, ``generator`` and every CUDA device."""
        cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else []
        batcher = generator.get_state() if generator is not None else None
        return cls(torch.get_rng_state(), batcher, list(cuda))

    def restore(self, generator: torch.Generator | None) -> None:
        """Put the generators back in the captured states."""
        torch.set_rng_state(self.torch_state)
        if generator is not None and self.batcher_state is not None:
            generator.set_state(self.batcher_state)
        if self.cuda_states and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(self.cuda_states)


@dataclass
class TrainingState:
    """Where a fit stands after a completed epoch.

    Attributes
    ----------
    epoch : int
        Number of completed epochs (the next epoch to run).
    weights : dict
        ``state_dict`` of the loss module (the model's and the guide's parameters).
    optimizer : dict
        :meth:`~pyro_lmmvae.training.optim.FitOptimizer.state_dict`.
    history : dict
        :meth:`~pyro_lmmvae.training.loop.TrainingHistory.to_dict`.
    random : RandomState
    best_weights : dict or None
        Weights of the best validation epoch so far.
    best_val : float
        Its validation objective (``inf`` before the first).
    stale : int
        Epochs since the best validation objective.
    """

    epoch: int
    weights: dict
    optimizer: dict
    history: dict
    random: RandomState
    best_weights: dict | None = None
    best_val: float = float("inf")
    stale: int = 0


CHECKPOINT_KEY = "training_state"


def _state_to_plain(state: TrainingState) -> dict:
    """A TrainingState as plain values and tensors (readable with ``weights_only=True``)."""
    plain = {f.name: getattr(state, f.name) for f in fields(TrainingState)}
    plain["random"] = {f.name: getattr(state.random, f.name) for f in fields(RandomState)}
    return plain


def _state_from_plain(plain: dict) -> TrainingState:
    values = dict(plain)
    values["random"] = RandomState(**values["random"])
    return TrainingState(**values)


def write_checkpoint(path: str | Path, payload: dict, state: TrainingState) -> Path:
    """Write ``payload`` (an estimator's saved values) and ``state`` to ``path`` atomically.

    The file has the layout of a saved model (:mod:`pyro_lmmvae.persistence`) plus the training
    state, so :meth:`~pyro_lmmvae.LMMVAE.load` reads it too.
    """
    if not isinstance(state, TrainingState):
        raise TypeError(f"a checkpoint needs a TrainingState, got {type(state).__name__}")
    return write_model_file(path, {**payload, CHECKPOINT_KEY: _state_to_plain(state)})


def read_checkpoint(path: str | Path) -> dict:
    """Read a checkpoint written by :func:`write_checkpoint` (no code from the file runs).

    Returns the payload with its training state as a :class:`TrainingState`.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If the file is not a checkpoint (:class:`~pyro_lmmvae.persistence.ModelFileError` for
        files that are not model files at all).
    """
    payload = read_model_file(path)
    if not isinstance(payload.get(CHECKPOINT_KEY), dict):
        raise ModelFileError(f"{path} is a saved model, not a checkpoint (no training state)")
    return {**payload, CHECKPOINT_KEY: _state_from_plain(payload[CHECKPOINT_KEY])}
