"""Batches of whole training instances for Lightning, split across the processes of a trainer.

The dataset is the list of instance positions ``0..P-1`` (:class:`InstanceDataset`); a batch of
positions is turned into a :class:`~pyro_lmmvae.data.Batch` in one step by
:class:`InstanceCollate`, which indexes every row of those instances from the in-memory tensors
at once (no per-row collation). :class:`InstanceData` builds each process's loader.

Which instances a process sees
    The sampler is always a :class:`~torch.utils.data.distributed.DistributedSampler` built
    with ``num_replicas = trainer.world_size`` and ``rank = trainer.global_rank`` (1 and 0 on one
    device), ``shuffle=True`` and the fit's ``seed``; Lightning leaves such a sampler in place
    and calls its ``set_epoch`` at the start of every epoch. The sampler draws one global
    permutation ``randperm(P, generator seeded with seed + epoch)`` whatever the number of
    processes, and rank r takes ``perm[r::W]``. So the instance order of an epoch is a function
    of ``(seed, epoch)`` alone, the ranks see disjoint sets of instances that together cover all
    of them, and step s of W ranks with per-rank batch b holds the instances
    ``perm[W s b : W (s + 1) b]``: the very batch that one process with batch ``W b`` draws at
    step s. (When W does not divide P the sampler repeats the first few instances of the
    permutation so that every rank gets ``ceil(P / W)``; those are then counted twice in that
    epoch.)
"""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader, Dataset
from torch.utils.data.distributed import DistributedSampler

from pyro_lmmvae.data import Batch, InstanceBatcher, LongitudinalTensors

__all__ = ["InstanceCollate", "InstanceData", "InstanceDataset"]


class InstanceDataset(Dataset):
    """The instance positions ``0..P-1`` of a training set; item i is the int i.

    Parameters
    ----------
    n_instances : int
        P (:attr:`InstanceBatcher.n_instances`).
    """

    def __init__(self, n_instances: int) -> None:
        self.n_instances = int(n_instances)

    def __len__(self) -> int:
        return self.n_instances

    def __getitem__(self, position: int) -> int:
        if not 0 <= position < self.n_instances:
            raise IndexError(f"instance position {position} out of range 0..{self.n_instances - 1}")
        return int(position)


class InstanceCollate:
    """Collate function: a list of instance positions to the :class:`Batch` of their rows.

    Parameters
    ----------
    batcher : InstanceBatcher
        Holds the tensors; its ``batch(positions)`` gathers all rows of the instances at once.
        The batch's scale is ``P / len(positions)``.
    """

    def __init__(self, batcher: InstanceBatcher) -> None:
        self.batcher = batcher

    def __call__(self, positions: list[int]) -> Batch:
        index = torch.tensor(positions, dtype=torch.long, device=self.batcher.tensors.device)
        return self.batcher.batch(index)


class InstanceData:
    """Batches of whole training instances, split across the processes of a trainer.

    :meth:`dataloader` is called by :meth:`LMMVAELightningModule.train_dataloader` once the
    trainer knows its world size and rank; it uses a seeded
    :class:`~torch.utils.data.distributed.DistributedSampler` (see the module docstring), so the
    instance order of every epoch follows from ``seed`` and is the same global order for any
    number of processes.

    Parameters
    ----------
    tensors : LongitudinalTensors
        The training rows.
    batch_size : int
        Instances per batch *per process*; the global batch is ``batch_size * world_size``.
    seed : int, default 0
        Seed of the per-epoch permutation of the instances.
    """

    def __init__(self, tensors: LongitudinalTensors, batch_size: int, seed: int = 0) -> None:
        self.batcher = InstanceBatcher(tensors, batch_size, shuffle=False)
        self.batch_size = batch_size
        self.seed = seed

    @property
    def n_rows(self) -> int:
        """Number of training rows N."""
        return len(self.batcher.tensors)

    @property
    def n_instances(self) -> int:
        """Number of training instances P."""
        return self.batcher.n_instances

    def dataloader(self, world_size: int = 1, rank: int = 0) -> DataLoader:
        """The loader of process ``rank`` out of ``world_size``."""
        dataset = InstanceDataset(self.n_instances)
        sampler = DistributedSampler(
            dataset, num_replicas=world_size, rank=rank, shuffle=True, seed=self.seed
        )
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            sampler=sampler,
            collate_fn=InstanceCollate(self.batcher),
            num_workers=0,
        )
