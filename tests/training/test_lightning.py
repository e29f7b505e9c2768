"""The Lightning training path: one process, and DDP on two CPU processes (gloo)."""

from __future__ import annotations

import dataclasses
import os
import pickle
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from torch import nn

pytest.importorskip("lightning")

import lightning as L  # noqa: E402
from ddp_worker import build_estimator, run  # noqa: E402

from pyro_lmmvae import LMMVAE  # noqa: E402
from pyro_lmmvae.datasets import make_synthetic  # noqa: E402
from pyro_lmmvae.training.lightning import (  # noqa: E402
    InstanceCollate,
    InstanceData,
    InstanceDataset,
    LMMVAELightningModule,
    fit_lightning,
)
from pyro_lmmvae.training.loop import NonFiniteLossError  # noqa: E402

WORKER = Path(__file__).with_name("ddp_worker.py")
ROOT = WORKER.parent.parent

#: float32 unit roundoff.
U = 2.0**-24
#: Bound on the relative difference, between two summation orders, of one step's gradient,
#: taken relative to the size of the parameters' movement. A gradient entry is a sum over the
#: rows of the global batch (here 8 instances x 5 rows = 40) of products through layers at most
#: 128 wide; recursive summation of m terms is exact to gamma_m = m u / (1 - m u) relative to
#: the sum of the absolute terms, m <= 40 + 128 gives ~1e-5, and 10 for cancellation between
#: terms gives 1e-4. A few small SGD steps (lr * curvature << 1) do not amplify it.
GRADIENT_REL = 1e-4


@pytest.fixture(scope="module")
def synthetic():
    return make_synthetic(n_instances=16, n_times=5, obs_dim=6, n_test_times=2, seed=0)


def small_model(ds, **options) -> LMMVAE:
    return LMMVAE(
        "~ 1 + t + g + (1 + t | id)",
        data=ds.data,
        y=ds.y,
        mask=ds.mask,
        latent_dim=2,
        standardize=False,
        **options,
    )


def state(model: LMMVAE) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.pair.state_dict().items()}


# ---------------------------------------------------------------------- one process
def test_single_process_fit_trains_and_is_reproducible(isolated_pyro, synthetic):
    model = small_model(synthetic)
    before = state(model)
    rng = torch.get_rng_state()
    out = model.fit_lightning(max_epochs=4, batch_size=4, accelerator="cpu", lr=1e-2)
    assert out is model
    assert torch.equal(torch.get_rng_state(), rng)  # the caller's RNG state is restored
    h = model.history
    assert len(h.train_loss) == 4 and len(h.lr) == 4 and h.best_epoch == 3
    assert all(torch.isfinite(torch.tensor(h.train_loss)))
    assert h.train_loss[-1] < h.train_loss[0]
    assert h.lr == pytest.approx([1e-2] * 4)  # no decay by default
    after = state(model)
    moved = [k for k in before if not torch.equal(before[k], after[k])]
    assert any("decoder" in k for k in moved) and any("encoder" in k for k in moved)
    assert any(k.endswith("random_loc") for k in moved)
    assert model.latents().shape == (len(synthetic.data), 2)

    again = small_model(synthetic)
    again.fit_lightning(max_epochs=4, batch_size=4, accelerator="cpu", lr=1e-2)
    assert all(torch.equal(after[k], v) for k, v in state(again).items())
    assert again.history.train_loss == h.train_loss


def test_validation_early_stopping_and_best_weights_as_in_fit(isolated_pyro, synthetic):
    """fit_lightning holds out rows, stops by patience or convergence, keeps the best weights."""
    from pyro_lmmvae import fitting

    model = small_model(synthetic)
    model.fit_lightning(
        batch_size=4, accelerator="cpu", lr=1e-2, validation=0.25, patience=3, seed=0
    )
    h = model.history
    assert h.stop_reason in ("patience", "converged")
    assert len(h.val_loss) == len(h.train_loss) >= 4
    assert h.best_epoch == min(range(len(h.val_loss)), key=h.val_loss.__getitem__)
    if h.stop_reason == "patience":
        assert h.best_epoch == len(h.val_loss) - 4  # three epochs without improvement
    cpu = torch.device("cpu")
    train_rows, val_rows = fitting.split(model, 0.25, 0, cpu)
    score = fitting.validator(model, val_rows, model._row_subset(train_rows, cpu), "objective", 0)
    assert score() == pytest.approx(h.best_val_loss, rel=1e-6)  # the kept weights are the best


def test_import_does_not_import_lightning():
    code = "import sys, pyro_lmmvae; assert 'lightning' not in sys.modules, 'imported'"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, timeout=120)


def test_dataset_collate_and_sampler_split(synthetic):
    model = small_model(synthetic)
    data = InstanceData(model.tensors(), batch_size=3, seed=5)
    dataset = InstanceDataset(data.n_instances)
    assert len(dataset) == 16 and dataset[4] == 4
    with pytest.raises(IndexError):
        dataset[16]
    collate = pickle.loads(pickle.dumps(InstanceCollate(data.batcher)))
    batch = collate([2, 0, 7])
    assert batch.instances.tolist() == [2, 0, 7]
    assert batch.scale == pytest.approx(16 / 3) and batch.n_rows == 15

    one = data.dataloader(1, 0)
    two = [data.dataloader(2, r) for r in (0, 1)]
    for loader in (one, *two):
        loader.sampler.set_epoch(3)
    order = [i for b in one for i in b.instances.tolist()]
    parts = [[i for b in loader for i in b.instances.tolist()] for loader in two]
    assert sorted(order) == list(range(16))
    assert order[0::2] == parts[0] and order[1::2] == parts[1]
    one.sampler.set_epoch(4)
    assert [i for b in one for i in b.instances.tolist()] != order  # a new order per epoch


