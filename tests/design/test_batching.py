"""Batches: built without host round trips, evaluation chunks, and a CUDA fit's placement.

The CUDA tests need a GPU and are skipped on CPU-only machines (CI); run them where one is.
"""

from __future__ import annotations

import pytest
import torch

from pyro_lmmvae import LMMVAE
from pyro_lmmvae.datasets import make_synthetic

pytestmark = pytest.mark.usefixtures("isolated_pyro")
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.fixture(scope="module")
def data():
    return make_synthetic(n_instances=10, n_times=6, obs_dim=5, n_test_times=2, seed=2).split(
        "train"
    )


def _estimator(ds) -> LMMVAE:
    return LMMVAE(
        "~ 1 + t + g + (1 + t | id)",
        data=ds.data,
        y=ds.y,
        mask=ds.mask,
        latent_dim=2,
        standardize=False,
    )


def test_batches_from_known_row_counts_equal_counted_ones(data):
    batcher = _estimator(data).batches(batch_size=3, seed=4)
    seen = []
    for batch in batcher:  # __iter__ passes the row count it read from its host copy
        positions = torch.searchsorted(batcher._ids, batch.instances)
        counted = batcher.batch(positions)
        for name in ("x", "w", "y", "mask", "instances", "local"):
            assert torch.equal(getattr(batch, name), getattr(counted, name)), name
        seen.append(batch.instances)
    assert torch.equal(torch.sort(torch.cat(seen)).values, batcher._ids)


@pytest.mark.parametrize("max_rows", [1, 7, 50, 10**6])
def test_evaluation_chunks_cover_every_row_once_in_whole_instances(data, max_rows):
    tensors = _estimator(data).tensors()
    chunks = tensors.chunks(max_rows)
    rows = sum(chunk.n_rows for chunk in chunks)
    assert rows == len(tensors)
    instances = torch.cat([chunk.instances for chunk in chunks])
    assert torch.equal(instances, torch.unique(tensors.instance))  # each once, in order
    assert all(chunk.whole_instances and chunk.scale == 1.0 for chunk in chunks)
    longest = int(torch.unique(tensors.instance, return_counts=True)[1].max())
    assert all(chunk.n_rows < max_rows + longest for chunk in chunks)
    assert len(chunks) == (1 if max_rows >= len(tensors) else len(chunks))
    if max_rows == 1:
        assert len(chunks) == len(instances)


@cuda
def test_cuda_batches_need_no_host_synchronisation(data):
    est = _estimator(data).to("cuda")
    batcher = est.batches(batch_size=3, seed=0)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        batches = list(batcher)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert all(b.y.is_cuda and b.local.is_cuda for b in batches)


@cuda
def test_cuda_fit_keeps_every_tensor_on_the_device(data):
    est = _estimator(data)
    est.fit(max_epochs=2, batch_size=4, device="cuda", progress=False)
    assert all(p.is_cuda for p in est.pair.parameters())
    assert all(b.is_cuda for b in est.pair.buffers())
    pred = est.predict(data.data.iloc[:4])
    assert pred.shape == (4, data.y.shape[1])
