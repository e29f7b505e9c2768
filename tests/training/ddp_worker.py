"""Train a small LMM-VAE with ``LMMVAE.fit_lightning``; each process saves what it ended with.

Run as a script (Lightning's ``"ddp"`` launcher starts the other ranks by running
``sys.argv`` again)::

    python tests/training/ddp_worker.py OUTDIR --devices 2 --batch-size 4

Each rank writes ``OUTDIR/rank{r}.pt``: its final ``state_dict`` (model and guide), the
instance ids of every batch it trained on, and its history.
``tests/training/test_lightning.py`` also imports :func:`build_estimator` and :func:`run` for
the single-process reference.

The run is deterministic apart from floating-point reduction order: the encoder's log-variance
is a constant -60 (sigma = e^-30 ~ 1e-13, so the reparameterised draw ``mu + sigma * eps``
rounds to mu in float32 unless ``|mu| < ~1e-6``), and the loss takes the latent KL over q(A)
in closed form (no draw of A).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import torch
from torch import nn

LATENT_DIM = 2
FORMULA = "~ 1 + t + g + (1 + t | id)"


class ConstantVarianceEncoder(nn.Module):
    """An MLP for mu and a constant, tiny log-variance: ``(mu, -60)``."""

    def __init__(self, obs_dim: int, latent_dim: int) -> None:
        super().__init__()
        self.mu = nn.Sequential(nn.Linear(obs_dim, 16), nn.Tanh(), nn.Linear(16, latent_dim))

    def forward(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu = self.mu(y)
        return mu, torch.full_like(mu, -60.0)


def build_estimator():
    """The small model every process (and the reference) trains; same seed, same weights."""
    from pyro_lmmvae import LMMVAE
    from pyro_lmmvae.datasets import make_synthetic

    ds = make_synthetic(n_instances=16, n_times=5, obs_dim=6, n_test_times=2, seed=0)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        encoder = ConstantVarianceEncoder(ds.y.shape[1], LATENT_DIM)
    return LMMVAE(
        FORMULA,
        data=ds.data,
        y=ds.y,
        mask=ds.mask,
        latent_dim=LATENT_DIM,
        standardize=False,
        encoder=encoder,
        seed=0,
    )


def fit_options() -> dict:
    """Options of ``fit_lightning`` shared by the DDP run and the reference."""
    options = dict(max_epochs=3, lr=1e-3, lr_decay=0.9, seed=7, optimizer=torch.optim.SGD)
    options["kl"] = "closed_form"
    return options


def run(batch_size: int, devices: int, strategy: str = "auto"):
    """Fit; return the estimator, the batches seen ``[(epoch, step, ids)]`` and the rank."""
    import lightning as L

    seen: list[tuple[int, int, list[int]]] = []
    rank = {}

    class Recorder(L.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            seen.append((trainer.current_epoch, batch_idx, batch.instances.tolist()))
            rank["global"] = trainer.global_rank

    estimator = build_estimator()
    estimator.fit_lightning(
        batch_size=batch_size,
        accelerator="cpu",
        devices=devices,
        strategy=strategy,
        callbacks=[Recorder()],
        **fit_options(),
    )
    return estimator, seen, rank.get("global", 0)


def main() -> None:
    torch.set_num_threads(1)
    parser = argparse.ArgumentParser()
    parser.add_argument("outdir", type=Path)
    parser.add_argument("--devices", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--strategy", default="ddp")
    args = parser.parse_args()
    estimator, seen, rank = run(args.batch_size, args.devices, args.strategy)
    payload = {
        "rank": rank,
        "state": estimator.pair.state_dict(),
        "seen": seen,
        "train_loss": estimator.history.train_loss,
    }
    path = args.outdir / f"rank{rank}.pt"
    torch.save(payload, path.with_suffix(".tmp"))
    os.replace(path.with_suffix(".tmp"), path)  # the test waits for complete files


if __name__ == "__main__":
    sys.exit(main())
