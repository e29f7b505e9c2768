"""The user-facing estimator: bad input fails fast, outputs have the documented shapes and
coordinates, save/load is exact, and the package installs every subpackage."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from pyro_lmmvae import LMMVAE, arviz_compat
from pyro_lmmvae.api import MAX_LOCAL_LR
from pyro_lmmvae.cli import main as cli_main

FORMULA = "~ 1 + t + g + c + (1 + t | id)"


def _model(ds, **kwargs) -> LMMVAE:
    tr = ds.split("train")
    options = dict(latent_dim=3, standardize=False) | kwargs
    return LMMVAE(FORMULA, data=tr.data, y=tr.y, mask=tr.mask, **options)


@pytest.fixture(scope="module")
def fitted(small_synthetic) -> LMMVAE:
    m = _model(small_synthetic)
    va = small_synthetic.split("val")
    return m.fit(max_epochs=3, batch_size=8, validation=(va.data, va.y, va.mask), progress=False)


# ----------------------------------------------------------------------------- bad input
def test_bad_input_fails_before_training(small_synthetic):
    tr = small_synthetic.split("train")
    data, y, mask = tr.data, tr.y, tr.mask
    cases = [
        (dict(data=data.assign(c=np.where(data.index == 4, np.nan, data["c"]))), "'c'.*NaN"),
        (dict(y=y[:-1]), r"y has \d+ rows but data has \d+"),
        (dict(formula="~ 1 + age"), "'age'"),
        (dict(mask=mask[:, :-1]), "mask has shape"),
        (dict(mask=np.where(np.arange(len(y))[:, None] == 2, False, mask)), "no observed entry"),
        (dict(y=y.astype(str)), "numeric"),
        (dict(y=np.where(mask, np.nan, y)), "NaN/inf value"),
        (dict(latent_dim=0), "latent_dim"),
        (dict(variant="nope"), "variant"),
    ]
    for change, match in cases:
        kwargs = dict(formula=FORMULA, data=data, y=y, mask=mask, latent_dim=3) | change
        formula = kwargs.pop("formula")
        with pytest.raises((ValueError, KeyError, TypeError), match=match):
            LMMVAE(formula, **kwargs)


def test_unseen_instance_at_prediction(fitted, small_synthetic):
    new = small_synthetic.split("test").data.copy()
    new["id"] = "never-seen"
    with pytest.raises(ValueError, match="'id'.*never-seen"):
        fitted.predict(new)
    population = fitted.predict(new, unseen="prior")
    no_id = fitted.predict(small_synthetic.split("test").data)
    assert population.shape == no_id.shape
    assert not np.allclose(population, no_id)  # the random effects matter once learned


def test_nan_y_means_missing(small_synthetic):
    tr = small_synthetic.split("train")
    m = LMMVAE(FORMULA, data=tr.data, y=np.where(tr.mask, tr.y, np.nan), latent_dim=2)
    np.testing.assert_array_equal(m.tensors().mask.numpy(), tr.mask)


def test_cuda_requested_without_gpu(small_synthetic):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU; the error path is for machines without one")
    with pytest.raises(RuntimeError, match="cuda"):
        _model(small_synthetic).fit(max_epochs=1, device="cuda", progress=False)


# ----------------------------------------------------------------------------- outputs
def test_impute_keeps_observed_and_fills_missing(fitted, small_synthetic):
    tr = small_synthetic.split("train")
    filled = fitted.impute()
    np.testing.assert_array_equal(filled[tr.mask], tr.y[tr.mask])
    recon = fitted.impute(keep_observed=False)
    np.testing.assert_array_equal(filled[~tr.mask], recon[~tr.mask])
    assert not np.allclose(recon[tr.mask], tr.y[tr.mask])
    np.testing.assert_allclose(fitted.impute(tr.y, tr.mask), filled, rtol=1e-6)


def test_history_keeps_best_validation(fitted):
    h = fitted.history
    assert len(h.train_loss) == len(h.val_loss) == 3
    assert h.best_val_loss == min(h.val_loss)
    assert h.lr[1] == h.lr[0]  # no schedule by default: nothing caps how far a parameter moves
    assert h.stop_reason == "max_epochs"


def test_effects_inference_data(fitted, tmp_path):
    idata = fitted.effects(num_draws=50, seed=3)
    fe, re = idata.posterior["fixed_effects"], idata.posterior["random_effects"]
    assert fe.dims == ("chain", "draw", "latent", "term")
    assert re.dims == ("chain", "draw", "latent", "group", "random_term")
    assert list(fe["term"].values) == ["Intercept", "t", "g", "c"]
    assert list(re["random_term"].values) == ["1|id", "t|id"]  # bambi's names
    # the variance components of (1 + t | id): learned sds and correlation per latent dim
    sd, corr = idata.posterior["random_effects_sd"], idata.posterior["random_effects_corr"]
    assert sd.dims == ("chain", "draw", "latent", "random_term")
    assert corr.dims == ("chain", "draw", "latent", "random_term", "random_term_")
    cov = fitted.model.effects.random_prior.covariance().detach().numpy()
    np.testing.assert_allclose(sd.values[0, 0] ** 2, np.diagonal(cov, axis1=1, axis2=2), rtol=1e-5)
    np.testing.assert_allclose(np.diagonal(corr.values[0, 0], axis1=1, axis2=2), 1.0, rtol=1e-6)
    assert list(re["group"].values) == list(fitted.design.groups)
    assert fe.shape == (1, 50, 3, 4) and re.shape == (1, 50, 3, fitted.design.n_groups, 2)
    # Draws come from q: their mean is the variational mean within Monte Carlo error.
    loc = fitted.guide.effects.fixed_loc.detach().numpy()
    sd = fitted.guide.effects.fixed_var.detach().sqrt().numpy()
    assert np.all(np.abs(fe.values[0].mean(0) - loc) < 5 * sd / np.sqrt(50))
    assert idata.posterior.attrs["formula"] == FORMULA
    summary = arviz_compat.summary(idata, var_names=["fixed_effects"])
    assert len(summary) == 3 * 4
    assert list(summary.columns) == ["mean", "sd", "hdi_3%", "hdi_97%"]
    path = tmp_path / "effects.nc"
    arviz_compat.to_netcdf(idata, path)
    back = arviz_compat.from_netcdf(path)
    np.testing.assert_array_equal(back.posterior["fixed_effects"].values, fe.values)
    subset = fitted.effects(num_draws=5, groups=list(fitted.design.groups[:2]))
    assert subset.posterior["random_effects"].shape[3] == 2


def test_save_load_predict_identical(fitted, small_synthetic, tmp_path):
    path = tmp_path / "model.pt"
    fitted.save(path)
    assert [p.name for p in tmp_path.iterdir()] == ["model.pt"]  # no temporary file left
    loaded = LMMVAE.load(path)
    test = small_synthetic.split("test").data
    np.testing.assert_array_equal(loaded.predict(test), fitted.predict(test))
    np.testing.assert_array_equal(loaded.impute(), fitted.impute())
    assert loaded.history.val_loss == fitted.history.val_loss
    (tmp_path / "other.pt").write_bytes(b"")
    torch.save({"format": "something else"}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a pyro_lmmvae"):
        LMMVAE.load(tmp_path / "other.pt")


def test_failed_save_keeps_previous_file(fitted, tmp_path, monkeypatch):
    path = tmp_path / "model.pt"
    fitted.save(path)
    before = path.read_bytes()

    def broken_save(obj, f, *args, **kwargs):
        Path(f).write_bytes(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match=f"cannot write {path}: disk full") as info:
        fitted.save(path)
    assert ".tmp" not in str(info.value)  # names the file asked for, not the temporary one
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["model.pt"]


def test_fit_leaves_global_rng_alone(small_synthetic):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    _model(small_synthetic).fit(max_epochs=1, batch_size=16, validation=None, progress=False)
    np.testing.assert_array_equal(torch.rand(3), expected)


def test_fit_is_reproducible(small_synthetic):
    a = _model(small_synthetic).fit(max_epochs=2, batch_size=8, progress=False, seed=5)
    b = _model(small_synthetic).fit(max_epochs=2, batch_size=8, progress=False, seed=5)
    assert a.history.train_loss == b.history.train_loss
    np.testing.assert_array_equal(a.impute(), b.impute())


def test_bernoulli_likelihood_trains(small_synthetic):
    tr = small_synthetic.split("train")
    y01 = (tr.y > np.median(tr.y)).astype(np.float32)
    m = LMMVAE(FORMULA, data=tr.data, y=y01, mask=tr.mask, latent_dim=2, likelihood="bernoulli")
    m.fit(max_epochs=3, batch_size=8, progress=False)
    assert np.isfinite(m.history.train_loss).all()
    assert m.history.train_loss[-1] < m.history.train_loss[0]
    p = m.predict(small_synthetic.split("test").data)
    assert ((p > 0) & (p < 1)).all()


def test_custom_networks(small_synthetic):
    tr = small_synthetic.split("train")
    D, L = tr.y.shape[1], 2
    enc = torch.nn.Sequential(torch.nn.Linear(D, 2 * L))
    dec = torch.nn.Sequential(torch.nn.Linear(L, D))
    m = LMMVAE(FORMULA, data=tr.data, y=tr.y, mask=tr.mask, latent_dim=L, encoder=enc, decoder=dec)
    m.fit(max_epochs=1, progress=False)
    assert m.guide.encoder.network is enc and m.model.decoder is dec
    bad = LMMVAE(
        FORMULA, data=tr.data, y=tr.y, mask=tr.mask, latent_dim=L, encoder=torch.nn.Linear(D, 3)
    )
    with pytest.raises(ValueError, match="2 \\* latent_dim"):
        bad.fit(max_epochs=1, progress=False)


# ----------------------------------------------------------------------------- packaging, CLI
def test_wheel_contains_every_subpackage(tmp_path):
    root = Path(__file__).resolve().parents[2]
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(root),
        ],
        check=True,
    )
    (wheel,) = tmp_path.glob("pyro_lmmvae-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for package in [
        "pyro_lmmvae",
        "pyro_lmmvae/models",
        "pyro_lmmvae/guides",
        "pyro_lmmvae/datasets",
        "pyro_lmmvae/training",
    ]:
        assert f"{package}/__init__.py" in names, package
    tops = {name.split("/")[0] for name in names if not name.split("/")[0].endswith(".dist-info")}
    assert tops == {"pyro_lmmvae"}, tops  # nothing installs a top-level `models` or `guides`


def test_cli_demo_writes_outputs(tmp_path, capsys):
    out = tmp_path / "demo"
    code = cli_main(
        ["demo", "--out", str(out), "--n-instances", "30", "--max-epochs", "2", "--no-progress"]
    )
    assert code == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "effects.nc",
        "fixed_effects.png",
        "metrics.json",
        "trajectories.png",
    ]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["primary"] == "olmm-elbo" and set(metrics["models"]) == {"olmm-elbo", "vae"}
    for key in [
        "imputation_mse",
        "prediction_mse",
        "fixed_effects_rel_error",
        "random_effects_corr",
    ]:
        assert np.isfinite(metrics[key]), key
    for key in ["imputation_mse", "prediction_mse"]:
        assert np.isfinite(metrics["models"]["vae"][key])
    effects = arviz_compat.from_netcdf(out / "effects.nc")
    assert effects.posterior["fixed_effects"].sizes["term"] == 7
    assert (out / "fixed_effects.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "imputation_mse" in capsys.readouterr().out


def test_cli_demo_runs_every_variant_and_objective(tmp_path, capsys):
    """--variant/--objective lists run as a grid; metrics.json reports every model."""
    out = tmp_path / "grid"
    args = ["demo", "--out", str(out), "--n-instances", "20", "--max-epochs", "1"]
    args += ["--variant", "slmm,olmm", "--objective", "gsnn,elbo", "--baselines", "vae,cvae"]
    assert cli_main([*args, "--no-progress"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    expected = {"slmm-gsnn", "slmm-elbo", "olmm-gsnn", "olmm-elbo", "vae", "cvae"}
    assert set(metrics["models"]) == expected and metrics["primary"] == "slmm-gsnn"
    for name, figures in metrics["models"].items():
        assert np.isfinite(figures["prediction_mse"]), name
        assert np.isfinite(figures["imputation_mse"]), name
    assert "random_effects_corr" not in metrics["models"]["slmm-gsnn"]  # GSNN: no latents
    idata = arviz_compat.from_netcdf(out / "effects.nc")
    assert idata.posterior.attrs["objective"] == "gsnn"
    assert idata.posterior.sizes["draw"] == 1  # sLMM effects are point estimates
    summary = json.loads(capsys.readouterr().out.split("\nwrote")[0])
    assert set(summary) == expected


def test_cli_demo_rejects_unknown_variant(tmp_path, capsys):
    with pytest.raises(SystemExit):
        cli_main(["demo", "--out", str(tmp_path), "--variant", "gp"])
    assert "unknown variant(s) ['gp']" in capsys.readouterr().err


@pytest.mark.parametrize("variant", ["olmm", "slmm"])
def test_local_lr_moves_only_the_per_instance_parameters(small_synthetic, make_lmmvae, variant):
    """An instance is in one batch per epoch, so Adam moves its parameters by at most about
    ``3.17 local_lr`` per epoch (lr (1 - beta1) / sqrt(1 - beta2) per step). The default
    ``local_lr`` is ``effects_lr`` times the batches per epoch (5 here), capped at 0.1."""
    torch.set_num_threads(1)
    train = small_synthetic.split("train")
    epochs, effects_lr = 3, 1e-2
    n_batches = -(-train.data["id"].nunique() // 8)
    default_local = min(effects_lr * n_batches, MAX_LOCAL_LR)
    kwargs = dict(max_epochs=epochs, batch_size=8, effects_lr=effects_lr, progress=False)

    def bound(local_lr: float) -> float:
        return epochs * local_lr * 0.1 / (1 - 0.999) ** 0.5

    def moves(local_lr):
        m = make_lmmvae(train, variant=variant, bayesian_effects=True)
        random0 = m.guide.effects.random_loc.detach().clone()
        fixed0 = m.guide.effects.fixed_loc.detach().clone()
        m.fit(local_lr=local_lr, **kwargs)
        random = (m.guide.effects.random_loc.detach() - random0).abs().max().item()
        fixed = (m.guide.effects.fixed_loc.detach() - fixed0).abs().max().item()
        return random, fixed

    frozen, fixed = moves(0.0)
    assert frozen == 0.0 and fixed > 0
    default, _ = moves(None)
    # Adam's first steps move a parameter by about its lr each: the default goes further than
    # effects_lr would (3 steps of 0.01) and stays within the bound of its own lr
    assert epochs * effects_lr < default <= bound(default_local)
    slow, _ = moves(effects_lr / 10)
    assert 0 < slow <= bound(effects_lr / 10)
