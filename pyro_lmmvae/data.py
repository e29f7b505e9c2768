"""Tensors of a longitudinal dataset on one device, and batches of whole instances.

:class:`LongitudinalTensors` holds the encoded design, the observations and their mask as
tensors on the training device (moved there once). :class:`InstanceBatcher` draws batches of B
whole instances without replacement, with all of their rows; the per-instance terms of the
ELBO are then scaled by P/B (spec §2, "Minibatching"), which keeps the estimator unbiased.
Rows are gathered through CSR offsets, so a batch costs O(rows in the batch).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from .design import Design, DesignMatrices
from .validation import MAX_ABS_OBSERVATION, validate_observations  # noqa: F401 (public here too)


@dataclass(frozen=True)
class Batch:
    """The rows of a batch of whole instances.

    Attributes
    ----------
    x : torch.Tensor
        Fixed-effects rows, (n, Q_f).
    w : torch.Tensor
        Random-effects expression rows, (n, k).
    y : torch.Tensor
        Observations with unobserved entries set to 0, (n, D).
    mask : torch.Tensor
        Boolean mask of observed entries, (n, D).
    instances : torch.Tensor
        Global indices of the batch's instances, (B,); ``-1`` marks an unseen instance.
    local : torch.Tensor
        Position of each row's instance in ``instances``, (n,).
    scale : float
        ``P / B``: the factor that makes per-instance sums unbiased for the whole dataset.
    n_instances_total : int
        P, the number of instances in the population that batches are drawn from.
    whole_instances : bool, default True
        Whether the batch holds every row of each of its instances (in the tensors it was cut
        from). The sLMM-VAE's group encoder needs whole instances.
    """

    x: torch.Tensor
    w: torch.Tensor
    y: torch.Tensor
    mask: torch.Tensor
    instances: torch.Tensor
    local: torch.Tensor
    scale: float
    n_instances_total: int
    whole_instances: bool = True

    @property
    def n_rows(self) -> int:
        """Number of rows n in the batch."""
        return self.y.shape[0]

    @property
    def encoder_input(self) -> torch.Tensor:
        """``m ⊙ y``: the encoder input of spec §5."""
        return self.y * self.mask


class LongitudinalTensors:
    """Encoded rows of a dataset as tensors on one device.

    Parameters
    ----------
    matrices : DesignMatrices
        Encoded covariates.
    y, mask : numpy.ndarray
        Validated observations and mask (see :func:`validate_observations`).
    instance : numpy.ndarray
        Instance index of each row, (N,).
    device : torch.device or str
    """

    def __init__(
        self,
        matrices: DesignMatrices,
        y: np.ndarray,
        mask: np.ndarray,
        instance: np.ndarray,
        device: torch.device | str = "cpu",
    ) -> None:
        self.device = torch.device(device)
        self.x = torch.as_tensor(matrices.fixed, device=self.device)
        self.w = torch.as_tensor(matrices.random, device=self.device)
        self.y = torch.as_tensor(y, device=self.device)
        self.mask = torch.as_tensor(mask, device=self.device)
        self.instance = torch.as_tensor(instance, dtype=torch.long, device=self.device)
        self._counts: tuple[torch.Tensor, torch.Tensor] | None = None

    @classmethod
    def from_frame(
        cls,
        design: Design,
        data: pd.DataFrame,
        y: np.ndarray,
        mask: np.ndarray | None,
        *,
        device: torch.device | str = "cpu",
        unseen: str = "error",
    ) -> LongitudinalTensors:
        """Encode a DataFrame and observations with a fitted design."""
        y, mask = validate_observations(y, mask, n_rows=len(data))
        matrices = design.transform(data, unseen=unseen)
        instance = matrices.group if design.instance is not None else np.arange(len(data))
        return cls(matrices, y, mask, instance, device)

    def __len__(self) -> int:
        return self.y.shape[0]

    def rows(self, index: torch.Tensor, n_instances_total: int | None = None) -> Batch:
        """A batch of the given rows, with scale 1.

        Parameters
        ----------
        index : torch.Tensor
            Row indices.
        n_instances_total : int, optional
            P of the instance plate; defaults to the number of instances among the rows.
        """
        instances, local, counts = torch.unique(
            self.instance[index], return_inverse=True, return_counts=True
        )
        all_ids, all_counts = self._instance_counts()
        whole = bool(torch.equal(all_counts[torch.searchsorted(all_ids, instances)], counts))
        return Batch(
            x=self.x[index],
            w=self.w[index],
            y=self.y[index],
            mask=self.mask[index],
            instances=instances,
            local=local,
            scale=1.0,
            n_instances_total=int(instances.numel())
            if n_instances_total is None
            else n_instances_total,
            whole_instances=whole,
        )

    def _instance_counts(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Sorted instance ids and their row counts (computed once)."""
        if self._counts is None:
            self._counts = torch.unique(self.instance, return_counts=True)
        return self._counts

    def full_batch(self) -> Batch:
        """All rows as one batch with scale 1."""
        return self.rows(torch.arange(len(self), device=self.device))

    def chunks(self, max_rows: int = 1024) -> list[Batch]:
        """All rows as batches of whole instances of about ``max_rows`` rows, scale 1.

        For evaluation in bounded memory: large convolutional batches are slower per row than
        moderate ones (allocation and cache misses), and their activations may not fit. An
        instance starts in the chunk its first row falls in, so a chunk exceeds ``max_rows`` by
        less than one instance.
        """
        if max_rows < 1:
            raise ValueError(f"max_rows must be at least 1, got {max_rows}")
        order = torch.argsort(self.instance, stable=True)
        _, counts = self._instance_counts()
        starts = (torch.cumsum(counts, 0) - counts).cpu()
        first_of_chunk = torch.unique_consecutive(starts // max_rows, return_counts=True)[1]
        bounds = torch.cumsum(first_of_chunk, 0).tolist()
        row_bounds = [0] + [int(starts[b]) for b in bounds[:-1]] + [len(self)]
        total = int(counts.numel())
        return [
            self.rows(order[a:b], n_instances_total=total)
            for a, b in zip(row_bounds[:-1], row_bounds[1:], strict=True)
        ]


class InstanceBatcher:
    """Iterates over batches of whole instances, drawn without replacement.

    Parameters
    ----------
    tensors : LongitudinalTensors
        The training rows.
    batch_size : int
        Instances per batch B (the last batch of an epoch may be smaller).
    generator : torch.Generator, optional
        Source of the shuffling (seeded for reproducibility).
    shuffle : bool, default True
    """

    def __init__(
        self,
        tensors: LongitudinalTensors,
        batch_size: int,
        generator: torch.Generator | None = None,
        shuffle: bool = True,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.tensors = tensors
        self.batch_size = batch_size
        self.generator = generator
        self.shuffle = shuffle
        order = torch.argsort(tensors.instance, stable=True)
        ids, counts = torch.unique_consecutive(tensors.instance[order], return_counts=True)
        self._order = order
        self._ids = ids
        self._counts = counts
        self._starts = torch.cumsum(counts, 0) - counts
        self._host_counts = counts.cpu()

    @property
    def n_instances(self) -> int:
        """P: number of instances with at least one row."""
        return int(self._ids.numel())

    def __len__(self) -> int:
        return -(-self.n_instances // self.batch_size)

    def batch(self, positions: torch.Tensor, n_rows: int | None = None) -> Batch:
        """The batch of the instances at ``positions`` (indices into the instance list).

        ``n_rows``, the number of rows of those instances, spares a device-to-host read when
        the caller knows it (as :meth:`__iter__` does): on a GPU the batch is then built
        without synchronising with the host.
        """
        counts = self._counts[positions]
        starts = self._starts[positions]
        if n_rows is None:
            n_rows = int(counts.sum())
        device = counts.device
        local = torch.repeat_interleave(
            torch.arange(len(positions), device=device), counts, output_size=n_rows
        )
        offsets = torch.arange(n_rows, device=device) - torch.repeat_interleave(
            torch.cumsum(counts, 0) - counts, counts, output_size=n_rows
        )
        rows = self._order[starts[local] + offsets]
        t = self.tensors
        return Batch(
            x=t.x[rows],
            w=t.w[rows],
            y=t.y[rows],
            mask=t.mask[rows],
            instances=self._ids[positions],
            local=local,
            scale=self.n_instances / len(positions),
            n_instances_total=self.n_instances,
        )

    def __iter__(self) -> Iterator[Batch]:
        n = self.n_instances
        if self.shuffle:
            order = torch.randperm(n, generator=self.generator)
        else:
            order = torch.arange(n)
        device_order = order.to(self._ids.device)  # one host-to-device copy per epoch
        for start in range(0, n, self.batch_size):
            chunk = slice(start, start + self.batch_size)
            n_rows = int(self._host_counts[order[chunk]].sum())
            yield self.batch(device_order[chunk], n_rows)
