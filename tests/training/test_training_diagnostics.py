"""A non-finite loss stops training with the step and the offending parameter or site named."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pyro_lmmvae import LMMVAE
from pyro_lmmvae.models.base import LATENT_SITE, OBS_SITE
from pyro_lmmvae.training.diagnose import nonfinite_sources
from pyro_lmmvae.training.loop import NonFiniteLossError


def _snapshot(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.loss_module().state_dict().items()}


def test_healthy_batch_has_no_sources(small_synthetic, make_lmmvae, isolated_pyro):
    m = make_lmmvae(small_synthetic.split("train"))
    batch = next(iter(m.batches(batch_size=8)))
    assert nonfinite_sources(m.model, m.guide, batch) == []


@pytest.mark.parametrize(
    "objective, culprit",
    [
        ("gsnn", f"model site {OBS_SITE!r} (log_prob)"),  # no encoder: the likelihood overflows
        ("elbo", f"guide site {LATENT_SITE!r} (value)"),  # the encoder's output overflows first
    ],
)
def test_overflowing_observation_names_the_site(small_synthetic, isolated_pyro, objective, culprit):
    """A network whose output overflows float32 is named by its site.

    (Observations that would overflow are refused before training: ``y`` beyond 1e15.) The first
    layer of the encoder (ELBO) or of the decoder (GSNN, no encoder) is scaled by 1e30.
    """
    train = small_synthetic.split("train")
    m = LMMVAE(
        "~ 1 + t + (1 | id)",
        train.data,
        train.y,
        train.mask,
        latent_dim=2,
        standardize=False,
        objective=objective,
    )
    network = m.model.decoder if objective == "gsnn" else m.guide.encoder
    first = next(layer for layer in network.modules() if isinstance(layer, torch.nn.Linear))
    with torch.no_grad():
        first.weight.mul_(1e30)
    before = _snapshot(m)
    with pytest.raises(NonFiniteLossError) as err:
        m.fit(max_epochs=2, batch_size=40, validation=None, progress=False)
    message = str(err.value)
    assert "epoch 0, step 0" in message and culprit in message
    assert "parameter" not in message.split("not finite:")[1].split(".")[0]
    # The bad step was not applied: every weight is as it was before training.
    after = _snapshot(m)
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_nonfinite_parameter_is_named(small_synthetic, make_lmmvae, isolated_pyro):
    m = make_lmmvae(small_synthetic.split("train"))
    weight = next(p for name, p in m.model.decoder.named_parameters() if name.endswith("weight"))
    with torch.no_grad():
        weight[0, 0] = float("nan")
    with pytest.raises(NonFiniteLossError, match=r"parameter decoder\.\S*weight") as err:
        m.fit(max_epochs=1, batch_size=8, validation=None, progress=False)
    assert "step 0" in str(err.value)
    assert np.isnan(weight.detach().numpy()).sum() == 1  # nothing else was touched
