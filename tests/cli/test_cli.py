"""The file verbs of ``pyro-lmmvae`` (fit, predict, impute, effects), their ``--help`` and errors.

Every verb runs through :func:`pyro_lmmvae.cli.main` on a tiny synthetic dataset written to
files; one bad-input case runs as ``python -m pyro_lmmvae.cli`` in a subprocess.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.metadata
import importlib.util
import inspect
import io
import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
from raw_files import write_tiny_mnist, write_tiny_physionet

from pyro_lmmvae import LMMVAE, arviz_compat, cli, defaults
from pyro_lmmvae.cli.parser import build_parser
from pyro_lmmvae.datasets import (
    load_physionet,
    make_health_mnist,
    make_rotating_mnist,
    make_synthetic,
)
from pyro_lmmvae.demo import DemoConfig

FORMULA = "~ 1 + t + (1 + t | id)"
FAST = ["--latent-dim", "2", "--epochs", "2", "--batch-size", "4", "--no-progress"]
ROOT = Path(__file__).resolve().parents[2]
PNG = b"\x89PNG\r\n\x1a\n"
HAS_PYARROW = importlib.util.find_spec("pyarrow") is not None


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """Covariates (.csv), observations with NaN where unobserved (.npy) and a model fitted by
    ``pyro-lmmvae fit`` on them."""
    folder = tmp_path_factory.mktemp("cli")
    ds = make_synthetic(n_instances=12, n_times=6, obs_dim=5, n_test_times=2, seed=0)
    ds.data.to_csv(folder / "cov.csv", index=False)
    np.save(folder / "y.npy", np.where(ds.mask, ds.y, np.nan))
    model = folder / "model.pt"
    argv = ["fit", "--formula", FORMULA, "--covariates", str(folder / "cov.csv")]
    argv += ["--observations", str(folder / "y.npy"), "--out", str(model), *FAST]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out):
            assert cli.main(argv) == 0
    finally:
        torch.set_num_threads(threads)
    return SimpleNamespace(
        folder=folder,
        ds=ds,
        cov=folder / "cov.csv",
        y=folder / "y.npy",
        model=model,
        stdout=out.getvalue(),
    )


def run(argv: list[str], capsys) -> tuple[int, str, str]:
    code = cli.main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# --------------------------------------------------------------------------- fit
def test_fit_saves_a_model_that_loads(work):
    m = LMMVAE.load(work.model)
    assert m.design.formula == FORMULA and m.obs_dim == 5 and m.latent_dim == 2
    assert len(m.history.train_loss) == 2
    np.testing.assert_array_equal(m._mask, work.ds.mask)  # NaN in the .npy = missing
    line = work.stdout.strip()
    assert "\n" not in line and line.startswith("fit: 2 epochs (max_epochs), no validation,")
    assert line.endswith(f"wrote {work.model}")
    assert [p.name for p in work.folder.iterdir() if p.name.startswith(".")] == []


def test_fit_csv_observations_with_a_mask_file(work, tmp_path, isolated_pyro, capsys):
    ds = work.ds
    pd.DataFrame(ds.y).to_csv(tmp_path / "y.csv", index=False)  # header 0..D-1, no NaN
    pd.DataFrame(ds.mask).to_csv(tmp_path / "mask.csv", index=False, header=False)  # True/False
    out = tmp_path / "sub" / "slmm.pt"
    argv = ["fit", "--formula", "~ 1 + t", "--variant", "slmm", "--instance", "id"]
    argv += ["--covariates", work.cov, "--observations", tmp_path / "y.csv"]
    argv += ["--mask", tmp_path / "mask.csv", "--validation", "none", "--out", out, *FAST]
    code, text, _ = run(argv, capsys)
    assert code == 0 and "no validation" in text
    m = LMMVAE.load(out)
    assert m.variant == "slmm" and m.design.instance == "id"
    np.testing.assert_array_equal(m._mask, ds.mask)
    np.testing.assert_allclose(m._y[ds.mask], ds.y[ds.mask], rtol=1e-6)


# --------------------------------------------------------------------------- predict
def test_predict_equals_the_api(work, tmp_path, isolated_pyro, capsys):
    code, text, _ = run(
        ["predict", work.model, "--covariates", work.cov, "--out", tmp_path / "p.npy"], capsys
    )
    assert code == 0 and "72 rows x 5 features" in text
    pred = np.load(tmp_path / "p.npy")
    expected = LMMVAE.load(work.model).predict(pd.read_csv(work.cov))
    assert pred.shape == (72, 5)
    np.testing.assert_array_equal(pred, expected)
    assert (
        run(["predict", work.model, "--covariates", work.cov, "--out", tmp_path / "p.csv"], capsys)[
            0
        ]
        == 0
    )
    np.testing.assert_allclose(np.loadtxt(tmp_path / "p.csv", delimiter=","), pred, rtol=1e-6)


def test_predict_unseen_instances(work, tmp_path, isolated_pyro, capsys):
    new = pd.read_csv(work.cov).head(6).assign(id="new")
    new.to_csv(tmp_path / "new.csv", index=False)
    argv = [
        "predict",
        work.model,
        "--covariates",
        tmp_path / "new.csv",
        "--out",
        tmp_path / "p.npy",
    ]
    code, _, err = run(argv, capsys)
    assert code == 2 and "not seen in training: ['new']" in err and "--unseen prior" in err
    assert not (tmp_path / "p.npy").exists()
    assert run([*argv, "--unseen", "prior"], capsys)[0] == 0
    expected = LMMVAE.load(work.model).predict(new, unseen="prior")
    np.testing.assert_array_equal(np.load(tmp_path / "p.npy"), expected)
    code, _, err = run([*argv, "--unseen", "context"], capsys)
    assert code == 2 and "--context-covariates and --context-observations" in err

    context = pd.read_csv(work.cov).head(4).assign(id="new")  # the new instance's observed rows
    context.to_csv(tmp_path / "context.csv", index=False)
    np.save(tmp_path / "context.npy", np.load(work.y)[:4])
    argv += ["--unseen", "context", "--context-covariates", tmp_path / "context.csv"]
    argv += ["--context-steps", "20", "--context-observations"]
    assert run([*argv, tmp_path / "context.npy"], capsys)[0] == 0
    expected = LMMVAE.load(work.model).predict(
        new, unseen="context", context=(context, np.load(work.y)[:4]), context_steps=20
    )
    np.testing.assert_allclose(np.load(tmp_path / "p.npy"), expected, rtol=1e-5, atol=1e-6)
    code, _, err = run([*argv, work.y], capsys)
    assert code == 2 and "--context-observations" in err and "has 72 rows but" in err


# --------------------------------------------------------------------------- impute
def test_impute_keeps_observed_entries(work, tmp_path, isolated_pyro, capsys):
    ds = work.ds
    code, text, _ = run(["impute", work.model, "--out", tmp_path / "i.npy"], capsys)
    assert code == 0 and "72 training rows" in text
    imputed = np.load(tmp_path / "i.npy")
    assert imputed.shape == ds.y.shape and np.isfinite(imputed).all()
    np.testing.assert_array_equal(imputed[ds.mask], ds.y[ds.mask].astype(np.float32))
    np.testing.assert_array_equal(imputed, LMMVAE.load(work.model).impute())

    rows = pd.read_csv(work.cov).head(10)
    rows.to_csv(tmp_path / "rows.csv", index=False)
    np.save(tmp_path / "rows.npy", np.load(work.y)[:10])
    argv = ["impute", work.model, "--observations", tmp_path / "rows.npy"]
    argv += ["--covariates", tmp_path / "rows.csv", "--out", tmp_path / "r.npy"]
    assert run(argv, capsys)[0] == 0
    expected = LMMVAE.load(work.model).impute(np.load(work.y)[:10], data=rows)
    np.testing.assert_array_equal(np.load(tmp_path / "r.npy"), expected)

    code, _, err = run([*argv[:-4], "--covariates", work.cov, "--out", tmp_path / "x.npy"], capsys)
    assert code == 2 and "rows.npy has 10 rows but --covariates" in err and "has 72" in err
    code, _, err = run(["impute", work.model, "--covariates", work.cov, "--out", "x.npy"], capsys)
    assert code == 2 and "need --observations" in err


# --------------------------------------------------------------------------- effects
def test_effects_writes_netcdf_summary_and_forest(work, tmp_path, capsys):
    out = tmp_path / "effects"
    code, text, _ = run(["effects", work.model, "--out-dir", out, "--draws", "20"], capsys)
    assert code == 0 and "20 draws" in text
    assert sorted(p.name for p in out.iterdir()) == ["effects.nc", "forest.png", "summary.csv"]
    idata = arviz_compat.from_netcdf(out / "effects.nc")
    assert idata.posterior["fixed_effects"].sizes["draw"] == 20
    assert list(idata.posterior["fixed_effects"].coords["term"].values) == ["Intercept", "t"]
    summary = pd.read_csv(out / "summary.csv", index_col=0)
    assert list(summary.columns) == ["mean", "sd", "hdi_3%", "hdi_97%"]  # 94% HDI, any ArviZ
    slack = 1e-6 * summary["mean"].abs().max()  # constant draws (variance components) round
    assert (summary["hdi_3%"] <= summary["mean"] + slack).all()
    assert (summary["mean"] <= summary["hdi_97%"] + slack).all()
    fixed = [name for name in summary.index if name.startswith("fixed_effects[")]
    random = [name for name in summary.index if name.startswith("random_effects[")]
    assert len(fixed) == 2 * 2 and len(random) == 2 * 12 * 2  # L x Q, L x P x k
    assert (out / "forest.png").read_bytes()[:8] == PNG


# --------------------------------------------------------------------------- help and defaults
@pytest.mark.parametrize(
    ("verb", "expected"),
    [
        (
            "fit",
            [
                "--epochs EPOCHS",
                "until the objective stops improving",
                "(default: 0.001)",
                "(default: olmm)",
                "--effects-lr EFFECTS_LR",
                "(default: 0.01)",
            ],
        ),  # fmt: skip
        ("predict", ["--unseen {error,prior,context}", "(default: error)", "(default: 200)"]),
        ("impute", ["--keep-observed, --no-keep-observed", "(default: True)"]),
        ("effects", ["--draws DRAWS", "(default: 500)"]),
    ],
)
def test_help_lists_defaults(verb, expected, capsys):
    with pytest.raises(SystemExit) as info:
        cli.main([verb, "--help"])
    assert info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for piece in expected:
        assert piece in text, piece
    assert "(default: None)" not in text  # unset options say so in their help


# Options that are files, or flags without a library parameter of the same name.
NOT_PARAMETERS = {
    "verb",
    "dataset",
    "formula",
    "covariates",
    "observations",
    "mask",
    "out",
    "model",
    "out_dir",
    "context_covariates",
    "context_observations",
    "context_mask",
    "no_progress",
    "no_standardize",
}
RENAMED = {"epochs": "max_epochs", "draws": "num_draws"}  # CLI option -> parameter
FILES = ["--covariates", "c.csv", "--observations", "y.npy", "--out", "m.pt"]


def _signature_defaults(*functions) -> dict:
    """Parameter -> default of ``functions``; the first function naming a parameter wins."""
    found: dict = {}
    for function in functions:
        for p in inspect.signature(function).parameters.values():
            if p.default is not p.empty:
                found.setdefault(p.name, p.default)
    return found


@pytest.mark.parametrize(
    ("argv", "functions"),
    [
        (["fit", "--formula", "~ 1", *FILES], [LMMVAE.__init__, LMMVAE.fit]),
        (["predict", "m.pt", "--covariates", "c.csv", "--out", "p.npy"], [LMMVAE.predict]),
        (["impute", "m.pt", "--out", "i.npy"], [LMMVAE.impute]),
        (["effects", "m.pt", "--out-dir", "e"], [LMMVAE.effects]),
        (["demo", "--out", "d"], [DemoConfig]),
        (["data", "health-mnist", "--out", "h.npz"], [make_health_mnist]),
        (["data", "rotating-mnist", "--out", "r.npz"], [make_rotating_mnist]),
        (["data", "physionet", "--out", "p.npz"], [load_physionet]),
    ],
)
def test_cli_defaults_are_the_api_defaults(argv, functions):
    """Every default the CLI shows (and uses) is the default of the parameter it is passed to,
    read from the real signatures with :func:`inspect.signature`."""
    parsed = {
        k: v for k, v in vars(build_parser().parse_args(argv)).items() if not k.startswith("_")
    }
    expected = _signature_defaults(*functions)
    options = {RENAMED.get(k, k): v for k, v in parsed.items() if k not in NOT_PARAMETERS}
    assert options and set(options) <= set(expected), set(options) - set(expected)
    assert options == {k: expected[k] for k in options}, argv[:2]
    if argv[0] == "fit":
        assert parsed["no_standardize"] is not expected["standardize"]
        for name in ("max_epochs", "batch_size", "lr", "validation", "device", "kl", "progress"):
            assert name in options, name
    if argv[0] == "demo":  # every field of DemoConfig is an option
        demo = {f.name: f.default for f in dataclasses.fields(DemoConfig)}
        assert options == demo
    if argv[0] == "data":
        assert {"root", "seed"} <= set(options)


def test_defaults_module_is_what_the_signatures_take():
    """The library's signatures hold the constants of pyro_lmmvae.defaults (one source)."""
    assert _signature_defaults(LMMVAE.__init__)["latent_dim"] == defaults.LATENT_DIM
    assert _signature_defaults(LMMVAE.fit)["batch_size"] == defaults.BATCH_SIZE
    assert _signature_defaults(LMMVAE.effects)["num_draws"] == defaults.NUM_DRAWS
    assert _signature_defaults(make_health_mnist)["root"] == defaults.MNIST_ROOT
    assert _signature_defaults(load_physionet)["root"] == defaults.PHYSIONET_ROOT


