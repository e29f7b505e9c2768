"""Bad input gets a one-line error naming the argument, value or file before training."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
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

    monkeypatch.setattr(cli.fit, "_run_fit", interrupted)
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


def _frame() -> pd.DataFrame:
    return pd.DataFrame({"id": list("aabbcc"), "t": [0.0, 1.0, 0.0, 1.0, 0.5, 2.0], "c": [3.0] * 6})


@pytest.mark.parametrize(
    ("formula", "data", "message"),
    [
        (
            "~ 1 + poly(c, 2) + (1 | id)",
            _frame(),
            r"formula '~ 1 \+ poly\(c, 2\) \+ \(1 \| id\)': the column 'poly\(c, 2\)\[0\]' is NaN "
            r"or infinite at 6 row\(s\) of the training data \(first: row 0\), e.g. np.log of "
            r"values <= 0, or poly\(\)/bs\(\) of a constant column; change the term or the column",
        ),
        (
            "~ 1 + bs(c, df=4) + (1 | id)",
            _frame(),
            r"the column 'bs\(c, df=4\)\[0\]' is NaN or infinite at 6 row\(s\) of the training",
        ),
        (
            "~ 1 + np.log(t) + (1 | id)",
            _frame(),
            r"the column 'np.log\(t\)' is NaN or infinite at 2 row\(s\) of the training data "
            r"\(first: row 0\)",
        ),
        (
            "~ 1 + t",
            pd.concat([_frame(), _frame()[["t"]]], axis=1),
            r"data has more than one column named \['t'\]; make the column names unique",
        ),
        (
            "~ 1 + d",
            _frame().assign(d=pd.date_range("2020-01-01", periods=6)),
            r"column 'd' holds dates or durations \(datetime64\[\w+\]\); convert it to a "
            r"number first, e.g. days since the first visit: "
            r"\(data\['d'\] - data\['d'\].min\(\)\).dt.days",
        ),
        (
            "~ 1 + np.exp(g)",
            _frame().assign(g=list("xyxyxy")),
            r"formula '~ 1 \+ np.exp\(g\)' cannot be evaluated: .*; \['g'\] are categorical or "
            r"text here: convert them to numbers first",
        ),
        (
            "~ 1 + height",
            _frame(),
            r"formula '~ 1 \+ height' uses column\(s\) \['height'\] not found in data; available "
            r"columns: \['id', 't', 'c'\]",
        ),
    ],
)
def test_design_errors_name_the_term_or_column(formula, data, message):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the constant column's own warning
        with pytest.raises(ValueError, match=message) as info:  # KeyError too for a column
            Design(formula, data)
    assert "\n" not in str(info.value) and not str(info.value).startswith("'")


def test_new_rows_where_a_formula_function_is_not_finite():
    design = Design("~ 1 + np.log(t + 1) + (1 | id)", _frame())
    new = pd.DataFrame({"id": ["a", "b"], "t": [0.5, -1.0]})
    with pytest.raises(
        ValueError,
        match=r"the column 'np.log\(t \+ 1\)' is NaN or infinite at 1 row\(s\) of the new data "
        r"\(first: row 1\)",
    ):
        design.transform(new)


def test_main_effects_come_before_interactions_as_in_r():
    data = pd.DataFrame({"id": list("aabb"), "a": list("yyxx"), "b": list("pqpq")})
    design = Design("~ 1 + a:b + a + b + (1 | id)", data)
    assert design.fixed_terms[:3] == ("Intercept", "a[y]", "b[q]")


@pytest.mark.parametrize(
    ("scale", "message"),
    [
        (1e20, r"y has values up to 2.\d+e\+20 in absolute value; the likelihood squares them "
               r"in float32, which overflows: rescale y, e.g. z-score each feature"),
        (1e300, r"y has values up to 2.\d+e\+300 in absolute value, beyond float32 \(the "
                r"precision of training\): rescale y, e.g. z-score each feature"),
    ],
)  # fmt: skip
def test_observations_too_large_for_float32(scale, message):
    y = np.linspace(-2.0, 2.5, 12).reshape(6, 2) * scale
    with pytest.raises(ValueError, match=message):
        LMMVAE("~ 1 + t + (1 | id)", _frame(), y, latent_dim=2)