def test_batch_transfer_hook_moves_the_frozen_dataclass(synthetic):
    model = small_model(synthetic)
    module = LMMVAELightningModule(model.loss_module(), n_rows=80)
    batch = InstanceData(model.tensors(), 4).batcher.batch(torch.tensor([1, 3]))
    moved = module.transfer_batch_to_device(batch, torch.device("meta"), 0)
    for field in dataclasses.fields(batch):
        value = getattr(moved, field.name)
        if isinstance(value, torch.Tensor):
            assert value.device.type == "meta"
        else:
            assert value == getattr(batch, field.name)


def test_local_lr_param_group(synthetic):
    model = small_model(synthetic)
    module = LMMVAELightningModule(model.loss_module(), n_rows=80, lr=1e-3, local_lr=0.5)
    optimizer = module.configure_optimizers()["optimizer"]
    # networks at lr, the latent LMM's shared parameters at effects_lr, the tables at local_lr
    assert [g["lr"] for g in optimizer.param_groups] == [1e-3, 1e-2, 0.5]
    statistical = {id(p) for p in optimizer.param_groups[1]["params"]}
    names = {n for n, p in model.pair.named_parameters() if id(p) in statistical}
    assert "guide.effects.fixed_loc" in names and "model.latent_scale.raw" in names
    assert not any(n.startswith(("guide.encoder", "model.decoder")) for n in names)
    local = {id(p) for p in optimizer.param_groups[2]["params"]}
    names = {n for n, p in model.pair.named_parameters() if id(p) in local}
    assert names and all(n.rsplit(".", 1)[-1] in ("random_loc", "random_rho") for n in names)


@pytest.mark.filterwarnings("ignore:.*LeafSpec:FutureWarning")  # Lightning 2.6 on torch 2.13
def test_nonfinite_loss_raises(synthetic):
    class NaNLoss(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = nn.Parameter(torch.ones(()))

        def forward(self, batch):
            return self.w * float("nan")

    model = small_model(synthetic)
    data = InstanceData(model.tensors(), 8)
    module = LMMVAELightningModule(NaNLoss(), data)
    trainer = L.Trainer(
        accelerator="cpu",
        max_epochs=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    with pytest.raises(NonFiniteLossError, match="loss is nan at epoch 0, step 0"):
        trainer.fit(module)
    assert torch.equal(module.loss.w.detach(), torch.ones(()))


def test_fit_lightning_returns_the_trainer(isolated_pyro, synthetic):
    model = small_model(synthetic)
    trainer = fit_lightning(model, max_epochs=1, batch_size=16, kl="trace_mean_field")
    assert isinstance(trainer, L.Trainer) and trainer.current_epoch == 1
    assert trainer.logger is None and not trainer.checkpoint_callbacks


# ---------------------------------------------------------------------- DDP
def _wait_for(paths: list[Path], timeout: float) -> None:
    # Lightning's rank 0 (the script's own process) does not wait for the other ranks to exit.
    deadline = time.monotonic() + timeout
    while not all(p.exists() for p in paths):
        if time.monotonic() > deadline:
            raise TimeoutError(f"missing: {[str(p) for p in paths if not p.exists()]}")
        time.sleep(0.1)


def test_ddp_two_processes_match_one_process_with_the_global_batch(isolated_pyro, tmp_path):
    per_rank = 4
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("MASTER_ADDR", "MASTER_PORT", "WORLD_SIZE", "NODE_RANK", "LOCAL_RANK")
    }
    env["OMP_NUM_THREADS"] = "1"
    command = [sys.executable, str(WORKER), str(tmp_path), "--devices", "2"]
    command += ["--batch-size", str(per_rank), "--strategy", "ddp"]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    files = [tmp_path / f"rank{r}.pt" for r in (0, 1)]
    _wait_for(files, timeout=60)
    ranks = [torch.load(f, weights_only=False) for f in files]
    assert [r["rank"] for r in ranks] == [0, 1]

    # (i) DDP keeps the replicas identical, bit for bit.
    for key, value in ranks[0]["state"].items():
        assert torch.equal(value, ranks[1]["state"][key]), key

    # (iii) each epoch, the ranks train on disjoint instances that together cover all of them,
    # and step s of the two ranks holds the instances of step s of one process with batch 2b.
    reference, seen, _ = run(2 * per_rank, devices=1)
    by_step = [{(e, s): set(ids) for e, s, ids in r["seen"]} for r in ranks]
    assert by_step[0].keys() == by_step[1].keys() == {(e, s) for e, s, _ in seen}
    for e, s, ids in seen:
        a, b = by_step[0][(e, s)], by_step[1][(e, s)]
        assert len(a) == len(b) == per_rank and not a & b
        assert a | b == set(ids)
    for epoch in {e for e, _, _ in seen}:
        mine = [set().union(*(v for (e, _), v in steps.items() if e == epoch)) for steps in by_step]
        assert not mine[0] & mine[1] and mine[0] | mine[1] == set(range(16))

    # (ii) the averaged DDP gradient is the one-process gradient of the global batch: the
    # weights agree up to float32 reduction order (see GRADIENT_REL).
    steps = len(seen)
    init = state(build_estimator())
    ref = state(reference)
    moved = 0
    for key, value in ref.items():
        movement = (value - init[key]).abs().max()
        tol = steps * U * value.abs().max() + GRADIENT_REL * movement
        diff = (ranks[0]["state"][key] - value).abs().max()
        assert diff <= tol, f"{key}: |DDP - one process| = {diff:.3g} > {tol:.3g}"
        moved += bool(movement > 1e-3)
    assert moved >= 10  # the comparison is about trained weights, not initial ones
    assert ranks[0]["train_loss"] == pytest.approx(reference.history.train_loss, rel=1e-5)