HEAVY = ("pyro", "torch")
HELP_ARGVS = [
    [],
    ["demo"],
    ["data"],
    ["data", "health-mnist"],
    ["data", "rotating-mnist"],
    ["data", "physionet"],
    ["fit"],
    ["predict"],
    ["impute"],
    ["effects"],
]


def test_help_imports_neither_pyro_nor_torch():
    """`pyro-lmmvae [VERB] --help` for every verb, in a fresh interpreter: no Pyro, no torch."""
    script = (
        "import contextlib, io, json, sys\n"
        "from pyro_lmmvae.cli import main\n"
        "heavy = {}\n"
        f"for argv in {HELP_ARGVS!r}:\n"
        "    with contextlib.redirect_stdout(io.StringIO()) as out:\n"
        "        try:\n"
        "            main([*argv, '--help'])\n"
        "        except SystemExit as exit:\n"
        "            assert exit.code == 0 and 'usage: pyro-lmmvae' in out.getvalue(), argv\n"
        f"    heavy[' '.join(argv)] = sorted(m for m in {HEAVY!r} if m in sys.modules)\n"
        "print(json.dumps(heavy))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    heavy = json.loads(done.stdout)
    assert heavy == {" ".join(argv): [] for argv in HELP_ARGVS}


@pytest.mark.parametrize("argv", [["--help"], ["data", "--help"]])
def test_entry_point_help_does_not_import_pyro(argv):
    """`python -m pyro_lmmvae [data] --help` (the `pyro-lmmvae` script's main) leaves Pyro out."""
    command = [sys.executable, "-X", "importtime", "-m", "pyro_lmmvae", *argv]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.startswith("usage: pyro-lmmvae")
    imported = {line.split("|")[-1].strip() for line in done.stderr.splitlines()}
    assert "pyro_lmmvae.cli" in imported and "pyro_lmmvae.defaults" in imported
    assert "pyro" not in imported and "torch" not in imported
    (script,) = [
        e
        for e in importlib.metadata.entry_points(group="console_scripts")
        if e.name == "pyro-lmmvae"
    ]
    assert script.value == "pyro_lmmvae.cli:main" and script.load() is cli.main


def test_data_verb_does_not_import_pyro(tmp_path):
    """Building a dataset imports the generators, never Pyro."""
    write_tiny_mnist(tmp_path / "mnist", n_per_digit=6)
    argv = ["data", "health-mnist", "--root", str(tmp_path / "mnist")]
    argv += ["--out", str(tmp_path / "h.npz"), "--n-per-digit", "2", "--n-times", "6"]
    script = (
        "import sys\n"
        "from pyro_lmmvae.cli import main\n"
        f"assert main({argv!r}) == 0\n"
        "print('pyro' in sys.modules, 'pyro_lmmvae.datasets' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "False True"


def test_data_verb_does_not_import_torch(tmp_path):
    """Every dataset of `pyro-lmmvae data` builds with numpy, pandas and scipy: no torch (the
    GP-synthetic generator, which needs it, loads only on use)."""
    write_tiny_mnist(tmp_path / "mnist", n_per_digit=6)
    write_tiny_physionet(tmp_path / "physionet")
    mnist = ["--root", str(tmp_path / "mnist")]
    argvs = {
        "health-mnist": [*mnist, "--n-per-digit", "2", "--n-times", "6"],
        "rotating-mnist": [*mnist, "--n-instances", "4", "--n-test-instances", "1"],
        "physionet": ["--root", str(tmp_path / "physionet"), "--min-hours", "2"],
    }
    argvs = {k: ["data", k, *v, "--out", str(tmp_path / f"{k}.npz")] for k, v in argvs.items()}
    script = (
        "import json, sys\n"
        "from pyro_lmmvae.cli import main\n"
        "heavy = {}\n"
        f"for name, argv in {argvs!r}.items():\n"
        "    assert main(argv) == 0, name\n"
        f"    heavy[name] = sorted(m for m in {HEAVY!r} if m in sys.modules)\n"
        "import pyro_lmmvae.datasets as datasets\n"
        "heavy['loaded'] = [n for n in ('make_health_mnist', 'make_rotating_mnist',\n"
        "    'load_physionet') if n in vars(datasets)]\n"
        "print(json.dumps(heavy))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    heavy = json.loads(done.stdout.splitlines()[-1])
    assert heavy == {
        "health-mnist": [],
        "rotating-mnist": [],
        "physionet": [],
        "loaded": ["make_health_mnist", "make_rotating_mnist", "load_physionet"],
    }
    assert all((tmp_path / f"{name}.npz").is_file() for name in argvs)


def test_data_verb_still_builds_a_cache(tmp_path, capsys):
    write_tiny_mnist(tmp_path / "mnist", n_per_digit=6)
    argv = ["data", "health-mnist", "--root", tmp_path / "mnist", "--out", tmp_path / "h.npz"]
    code, text, _ = run([*argv, "--n-per-digit", "2", "--n-times", "6"], capsys)
    assert code == 0 and "health_mnist: 24 rows" in text and (tmp_path / "h.npz").exists()


# --------------------------------------------------------------------------- bad input
@pytest.fixture()
def bad_files(work, tmp_path):
    y = np.load(work.y)
    np.save(tmp_path / "short.npy", y[:-1])
    np.save(tmp_path / "flat.npy", y.ravel())
    np.save(tmp_path / "mask.npy", np.ones((72, 4), bool))
    (tmp_path / "y.txt").write_text("1,2\n")
    pd.read_csv(work.cov).to_csv(tmp_path / "cov.txt", index=False)
    return tmp_path


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"--observations": "short.npy"}, "short.npy has 71 rows but --covariates cov.csv has 72"),
        ({"--covariates": "cov.txt"}, "cov.txt: unknown file extension '.txt'"),
        ({"--observations": "y.txt"}, "y.txt: unknown file extension '.txt'; use one of .npy"),
        ({"--observations": "flat.npy"}, "shape (360,); expected a 2-D (N, D) array"),
        ({"--observations": "cov.csv"}, "column 0 holds non-numeric value(s) such as 'id'"),
        ({"--mask": "mask.npy"}, "--mask mask.npy has shape (72, 4) but --observations"),
        ({"--observations": "missing.npy"}, "--observations missing.npy: no such file"),
        ({"--formula": "~ 1 + t + (1 + t | patient)"}, "column(s) ['patient'] not found in data"),
        ({"--resume": None}, "--resume needs --checkpoint"),
    ],
)
def test_fit_bad_input_exits_2_before_training(
    work, bad_files, change, message, monkeypatch, capsys
):
    monkeypatch.chdir(bad_files)
    (bad_files / "cov.csv").write_bytes(work.cov.read_bytes())
    argv = {"--formula": FORMULA, "--covariates": "cov.csv", "--observations": str(work.y)}
    flags = [x for k, v in (argv | change).items() for x in ([k] if v is None else [k, v])]
    code, _, err = run(["fit", *flags, "--out", "m.pt", *FAST], capsys)
    assert code == 2 and message in err and "Traceback" not in err
    assert err.startswith("pyro-lmmvae fit: error: ") and err.count("\n") == 1
    assert not (bad_files / "m.pt").exists()


