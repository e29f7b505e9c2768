"""Checkpoints that resume exactly: one atomically written file per fit.

A checkpoint holds everything a fit needs to continue as if it had never stopped: the weights of
the model and the guide, the optimizer and scheduler states, the best-validation weights and the
early-stopping counter, the history, and the random states (torch's global generator, which
drives Pyro's draws, the batch shuffler's generator and CUDA's). :meth:`~pyro_lmmvae.LMMVAE.fit`
adds the estimator (design, options, data) so that the same file also loads with
:meth:`~pyro_lmmvae.LMMVAE.load`. Files are written to a temporary name and renamed, so the
previous checkpoint stays whole until the new one is complete.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from pyro_lmmvae.io import write_atomic

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


def write_checkpoint(path: str | Path, payload: dict) -> Path:
    """Write ``payload`` (a dict holding a :class:`TrainingState`) to ``path`` atomically."""
    if not isinstance(payload.get(CHECKPOINT_KEY), TrainingState):
        raise TypeError(f"a checkpoint payload needs a TrainingState under {CHECKPOINT_KEY!r}")
    return write_atomic(path, lambda tmp: torch.save(payload, tmp))


def read_checkpoint(path: str | Path) -> dict:
    """Read a checkpoint written by :func:`write_checkpoint` (a pickle: trusted files only).

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If the file is not a checkpoint.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint at {path}")
    payload = torch.load(path, map_location="cpu", weights_only=False)
    if not isinstance(payload, dict) or not isinstance(payload.get(CHECKPOINT_KEY), TrainingState):
        raise ValueError(f"{path} is not a pyro_lmmvae checkpoint (no training state in it)")
    return payload
