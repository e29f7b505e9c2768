"""Priors that sample their own hyper-parameters train: q gets an AutoNormal factor for them."""

from __future__ import annotations

import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine

from pyro_lmmvae import LMMVAE
from pyro_lmmvae.datasets import make_synthetic
from pyro_lmmvae.persistence import ModelFileError
from pyro_lmmvae.priors import EffectPrior
from pyro_lmmvae.pyro_module import local_params


class HorseshoeScale(EffectPrior):
    """a ~ N(0, tau^2) per latent dimension, tau ~ HalfCauchy(scale)."""

    def __init__(self, scale: float = 1.0) -> None:
        super().__init__()
        self.scale = scale

    def forward(self, shape):
        tau = pyro.sample("tau", dist.HalfCauchy(self.scale))
        return dist.Normal(0.0, tau.unsqueeze(-1)).expand(torch.Size(shape))


class PerInstanceScale(EffectPrior):
    def forward(self, shape):
        s = pyro.sample("s", dist.HalfNormal(1.0))  # inside the instance plate: per instance
        return dist.Normal(0.0, s.unsqueeze(-1)).expand(torch.Size(shape))


@pytest.fixture(scope="module")
def data():
    return make_synthetic(n_instances=20, n_times=8, obs_dim=6, n_test_times=2, seed=2)


def _model(data, **options) -> LMMVAE:
    tr = data.split("train")
    options = dict(latent_dim=2, standardize=False, seed=0) | options
    return LMMVAE("~ 1 + t + g + (1 + t | id)", data=tr.data, y=tr.y, mask=tr.mask, **options)


def test_hyperparameter_site_gets_a_guide_factor_and_trains(data, tmp_path):
    torch.set_num_threads(1)
    m = _model(data, fixed_prior=HorseshoeScale())
    q = m.pair.guide.effects.hyper
    assert q is not None and q.sites == ("tau",)
    # the guide trace holds tau, and the default loss (Pyro's ELBO with the latent KL
    # averaged over q(A)) takes tau's KL: its value moves with q(tau)
    batch = m.tensors().full_batch()
    with local_params():
        guide_trace = poutine.trace(m.guide).get_trace(batch)
    assert guide_trace.nodes["tau"]["value"].shape == (2,)
    loss = m.loss_module()
    assert type(loss).__name__ == "CollapsedELBOLoss"  # a user prior: derived from the model
    values = []
    for shift in (0.0, 2.0):
        with torch.no_grad():
            q.auto.locs.tau.add_(shift)
        pyro.set_rng_seed(0)
        values.append(float(loss(batch).detach()))
    with torch.no_grad():
        q.auto.locs.tau.sub_(2.0)
    assert values[0] != values[1]
    before = {k: v.clone() for k, v in q.state_dict().items()}
    m.fit(max_epochs=15, batch_size=8, progress=False)
    assert all(np.isfinite(m.history.train_loss))
    assert any(not torch.equal(before[k], v) for k, v in q.state_dict().items())  # q(tau) moved
    draws = m.effects(num_draws=200, seed=1).posterior["tau"]
    assert draws.dims == ("chain", "draw", "latent") and bool((draws > 0).all())
    # the draws come from q: their median is q's median within Monte Carlo error
    median = q.auto.median()["tau"].numpy()
    loc, scale = (t.detach().numpy() for t in q.auto._get_loc_and_scale("tau"))
    # log tau ~ N(loc, scale): the sample median of log-draws is within 4 SE of loc
    log_median = np.median(np.log(draws.values[0]), axis=0)
    se = 1.2533 * scale / np.sqrt(200)
    assert np.all(np.abs(log_median - loc) < 4 * se)
    np.testing.assert_allclose(median, np.exp(loc), rtol=1e-5)
    # save / load: the custom prior is passed again, the factor's values come from the file
    path = m.save(tmp_path / "hs.pt")
    with pytest.raises(ModelFileError, match="custom fixed_prior"):
        LMMVAE.load(path)
    back = LMMVAE.load(path, fixed_prior=HorseshoeScale())
    test = data.split("test").data
    np.testing.assert_array_equal(back.predict(test), m.predict(test))
    assert torch.equal(back.pair.guide.effects.hyper.auto.median()["tau"], q.auto.median()["tau"])


def test_prior_swapped_after_construction_gets_its_factor_at_fit(data):
    m = _model(data)
    assert m.pair.guide.effects.hyper is None
    m.model.effects.fixed_prior = HorseshoeScale(0.5)
    m.fit(max_epochs=1, batch_size=8, progress=False)
    assert m.pair.guide.effects.hyper.sites == ("tau",)


def test_per_instance_hyperparameters_are_refused(data):
    with pytest.raises(ValueError, match="'s' per instance"):
        _model(data, random_prior=PerInstanceScale())