def test_not_a_model_file_exits_2(work, tmp_path, capsys):
    for verb in (["predict", work.cov, "--covariates", work.cov], ["impute", work.cov]):
        code, _, err = run([*verb, "--out", tmp_path / "p.npy"], capsys)
        assert code == 2 and "is not a pyro_lmmvae model file (not a torch.save archive" in err
    code, _, err = run(["effects", tmp_path / "none.pt", "--out-dir", tmp_path], capsys)
    assert code == 2 and "none.pt: no such file" in err


def test_cli_error_from_a_subprocess(work, tmp_path):
    """`python -m pyro_lmmvae.cli`: exit status 2, one error line, and no dataset/demo import."""
    np.save(tmp_path / "short.npy", np.load(work.y)[:-1])
    command = [sys.executable, "-X", "importtime", "-m", "pyro_lmmvae.cli", "fit"]
    command += ["--formula", FORMULA, "--covariates", str(work.cov)]
    command += ["--observations", str(tmp_path / "short.npy"), "--out", str(tmp_path / "m.pt")]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stdout == ""
    lines = [line for line in done.stderr.splitlines() if not line.startswith("import time:")]
    assert lines == [
        f"pyro-lmmvae fit: error: --observations {tmp_path / 'short.npy'} has 71 rows but "
        f"--covariates {work.cov} has 72; they must match (one covariate row per observation)"
    ]
    imported = done.stderr
    assert "pyro_lmmvae.datasets" not in imported and "pyro_lmmvae.demo" not in imported


