"""Bad input gets a one-line error naming the argument, value or file before training."""

from __future__ import annotations

import numpy as np
import pytest

from pyro_lmmvae import LMMVAE, cli
from pyro_lmmvae.demo import _label
from pyro_lmmvae.design import Design


@pytest.fixture(scope="module")
def model(small_synthetic) -> LMMVAE:
    tr = small_synthetic.split("train")
    return LMMVAE("~ 1 + t + (1 | id)", data=tr.data, y=tr.y, mask=tr.mask, latent_dim=2)


@pytest.mark.parametrize(
    ("argument", "value", "message"),
    [
        ("patience", 0, r"fit\(patience=0\): patience must be an integer >= 1"),
        ("lr", -1e-3, r"fit\(lr=-0.001\): lr must be a positive number"),
        ("effects_lr", 0.0, r"fit\(effects_lr=0.0\): effects_lr must be a positive number"),
        ("lr_decay", 1.5, r"fit\(lr_decay=1.5\): lr_decay must be a number in \(0, 1\]"),
        ("max_epochs", 0, r"fit\(max_epochs=0\): max_epochs must be an integer >= 1"),
        ("batch_size", 2.5, r"fit\(batch_size=2.5\): batch_size must be an integer >= 1"),
        ("local_lr", -1.0, r"fit\(local_lr=-1.0\): local_lr must be a number >= 0"),
        ("clip_norm", float("nan"), r"fit\(clip_norm=nan\): clip_norm must be a positive"),
    ],
)
def test_fit_arguments_out_of_range(model, argument, value, message):
    before = [p.detach().clone() for p in model.pair.parameters()]
    with pytest.raises(ValueError, match=message):
        model.fit(**{argument: value}, progress=False)
    assert all((a == b).all() for a, b in zip(before, model.pair.parameters(), strict=True))


def test_bernoulli_needs_observations_in_unit_interval(small_synthetic):
    tr = small_synthetic.split("train")
    with pytest.raises(ValueError, match=r"likelihood='bernoulli' needs observations in \[0, 1\]"):
        LMMVAE("~ 1 + t", data=tr.data, y=tr.y * 10, mask=tr.mask, likelihood="bernoulli")


def test_formula_errors_name_the_cause_without_an_unrelated_hint(small_synthetic):
    data = small_synthetic.split("train").data
    with pytest.raises(ValueError, match="cannot parse formula") as info:
        Design("~ 1 + (t + (1 | id)", data)
    assert "decimal notation" not in str(info.value)
    with pytest.raises(ValueError, match="decimal notation"):
        Design("~ 1 + I(t * 10.) + (1 | id)", data)  # '10.' is what formulae cannot read
    with pytest.raises(ValueError, match="calls 'lgo', which is neither a data column"):
        Design("~ 1 + lgo(t) + (1 | id)", data)


def test_context_with_the_wrong_number_of_features(model, small_synthetic):
    tr, te = small_synthetic.split("train"), small_synthetic.split("test")
    ctx = tr.data.iloc[:3].assign(id="new")
    target = te.data.iloc[:2].assign(id="new")
    with pytest.raises(ValueError, match="context: y has 3 features; the model was built for 8"):
        model.predict(target, unseen="context", context=(ctx, np.zeros((3, 3))))


def test_ctrl_c_in_a_cli_verb_is_one_line_with_the_resume_command(tmp_path, capsys, monkeypatch):
    def interrupted(args):
        (tmp_path / "run.ckpt").write_bytes(b"x")  # a checkpoint written before the interrupt
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "_run_fit", interrupted)
    argv = ["fit", "--formula", "~ 1", "--covariates", "c.csv", "--observations", "y.npy"]
    argv += ["--out", str(tmp_path / "m.pt"), "--checkpoint", str(tmp_path / "run.ckpt")]
    assert cli.main(argv) == 130
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith("pyro-lmmvae fit: interrupted;")
    assert "run the same command with --resume" in err


def test_demo_progress_bars_are_named_by_model():
    assert _label("olmm-elbo", "olmm", "elbo") == "oLMM-VAE (ELBO)"
    assert _label("slmm-gsnn", "slmm", "gsnn") == "sLMM-VAE (GSNN)"
    assert _label("cvae", "cvae", "elbo") == "CVAE"


def test_one_level_factor_is_an_error_and_a_constant_column_a_warning(small_synthetic):
    data = small_synthetic.split("train").data.assign(site="a", const=2.0)
    with pytest.raises(ValueError, match="column 'site' has the single level 'a'"):
        Design("~ 1 + t + site + (1 | id)", data)
    with pytest.raises(ValueError, match="column 'site' has the single level 'a'"):
        Design("~ 1 + t + site:t + (1 | id)", data)  # inside an interaction too
    with pytest.warns(UserWarning, match="column 'const' is constant"):
        Design("~ 1 + t + const + (1 | id)", data)
