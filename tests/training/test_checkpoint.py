"""Checkpoints: exact resume, refusal of foreign checkpoints, and NaN safety."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from pyro_lmmvae import LMMVAE
from pyro_lmmvae.datasets import make_synthetic
from pyro_lmmvae.training.checkpoint import CHECKPOINT_KEY, read_checkpoint
from pyro_lmmvae.training.loop import NonFiniteLossError

FORMULA = "~ 1 + t + g + (1 + t | id)"

pytestmark = pytest.mark.usefixtures("isolated_pyro")


@pytest.fixture(scope="module")
def data():
    return make_synthetic(n_instances=12, n_times=6, obs_dim=5, n_test_times=2, seed=5).split(
        "train"
    )


def _estimator(ds, **options) -> LMMVAE:
    kwargs = dict(latent_dim=2, standardize=False, seed=0) | options
    return LMMVAE(FORMULA, data=ds.data, y=ds.y, mask=ds.mask, **kwargs)


FIT = dict(batch_size=4, validation=0.25, progress=False, seed=3, lr=1e-2)


def _weights(est: LMMVAE) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in est.pair.state_dict().items()}


@pytest.mark.parametrize(
    "options, kl",
    [({}, "trace_mean_field"), ({}, "closed_form"), ({"variant": "slmm"}, "auto")],
)
def test_resumed_fit_reproduces_the_uninterrupted_run(data, tmp_path, options, kl):
    whole = _estimator(data, **options).fit(max_epochs=5, kl=kl, **FIT)

    first = _estimator(data, **options)
    first.fit(max_epochs=2, kl=kl, checkpoint=tmp_path / "run.ckpt", **FIT)
    saved = read_checkpoint(tmp_path / "run.ckpt")[CHECKPOINT_KEY]
    assert saved.epoch == 2
    # A fresh estimator (as after a crash) continues from the file to 5 epochs in all.
    resumed = _estimator(data, **options)
    resumed.fit(max_epochs=5, kl=kl, checkpoint=tmp_path / "run.ckpt", resume=True, **FIT)

    assert resumed.history.train_loss == whole.history.train_loss
    assert resumed.history.val_loss == whole.history.val_loss
    assert resumed.history.best_epoch == whole.history.best_epoch
    expected, got = _weights(whole), _weights(resumed)
    assert expected.keys() == got.keys()
    for name in expected:
        assert torch.equal(expected[name], got[name]), name
    # Power: the 2-epoch run's weights differ from the 5-epoch run's.
    assert any(not torch.equal(_weights(first)[k], expected[k]) for k in expected)


def test_checkpoint_loads_as_an_estimator(data, tmp_path):
    est = _estimator(data).fit(max_epochs=2, checkpoint=tmp_path / "c.ckpt", **FIT)
    loaded = LMMVAE.load(tmp_path / "c.ckpt")
    assert loaded.design.formula == est.design.formula
    assert len(loaded.history.train_loss) == 2
    pred = loaded.predict(data.data.iloc[:5])
    assert pred.shape == (5, data.y.shape[1]) and torch.isfinite(torch.as_tensor(pred)).all()


def test_resume_refuses_other_settings_and_models(data, tmp_path):
    path = tmp_path / "run.ckpt"
    _estimator(data).fit(max_epochs=1, checkpoint=path, **FIT)
    with pytest.raises(ValueError, match=r"batch_size=4 \(now 3\)"):
        _estimator(data).fit(
            max_epochs=2, checkpoint=path, resume=True, **(FIT | {"batch_size": 3})
        )
    with pytest.raises(ValueError, match="another model"):
        _estimator(data, variant="slmm").fit(max_epochs=2, checkpoint=path, resume=True, **FIT)
    with pytest.raises(ValueError, match="needs checkpoint="):
        _estimator(data).fit(max_epochs=2, resume=True, **FIT)
    # No file yet: resume starts afresh (the first run of a resumable job).
    fresh = _estimator(data).fit(max_epochs=1, checkpoint=tmp_path / "new.ckpt", resume=True, **FIT)
    assert len(fresh.history.train_loss) == 1
    (tmp_path / "junk.ckpt").write_bytes(b"not a checkpoint")
    with pytest.raises(Exception, match="junk.ckpt|pickle|load"):
        _estimator(data).fit(max_epochs=1, checkpoint=tmp_path / "junk.ckpt", resume=True, **FIT)


class PoisonedDecoder(nn.Module):
    """A decoder whose output is NaN from its ``poison_at``-th training call on (and after)."""

    def __init__(self, latent_dim: int, obs_dim: int, poison_at: int) -> None:
        super().__init__()
        self.net = nn.Linear(latent_dim, obs_dim)
        self.poison_at = poison_at
        self.calls = 0

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        out = self.net(z)
        if torch.is_grad_enabled():  # training steps (validation runs without gradients)
            self.calls += 1
        if self.calls >= self.poison_at:
            out = out * float("nan")
        return out


@pytest.mark.filterwarnings("ignore:Encountered NaN")
def test_nan_stops_with_step_and_site_and_keeps_the_last_checkpoint(data, tmp_path):
    path = tmp_path / "run.ckpt"
    # 9 training instances in batches of 4: 3 steps per epoch; the 8th step is epoch 2, step 1.
    torch.manual_seed(0)
    poisoned = PoisonedDecoder(2, data.y.shape[1], poison_at=8)
    est = _estimator(data, decoder=poisoned)
    with pytest.raises(NonFiniteLossError) as info:
        est.fit(max_epochs=5, checkpoint=path, kl="trace_mean_field", **FIT)
    message = str(info.value)
    assert "epoch 2, step 1" in message
    assert "model site 'y'" in message
    assert f"{path} is intact" in message and "after 2 completed epoch(s)" in message

    # The checkpoint holds the state after 2 epochs, exactly that of a clean 2-epoch run.
    state = read_checkpoint(path)[CHECKPOINT_KEY]
    assert state.epoch == 2
    torch.manual_seed(0)
    clean = _estimator(data, decoder=PoisonedDecoder(2, data.y.shape[1], poison_at=10**9))
    clean.fit(max_epochs=2, checkpoint=tmp_path / "clean.ckpt", kl="trace_mean_field", **FIT)
    reference = read_checkpoint(tmp_path / "clean.ckpt")[CHECKPOINT_KEY]
    assert state.weights.keys() == reference.weights.keys()
    for name, value in state.weights.items():
        assert torch.isfinite(value).all(), name
        assert torch.equal(value, reference.weights[name]), name
    # ... and it loads, given the custom decoder again (its weights come from the file).
    decoder = PoisonedDecoder(2, data.y.shape[1], poison_at=10**9)
    assert len(LMMVAE.load(path, decoder=decoder).history.train_loss) == 2