# --------------------------------------------------------------------------- parquet
@pytest.mark.skipif(not HAS_PYARROW, reason="pyarrow is not installed (parquet support)")
def test_parquet_covariates_round_trip(work, tmp_path, isolated_pyro, capsys):
    pd.read_csv(work.cov).to_parquet(tmp_path / "cov.parquet")
    argv = ["fit", "--formula", FORMULA, "--covariates", tmp_path / "cov.parquet"]
    argv += ["--observations", work.y, "--out", tmp_path / "m.pt", *FAST]
    assert run(argv, capsys)[0] == 0
    argv = ["predict", tmp_path / "m.pt", "--covariates", tmp_path / "cov.parquet"]
    assert run([*argv, "--out", tmp_path / "p.npy"], capsys)[0] == 0
    expected = LMMVAE.load(tmp_path / "m.pt").predict(pd.read_csv(work.cov))
    np.testing.assert_array_equal(np.load(tmp_path / "p.npy"), expected)


@pytest.mark.skipif(HAS_PYARROW, reason="pyarrow is installed")
def test_parquet_without_pyarrow_names_the_package(work, tmp_path, capsys):
    (tmp_path / "cov.parquet").write_bytes(b"PAR1")
    argv = ["fit", "--formula", FORMULA, "--covariates", tmp_path / "cov.parquet"]
    code, _, err = run([*argv, "--observations", work.y, "--out", tmp_path / "m.pt"], capsys)
    assert code == 1 and "needs the pyarrow package" in err and "pip install pyarrow" in err
