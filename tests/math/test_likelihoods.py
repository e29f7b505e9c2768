"""The likelihoods' fast entry-wise log-density equals their distribution's log_prob."""

from __future__ import annotations

import pytest
import torch

from pyro_lmmvae.models import BernoulliLikelihood, GaussianLikelihood


@pytest.mark.parametrize(
    "likelihood",
    [GaussianLikelihood(5), GaussianLikelihood(5, scale=0.1), BernoulliLikelihood(5)],
    ids=["gaussian-learned", "gaussian-fixed", "bernoulli"],
)
def test_log_density_equals_log_prob(likelihood):
    g = torch.Generator().manual_seed(0)
    if isinstance(likelihood, GaussianLikelihood) and likelihood.learned:
        with torch.no_grad():
            likelihood.raw_scale.copy_(torch.randn(5, generator=g))  # distinct per feature
    decoded = torch.randn(7, 5, generator=g, requires_grad=True)
    y = torch.rand(7, 5, generator=g)
    fast = likelihood.log_density(decoded, y)
    reference = likelihood(decoded).log_prob(y)
    torch.testing.assert_close(fast, reference)
    grads = [torch.autograd.grad(v.sum(), decoded)[0] for v in (fast, reference)]
    torch.testing.assert_close(*grads)
