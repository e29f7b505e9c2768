"""The two ELBO estimators (kl="trace_mean_field" / "closed_form") and their benchmark script.

Fast (a few seconds), single-threaded, fixed seeds: the outcomes are deterministic.
"""

from __future__ import annotations

import math

import pytest
import torch

from benchmarks import kl_estimators as bench
from pyro_lmmvae import LMMVAE
from pyro_lmmvae.datasets import make_synthetic

DRAWS = 300


@pytest.fixture(scope="module")
def model_and_batch():
    """A tiny oLMM-VAE with q(A) moved away from its initialisation, and one fixed batch.

    At initialisation V = e^-6, so a draw of A hardly moves the KL; with V about 0.25 and
    non-zero means, the draw of A is a large part of the trace_mean_field noise, and a wrong
    closed form (e.g. a missing V (x̄ ⊙ x̄) term) would show as a gap between the mean losses.
    """
    torch.set_num_threads(1)
    train = make_synthetic(n_instances=12, n_times=8, obs_dim=6, seed=0).split("train")
    est = LMMVAE(
        "~ 1 + t + g + (1 + t | id)",
        data=train.data,
        y=train.y,
        mask=train.mask,
        latent_dim=2,
        standardize=False,
        seed=0,
    )
    effects = est.pair.guide.effects
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        effects.fixed_loc.copy_(torch.randn(effects.fixed_loc.shape, generator=generator))
        effects.random_loc.copy_(0.5 * torch.randn(effects.random_loc.shape, generator=generator))
        effects.fixed_rho.fill_(-1.4)  # variance exp(-8 + softplus(6.6)) ≈ 0.25
        effects.random_rho.fill_(-1.4)
    batch = next(iter(est.batches(batch_size=4, seed=0)))
    return est, batch


@pytest.fixture(scope="module")
def noise(model_and_batch):
    """``DRAWS`` evaluations of each estimator at the same parameters, independent seeds."""
    est, batch = model_and_batch
    return {
        kl: bench.estimator_noise(est, kl, batch, DRAWS, seed=1_000_000 * (i + 1))
        for i, kl in enumerate(bench.ESTIMATORS)
    }


def test_mean_losses_agree(noise):
    """Both estimators are unbiased for the same negative ELBO: means within 4 combined SEs."""
    a, _ = noise["trace_mean_field"]
    b, _ = noise["closed_form"]
    se = math.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b))
    assert se > 0
    assert abs(a.mean() - b.mean()) <= 4 * se, (a.mean(), b.mean(), se)
    # The draw of A is real noise here: the trace_mean_field loss is noisier.
    assert a.std(ddof=1) > b.std(ddof=1)


def test_closed_form_gradient_variance_is_lower(noise):
    """Rao–Blackwellisation of the fixed-effect-mean gradient.

    Given the draw of z (the encoder noise), the closed-form loss is the conditional
    expectation over q(A) of the trace_mean_field loss (spec §2: E_q(A) KL_i in closed form,
    every other term identical), and so are its reparameterised gradients. By the law of total
    variance, Var[g_TMF] = Var[E(g_TMF | z)] + E[Var(g_TMF | z)] = Var[g_CF] + E[Var(g_TMF | z)]
    >= Var[g_CF]. For ``fixed_loc`` the closed-form gradient does not even depend on z (only
    the latent KL involves M, and it uses the encoder's mean and variance, not the draw), so
    its variance is exactly 0, while the trace_mean_field one is positive whenever V > 0:
    "strictly lower" holds with a wide margin and cannot be flaky.
    """
    tmf = noise["trace_mean_field"][1]["fixed_loc"]
    cf = noise["closed_form"][1]["fixed_loc"]
    assert tmf["n_coords"] == cf["n_coords"] > 0
    assert tmf["total_var"] > 0
    assert cf["total_var"] < tmf["total_var"]
    assert cf["total_var"] <= 1e-6 * tmf["total_var"]
    # The same holds for the random-effect means and the encoder (whose gradient flows through
    # the latent KL), while the decoder sees the same z noise under both estimators.
    for group in ("random effects", "encoder"):
        assert (
            noise["closed_form"][1][group]["total_var"]
            < noise["trace_mean_field"][1][group]["total_var"]
        )


def test_parameter_groups():
    assert bench.parameter_group("elbo.guide.effects.fixed_loc") == "fixed effects"
    assert bench.parameter_group("guide.effects.random_rho") == "random effects"
    assert bench.parameter_group("guide.encoder.network.0.weight") == "encoder"
    assert bench.parameter_group("model.decoder.0.weight") == "decoder"
    assert bench.parameter_group("model.likelihood.raw_scale") == "decoder"


def test_first_reaching():
    import numpy as np

    values = np.array([3.0, 2.0, 2.5, 1.0])
    assert bench.first_reaching(values, 2.0) == 2
    assert bench.first_reaching(values, 0.5) is None


def test_cli_end_to_end(tmp_path):
    torch.set_num_threads(1)
    results = bench.main(
        [
            "--dataset",
            "synthetic",
            "--instances",
            "8",
            "--repeats",
            "4",
            "--warm-epochs",
            "1",
            "--epochs",
            "3",
            "--seeds",
            "2",
            "--timing-steps",
            "2",
            "--timing-rounds",
            "1",
            "--out",
            str(tmp_path),
            "--quiet",
        ]
    )
    for suffix in (
        "_noise.csv",
        "_loss_agreement.csv",
        "_curves.csv",
        "_training.csv",
        "_step_time.csv",
        "_run.json",
        ".md",
    ):
        assert (tmp_path / f"synthetic{suffix}").is_file(), suffix
    assert not list(tmp_path.glob(".*.tmp"))  # atomic writes leave no temporary files
    report = (tmp_path / "synthetic.md").read_text()
    for heading in ("Loss and gradient noise", "validation target", "Per-step wall time"):
        assert heading in report
    assert set(results["noise"].state) == {"init", "trained"}
    assert len(results["curves"]) == 2 * 2 * 3  # estimators x seeds x epochs
    assert set(results["training"].estimator) == set(bench.ESTIMATORS)
