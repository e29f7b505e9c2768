"""Command-line interface.

- ``pyro-lmmvae demo --out DIR [--variant ...] [--objective ...]``: fit on synthetic data.
- ``pyro-lmmvae data {health-mnist,rotating-mnist,physionet} --out FILE.npz [--root DIR]
  [generator options]``: build a dataset into an ``.npz`` cache (reused when it was built
  with the same options).
- ``pyro-lmmvae fit --formula F --covariates X.csv --observations Y.npy --out MODEL.pt``: train
  an LMM-VAE on files and save it.
- ``pyro-lmmvae predict MODEL.pt --covariates X.csv --out PRED.npy``: prediction at covariates.
- ``pyro-lmmvae impute MODEL.pt --out IMPUTED.npy [--covariates X --observations Y]``: fill in
  the missing entries of the training rows (or of given rows).
- ``pyro-lmmvae effects MODEL.pt --out-dir DIR``: ``effects.nc``, ``summary.csv``, ``forest.png``.

This module imports nothing heavy at import time: the defaults shown by ``--help`` are read
from the library's source (:func:`_source_defaults`), and torch, pandas, ArviZ and the library
are imported inside the verbs. (``import pyro_lmmvae``, which runs before this module is
loaded, still imports the estimator and therefore torch.)
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import functools
import importlib
import importlib.util
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

PACKAGE = Path(__file__).resolve().parent

HELP = {
    "max_epochs": "epochs per model (default: until the validation objective converges)",
    "lr": "Adam learning rate of the networks (default: fit()'s, 1e-3)",
    "variant": "comma-separated LMM-VAE variants: olmm, slmm",
    "objective": "comma-separated training objectives: elbo, gsnn",
    "baselines": "comma-separated baselines: vae, cvae (empty for none)",
}

#: Extensions of the files the verbs read and write.
TABLE_EXTENSIONS = (".csv", ".parquet", ".pq")
ARRAY_EXTENSIONS = (".npy", ".npz", ".csv")
OUTPUT_EXTENSIONS = (".npy", ".csv")


def _optional(kind: type) -> Any:
    """An argparse type: ``kind`` or None (spelled ``none``)."""

    def parse(text: str) -> Any:
        return None if text.strip().lower() == "none" else kind(text)

    parse.__name__ = kind.__name__
    return parse


@functools.cache
def _source_defaults(source: str, qualname: str) -> dict[str, Any]:
    """Literal defaults of a function, method or dataclass of this package, read from its source.

    ``source`` is the file relative to the package, ``qualname`` e.g. ``"LMMVAE.fit"``. Reading
    the syntax tree instead of importing keeps ``--help`` free of torch while the CLI still
    takes its defaults from the Python API (``tests/test_cli.py`` checks them against
    :func:`inspect.signature`). Defaults that are not literals (or module-level literal
    constants) are left out.
    """
    tree = ast.parse((PACKAGE / source).read_text(encoding="utf-8"))
    constants: dict[str, Any] = {}
    for stmt in tree.body:
        target = stmt.targets[0] if isinstance(stmt, ast.Assign) else getattr(stmt, "target", None)
        if isinstance(target, ast.Name) and getattr(stmt, "value", None) is not None:
            with contextlib.suppress(ValueError, TypeError, SyntaxError):
                constants[target.id] = ast.literal_eval(stmt.value)

    def literal(node: ast.expr) -> Any:
        if isinstance(node, ast.Name) and node.id in constants:
            return constants[node.id]
        return ast.literal_eval(node)

    node: Any = tree
    for part in qualname.split("."):
        node = next(
            child
            for child in node.body
            if isinstance(child, ast.FunctionDef | ast.ClassDef) and child.name == part
        )
    if isinstance(node, ast.ClassDef):  # a dataclass: its annotated fields
        pairs = [
            (stmt.target.id, stmt.value)
            for stmt in node.body
            if isinstance(stmt, ast.AnnAssign)
            and isinstance(stmt.target, ast.Name)
            and stmt.value is not None
        ]
    else:
        args = node.args
        positional = args.posonlyargs + args.args
        with_default = positional[len(positional) - len(args.defaults) :]
        pairs = [
            (arg.arg, default) for arg, default in zip(with_default, args.defaults, strict=True)
        ]
        pairs += [
            (arg.arg, default)
            for arg, default in zip(args.kwonlyargs, args.kw_defaults, strict=True)
            if default is not None
        ]
    defaults = {}
    for name, value in pairs:
        with contextlib.suppress(ValueError, TypeError, SyntaxError):
            defaults[name] = literal(value)
    return defaults


# verb -> (generator, source file, description, [(parameter, type, help), ...]); defaults come
# from the generator's signature so that the CLI and the Python API cannot disagree.
DATASETS = {
    "health-mnist": (
        "make_health_mnist",
        "datasets/mnist.py",
        "Health MNIST (spec §7): '3's and '6's rotated by a disease-dependent angle and "
        "shifted with age, with pixels missing at random. --root must hold "
        "train-images-idx3-ubyte.gz and train-labels-idx1-ubyte.gz (placed by hand).",
        [
            ("n_per_digit", int, "number of '3's and of '6's (instances P = 2 x this)"),
            ("n_times", int, "time points per instance (> 5)"),
            ("missing_rate", float, "probability that a pixel is unobserved, in [0, 1)"),
            ("balanced", bool, "exactly half of each digit diseased"),
            ("seed", int, "data seed"),
        ],
    ),
    "rotating-mnist": (
        "make_rotating_mnist",
        "datasets/mnist.py",
        "Rotating MNIST (spec §7): each source image rotated to --n-angles angles. --root "
        "must hold train-images-idx3-ubyte.gz and train-labels-idx1-ubyte.gz (placed by hand).",
        [
            ("n_instances", int, "number of source images"),
            ("n_angles", int, "number of angles 2 pi k / K"),
            ("digit", int, "digit class, 0..9"),
            ("n_test_instances", int, "instances with a held-out block of angles"),
            ("test_block", int, "length of the held-out block of consecutive angles"),
            ("seed", int, "data seed"),
        ],
    ),
    "physionet": (
        "load_physionet",
        "datasets/physionet.py",
        "PhysioNet 2012 (spec §7): hourly ICU series of 37 variables. --root must hold "
        "set-<set>.tar.gz and Outcomes-<set>.txt (placed by hand).",
        [
            ("set_name", str, "set letter: a, b or c"),
            ("min_hours", int, "keep patients with at least this many observed hours"),
            ("test_fraction", float, "fraction of patients with held-out late hours"),
            ("split_hour", float, "hour from which test patients' rows are held out"),
            ("val_fraction", float, "fraction of the other rows sent to validation"),
            ("seed", int, "data seed of the split"),
            ("patients", int, "read only the first N records in archive order (None: all)"),
        ],
    ),
}


def _add_data_verb(verbs: argparse._SubParsersAction) -> None:
    data = verbs.add_parser(
        "data",
        help="build a dataset (Health/Rotating MNIST, PhysioNet 2012) into an .npz cache",
        description="Build a dataset from raw files placed by hand (nothing is downloaded) and "
        "write it to --out as an .npz cache; an existing cache built with the same options is "
        "reused, one built with other options is replaced. Prints a short summary.",
    )
    kinds = data.add_subparsers(dest="dataset", required=True, metavar="DATASET")
    for verb, (generator, source, description, options) in DATASETS.items():
        signature = _source_defaults(source, generator)
        sub = kinds.add_parser(
            verb,
            help=description.split(":")[0],
            description=description,
            formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        )
        sub.add_argument(
            "--out",
            required=True,
            default=argparse.SUPPRESS,
            help="output .npz file (the dataset cache)",
        )
        sub.add_argument("--root", default=str(signature["root"]), help="folder of the raw files")
        for name, kind, text in options:
            flag = f"--{name.replace('_', '-')}"
            default = signature[name]
            if kind is bool:
                sub.add_argument(
                    flag, action=argparse.BooleanOptionalAction, default=default, help=text
                )
            else:
                sub.add_argument(flag, type=kind, default=default, help=text)
        sub.set_defaults(_generator=generator, _options=[o[0] for o in options], _error=sub.error)


def _stamp(path: Path) -> tuple[int, int, int] | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_ino, stat.st_mtime_ns, stat.st_size


def _run_data(args: argparse.Namespace) -> int:
    datasets = importlib.import_module("pyro_lmmvae.datasets")
    out = Path(args.out)
    before = _stamp(out)
    kwargs = {name: getattr(args, name) for name in args._options}
    try:
        ds = getattr(datasets, args._generator)(root=args.root, **kwargs, cache=out)
    except (ValueError, OSError) as err:
        args._error(str(err).replace("pass root=", "pass --root"))
    splits = ds.data["split"].value_counts() if "split" in ds.data.columns else {}
    per_split = ", ".join(f"{k} {int(splits.get(k, 0))}" for k in ("train", "val", "test"))
    observed = float(ds.mask.mean()) if ds.mask.size else 0.0
    print(
        f"{ds.name}: {ds.n_obs} rows ({per_split}), D = {ds.n_features}, "
        f"{ds.n_instances} instances, observed fraction {observed:.3f}"
    )
    reused = before is not None and before == _stamp(out)
    action = "reused existing cache" if reused else "wrote"
    print(f"{action} {os.path.abspath(out)}")
    return 0


def _run_demo(args: argparse.Namespace) -> int:
    from pyro_lmmvae.demo import DemoConfig, run_demo

    config = DemoConfig(**{name: getattr(args, name) for name in args._fields})
    try:
        config.runs()
    except ValueError as err:
        args._error(str(err))
    results = run_demo(args.out, config, progress=not args.no_progress)
    summary = {
        name: {k: figures.get(k) for k in ("imputation_mse", "prediction_mse")}
        for name, figures in results["models"].items()
    }
    primary = results["primary"]
    for key in ("fixed_effects_rel_error", "random_effects_corr"):
        summary[primary][key] = results[key]
    print(json.dumps(summary, indent=2))
    print(f"wrote {args.out}/effects.nc, metrics.json, fixed_effects.png, trajectories.png")
    return 0


# --------------------------------------------------------------------------- reading files
class MissingPackageError(ImportError):
    """An optional package that a file format needs is not installed (exit status 1)."""


def _existing(path: str, flag: str) -> Path:
    file = Path(path)
    if not file.exists():
        raise FileNotFoundError(f"{flag} {path}: no such file")
    if file.is_dir():
        raise ValueError(f"{flag} {path} is a folder, not a file")
    return file


def _extension(path: str, flag: str, allowed: tuple[str, ...]) -> str:
    ext = Path(path).suffix.lower()
    if ext not in allowed:
        raise ValueError(
            f"{flag} {path}: unknown file extension {ext or '(none)'!r}; use one of "
            f"{', '.join(allowed)}"
        )
    return ext


def _read_covariates(path: str, flag: str = "--covariates"):
    """A covariate table (one row per observation) from ``.csv`` or ``.parquet``."""
    ext = _extension(path, flag, TABLE_EXTENSIONS)
    file = _existing(path, flag)
    import pandas as pd

    if ext == ".csv":
        reader = pd.read_csv
    else:
        if not any(importlib.util.find_spec(p) for p in ("pyarrow", "fastparquet")):
            raise MissingPackageError(
                f"{flag} {path}: reading parquet files needs the pyarrow package, which is not "
                "installed (pip install pyarrow), or give the covariates as .csv"
            )
        reader = pd.read_parquet
    try:
        table = reader(file)
    except (ValueError, OSError) as err:
        raise ValueError(f"{flag} {path}: cannot read the table: {err}") from err
    if table.empty:
        raise ValueError(f"{flag} {path}: the table has no rows")
    return table


def _numeric_csv(file: Path, flag: str):
    """A numeric CSV array; empty cells and ``nan`` are NaN.

    A first line that is not numeric, or that is pandas' default header ``0,1,...,D-1``
    (``DataFrame(array).to_csv(index=False)``), is read as column names.
    """
    import numpy as np
    import pandas as pd

    def numeric(frame: pd.DataFrame) -> bool:
        return all(
            pd.api.types.is_numeric_dtype(dtype) or pd.api.types.is_bool_dtype(dtype)
            for dtype in frame.dtypes
        )

    try:
        with open(file, encoding="utf-8") as handle:
            first = [token.strip().strip('"') for token in handle.readline().split(",")]
        header = 0 if first == [str(i) for i in range(len(first))] else None
        frame = pd.read_csv(file, header=header)
        if header is None and not numeric(frame):  # a line of column names?
            with_header = pd.read_csv(file, header=0)
            if numeric(with_header):
                frame, header = with_header, 0
    except (ValueError, OSError) as err:
        raise ValueError(f"{flag} {file}: cannot read the CSV file: {err}") from err
    for column in frame.columns:
        if not numeric(frame[[column]]):
            values = frame[column]
            bad = values[pd.to_numeric(values, errors="coerce").isna() & values.notna()]
            line = int(bad.index[0]) + (2 if header == 0 else 1)
            raise ValueError(
                f"{flag} {file}: column {column!r} holds non-numeric value(s) such as "
                f"{str(bad.iloc[0])!r} (line {line}); write numbers, leave missing entries "
                "empty or 'nan'"
            )
    return frame.to_numpy(dtype=np.float64)


def _read_array(path: str, flag: str, *, key: str = "y"):
    """A 2-D array from ``.npy``, ``.npz`` (array ``key`` or the only one) or ``.csv``.

    Returns ``(array, extra)``, where ``extra`` is the ``mask`` array of an ``.npz`` holding
    one besides ``key`` (None otherwise).
    """
    import numpy as np

    ext = _extension(path, flag, ARRAY_EXTENSIONS)
    file = _existing(path, flag)
    extra = None
    try:
        if ext == ".npy":
            array = np.load(file, allow_pickle=False)
        elif ext == ".npz":
            with np.load(file, allow_pickle=False) as archive:
                names = list(archive.files)
                if key in names:
                    name = key
                elif len(names) == 1:
                    name = names[0]
                else:
                    raise ValueError(
                        f"{flag} {path} holds the arrays {names}; name the one to use {key!r}"
                    )
                array = archive[name]
                if name == key and "mask" in names and key != "mask":
                    extra = archive["mask"]
        else:
            array = _numeric_csv(file, flag)
    except (ValueError, OSError, EOFError) as err:
        if str(err).startswith(flag):
            raise
        raise ValueError(f"{flag} {path}: cannot read the array: {err}") from err
    if array.ndim != 2:
        raise ValueError(
            f"{flag} {path} holds an array of shape {array.shape}; expected a 2-D (N, D) array, "
            "one row per observation (flatten images)"
        )
    return array, extra


def _read_observations(
    observations: str, covariates_rows: int | None, covariates: str | None, mask: str | None
):
    """Observations (NaN = missing) and an optional mask, checked against the covariate rows."""
    y, npz_mask = _read_array(observations, "--observations", key="y")
    if mask is not None:
        mask_array, _ = _read_array(mask, "--mask", key="mask")
        if mask_array.shape != y.shape:
            raise ValueError(
                f"--mask {mask} has shape {mask_array.shape} but --observations {observations} "
                f"has shape {y.shape}; they must match"
            )
    else:
        mask_array = npz_mask
    if covariates_rows is not None and y.shape[0] != covariates_rows:
        raise ValueError(
            f"--observations {observations} has {y.shape[0]} rows but --covariates "
            f"{covariates} has {covariates_rows}; they must match (one covariate row per "
            "observation)"
        )
    return y, mask_array


def _check_output(path: str, flag: str, allowed: tuple[str, ...] | None = None) -> Path:
    if allowed is not None:
        _extension(path, flag, allowed)
    out = Path(path)
    if out.is_dir():
        raise ValueError(f"{flag} {path} is a folder; give a file name")
    return out


def _write_array(path: Path, array) -> None:
    import numpy as np

    from pyro_lmmvae.io import write_atomic

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as handle:
            if path.suffix.lower() == ".csv":
                np.savetxt(handle, array, delimiter=",", fmt="%.9g")
            else:
                np.save(handle, array, allow_pickle=False)

    write_atomic(path, write)


def _load_model(path: str):
    from pyro_lmmvae import LMMVAE

    # LMMVAE.load gives one-line errors naming the file and the cause (ModelFileError)
    return LMMVAE.load(_existing(path, "model file"))


@contextlib.contextmanager
def _library_errors() -> Iterator[None]:
    """Give the library's KeyErrors (missing columns) as ValueErrors, with CLI names."""
    try:
        yield
    except KeyError as err:
        message = err.args[0] if err.args and isinstance(err.args[0], str) else repr(err)
        raise ValueError(message) from err
    except ValueError as err:
        message = str(err)
        for api, cli in (
            ("pass unseen='prior'", "pass --unseen prior"),
            (
                "pass data= with one row per row of y",
                "pass --covariates (one row per row of --observations)",
            ),
        ):
            message = message.replace(api, cli)
        raise ValueError(message) from err


# --------------------------------------------------------------------------- verbs
def _fraction_or_none(text: str) -> float | None:
    if text.strip().lower() in ("none", "0", "0.0", ""):
        return None
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a fraction or 'none': {text!r}") from None
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"the validation fraction must be in (0, 1), got {value}")
    return value


def _run_fit(args: argparse.Namespace) -> int:
    out = _check_output(args.out, "--out")
    if args.resume and args.checkpoint is None:
        raise ValueError("--resume needs --checkpoint: the file to resume from")
    covariates = _read_covariates(args.covariates)
    y, mask = _read_observations(args.observations, len(covariates), args.covariates, args.mask)
    import torch

    from pyro_lmmvae import LMMVAE
    from pyro_lmmvae.training.loop import NonFiniteLossError

    try:
        device = torch.device(args.device)
    except RuntimeError as err:
        raise ValueError(f"--device {args.device}: {err}") from err
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {args.device}: torch.cuda.is_available() is False")
    with _library_errors():
        model = LMMVAE(
            args.formula,
            data=covariates,
            y=y,
            mask=mask,
            latent_dim=args.latent_dim,
            variant=args.variant,
            objective=args.objective,
            instance=args.instance,
            network=args.network,
            likelihood=args.likelihood,
            noise_scale=args.noise_scale,
            standardize=not args.no_standardize,
            seed=args.seed,
        )
    try:
        model.fit(
            max_epochs=args.epochs,
            batch_size=args.batch_size,
            lr=args.lr,
            effects_lr=args.effects_lr,
            lr_decay=args.lr_decay,
            local_lr=args.local_lr,
            validation=args.validation,
            select=args.select,
            patience=args.patience,
            device=device,
            progress=args.progress,
            seed=args.seed,
            kl=args.kl,
            checkpoint=args.checkpoint,
            resume=args.resume,
        )
    except NonFiniteLossError as err:
        print(f"pyro-lmmvae fit: error: {err}", file=sys.stderr)
        return 1
    model.save(out)
    history = model.history
    epochs = len(history.train_loss)
    if history.best_val_loss is not None:
        best = f"best validation {history.best_val_loss:.6g} at epoch {history.best_epoch + 1}"
    else:
        best = "no validation"
    print(
        f"fit: {epochs} epochs ({history.stop_reason}), {best}, {len(covariates)} rows, "
        f"D = {model.obs_dim}; wrote {out}"
    )
    return 0


def _run_predict(args: argparse.Namespace) -> int:
    out = _check_output(args.out, "--out", OUTPUT_EXTENSIONS)
    context_files = args.context_covariates is not None or args.context_observations is not None
    if args.unseen == "context" and (
        args.context_covariates is None or args.context_observations is None
    ):
        raise ValueError("--unseen context needs --context-covariates and --context-observations")
    if context_files and args.unseen != "context":
        raise ValueError("--context-covariates/--context-observations need --unseen context")
    covariates = _read_covariates(args.covariates)
    context = None
    if args.unseen == "context":
        ctx_data = _read_covariates(args.context_covariates, "--context-covariates")
        try:
            ctx_y, ctx_mask = _read_observations(
                args.context_observations, len(ctx_data), args.context_covariates, args.context_mask
            )
        except ValueError as err:  # name the context flags
            raise ValueError(
                str(err)
                .replace("--observations", "--context-observations")
                .replace("--covariates", "--context-covariates")
                .replace("--mask", "--context-mask")
            ) from err
        context = (ctx_data, ctx_y, ctx_mask)
    model = _load_model(args.model)
    with _library_errors():
        pred = model.predict(
            covariates,
            unseen=args.unseen,
            context=context,
            context_steps=args.context_steps,
            context_lr=args.context_lr,
            seed=args.seed,
        )
    _write_array(out, pred)
    print(f"predict: {pred.shape[0]} rows x {pred.shape[1]} features; wrote {out}")
    return 0


def _run_impute(args: argparse.Namespace) -> int:
    out = _check_output(args.out, "--out", OUTPUT_EXTENSIONS)
    if args.observations is None and (args.covariates is not None or args.mask is not None):
        raise ValueError("--covariates and --mask need --observations: the rows to impute")
    covariates = y = mask = None
    if args.observations is not None:
        if args.covariates is not None:
            covariates = _read_covariates(args.covariates)
        y, mask = _read_observations(
            args.observations,
            None if covariates is None else len(covariates),
            args.covariates,
            args.mask,
        )
    model = _load_model(args.model)
    if y is not None and y.shape[1] != model.obs_dim:
        raise ValueError(
            f"--observations {args.observations} has {y.shape[1]} columns but the model "
            f"{args.model} was fitted to {model.obs_dim}"
        )
    with _library_errors():
        imputed = model.impute(y, mask, covariates, keep_observed=args.keep_observed)
    _write_array(out, imputed)
    rows = "training rows" if y is None else "rows"
    print(f"impute: {imputed.shape[0]} {rows} x {imputed.shape[1]} features; wrote {out}")
    return 0


def _run_effects(args: argparse.Namespace) -> int:
    if args.draws < 1:
        raise ValueError(f"--draws must be >= 1, got {args.draws}")
    out_dir = Path(args.out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"--out-dir {args.out_dir} is a file, not a folder")
    model = _load_model(args.model)
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from pyro_lmmvae import arviz_compat
    from pyro_lmmvae.io import atomic_path, write_atomic

    idata = model.effects(num_draws=args.draws, seed=args.seed)
    posterior = arviz_compat.group_dataset(idata, "posterior")
    names = [name for name in ("fixed_effects", "random_effects") if name in posterior]
    names += sorted(name for name in posterior.data_vars if name not in names)
    with atomic_path(out_dir / "effects.nc") as tmp:
        arviz_compat.to_netcdf(idata, tmp)
    # mean, sd (empty for a single draw, i.e. point estimates), hdi_3%, hdi_97%
    summary = arviz_compat.summary(idata, var_names=names, hdi_prob=0.94)
    write_atomic(out_dir / "summary.csv", lambda tmp: summary.to_csv(tmp, index_label="variable"))

    fixed = posterior["fixed_effects"]
    rows = int(fixed.sizes.get("latent", 1) * fixed.sizes.get("term", 1))
    fig = Figure(figsize=(7.0, min(2.0 + 0.25 * rows, 200.0)))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    arviz_compat.plot_forest(idata, var_names=["fixed_effects"], ax=ax, hdi_prob=0.94)
    ax.axvline(0.0, color="0.6", linewidth=0.8, linestyle="--", zorder=0)
    ax.set_title(f"fixed effects: {posterior.attrs.get('formula', '')}")
    fig.tight_layout()
    write_atomic(out_dir / "forest.png", lambda tmp: fig.savefig(tmp, format="png", dpi=100))
    n_draws = posterior.sizes["draw"]
    draws = f"{n_draws} draws" if n_draws > 1 else "1 draw (point estimates)"
    print(
        f"effects: {draws}, "
        f"{len(summary)} summary rows; wrote {out_dir}/effects.nc, summary.csv, forest.png"
    )
    return 0


# --------------------------------------------------------------------------- parser
class _DefaultsFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Show ``(default: X)`` except for options that default to None (said in their help)."""

    def __init__(self, prog: str) -> None:
        super().__init__(prog, max_help_position=32)

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None:
            return action.help
        return super()._get_help_string(action)


def _add_model_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "model",
        metavar="MODEL.pt",
        help="model file written by 'pyro-lmmvae fit' (or LMMVAE.save, or a fit checkpoint)",
    )


def _add_fit_verb(verbs: argparse._SubParsersAction) -> None:
    init = _source_defaults("api.py", "LMMVAE.__init__")
    fit = _source_defaults("api.py", "LMMVAE.fit")
    parser = verbs.add_parser(
        "fit",
        help="train an LMM-VAE on covariate and observation files and save it",
        formatter_class=_DefaultsFormatter,
        description="Read the covariates (one row per observation) and the (N, D) observations "
        "(NaN marks a missing entry, or give --mask), train an LMM-VAE whose latent prior is "
        "--formula (LMMVAE(...).fit(...)), keep the weights with the best validation score and "
        "save the estimator to --out (LMMVAE.save, atomic). Prints a one-line summary.",
    )
    files = parser.add_argument_group("files")
    files.add_argument(
        "--formula",
        required=True,
        default=argparse.SUPPRESS,
        help="lme4 formula of the latent prior, e.g. '~ 1 + t + (1 + t | id)'; '~ 0' is a VAE",
    )
    files.add_argument(
        "--covariates",
        required=True,
        default=argparse.SUPPRESS,
        metavar="FILE",
        help="covariate table, .csv or .parquet (parquet needs pyarrow)",
    )
    files.add_argument(
        "--observations",
        required=True,
        default=argparse.SUPPRESS,
        metavar="FILE",
        help="(N, D) observations, .npy, .npz (array 'y', and 'mask' if present) or .csv (empty "
        "or nan cells missing); N must equal the covariate rows",
    )
    files.add_argument(
        "--mask", metavar="FILE", help="(N, D) mask, true/1 where observed (.npy, .npz, .csv)"
    )
    files.add_argument(
        "--out",
        required=True,
        default=argparse.SUPPRESS,
        metavar="MODEL.pt",
        help="model file to write",
    )
    model = parser.add_argument_group("model (LMMVAE arguments)")
    model.add_argument("--latent-dim", type=int, default=init["latent_dim"], help="L")
    model.add_argument(
        "--variant", choices=("olmm", "slmm", "cvae"), default=init["variant"], help="model variant"
    )
    model.add_argument(
        "--objective", choices=("elbo", "gsnn"), default=init["objective"], help="objective"
    )
    model.add_argument(
        "--likelihood",
        choices=("gaussian", "bernoulli"),
        default=init["likelihood"],
        help="observation likelihood",
    )
    model.add_argument(
        "--noise-scale",
        type=float,
        default=init["noise_scale"],
        help="fixed Gaussian noise sd (learned per feature if not given)",
    )
    model.add_argument(
        "--network",
        default=init["network"],
        help="encoder/decoder: mlp, health_mnist, health_mnist_identifiability, rotating_mnist, "
        "physionet",
    )
    model.add_argument(
        "--instance",
        default=init["instance"],
        help="instance column, when the formula has no random term (sLMM, GSNN)",
    )
    model.add_argument(
        "--no-standardize",
        action="store_true",
        help="keep continuous covariates on their own scale (no z-scoring)",
    )
    model.add_argument(
        "--seed",
        type=int,
        default=init["seed"],
        help="seed of initialisation, batching and Monte Carlo draws",
    )
    train = parser.add_argument_group("training (LMMVAE.fit arguments)")
    train.add_argument(
        "--epochs",
        type=int,
        default=fit["max_epochs"],
        help="number of epochs; None: until the objective stops improving, at most 1000",
    )
    train.add_argument(
        "--batch-size", type=int, default=fit["batch_size"], help="instances per batch"
    )
    train.add_argument(
        "--lr", type=float, default=fit["lr"], help="Adam learning rate of the networks"
    )
    train.add_argument(
        "--effects-lr",
        type=float,
        default=fit["effects_lr"],
        help="Adam learning rate of the latent LMM (effects, variance components, sigma_z)",
    )
    train.add_argument(
        "--lr-decay", type=float, default=fit["lr_decay"], help="per-epoch learning-rate factor"
    )
    train.add_argument(
        "--local-lr",
        type=float,
        default=fit["local_lr"],
        help="learning rate of the per-instance random effects (default: --effects-lr times "
        "the batches per epoch, at most 0.1)",
    )
    train.add_argument(
        "--validation",
        type=_fraction_or_none,
        default=fit["validation"],
        help="fraction of rows held out for early stopping, or 'none'",
    )
    train.add_argument(
        "--select",
        choices=("objective", "prediction_mse"),
        default=fit["select"],
        help="validation score that picks the kept weights",
    )
    train.add_argument(
        "--patience",
        type=int,
        default=fit["patience"],
        help="stop after this many epochs without improvement (never if not given)",
    )
    train.add_argument(
        "--kl",
        choices=("auto", "closed_form", "trace_mean_field"),
        default=fit["kl"],
        help="KL estimator of the ELBO",
    )
    train.add_argument("--device", default=fit["device"], help="torch device, e.g. cuda")
    train.add_argument(
        "--checkpoint",
        metavar="FILE",
        default=fit["checkpoint"],
        help="write a checkpoint after every epoch (atomically)",
    )
    train.add_argument(
        "--resume",
        action="store_true",
        help="continue from --checkpoint if it exists (same arguments as the interrupted run)",
    )
    train.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=fit["progress"],
        help="show a progress bar",
    )
    parser.set_defaults(_run=_run_fit)


def _add_predict_verb(verbs: argparse._SubParsersAction) -> None:
    defaults = _source_defaults("api.py", "LMMVAE.predict")
    parser = verbs.add_parser(
        "predict",
        help="predict observations at new covariates with a fitted model",
        formatter_class=_DefaultsFormatter,
        description="Conditional generation at the rows of --covariates (LMMVAE.predict): "
        "g(M_f x + E[u_p] w) for the oLMM-VAE and GSNN, the sLMM-VAE adds its instances' pooled "
        "offsets. Writes an (N, D) array to --out (.npy, or .csv by extension; atomic).",
    )
    _add_model_argument(parser)
    parser.add_argument(
        "--covariates",
        required=True,
        default=argparse.SUPPRESS,
        metavar="FILE",
        help="covariates of the rows to predict (.csv or .parquet), with the instance column "
        "when the formula has random effects",
    )
    parser.add_argument(
        "--out",
        required=True,
        default=argparse.SUPPRESS,
        metavar="PRED.npy",
        help="output array, .npy or .csv",
    )
    parser.add_argument(
        "--unseen",
        choices=("error", "prior", "context"),
        default=defaults["unseen"],
        help="instances not seen in training: fail, use the prior mean of their random effects "
        "(the population curve), or adapt them to their --context-* rows",
    )
    context = parser.add_argument_group("context of unseen instances (--unseen context)")
    context.add_argument("--context-covariates", metavar="FILE", help="covariates of their rows")
    context.add_argument("--context-observations", metavar="FILE", help="their (n, D) observations")
    context.add_argument("--context-mask", metavar="FILE", help="their mask")
    context.add_argument(
        "--context-steps", type=int, default=defaults["context_steps"], help="Adam steps"
    )
    context.add_argument(
        "--context-lr", type=float, default=defaults["context_lr"], help="Adam learning rate"
    )
    context.add_argument(
        "--seed", type=int, default=defaults["seed"], help="seed of the context fit"
    )
    parser.set_defaults(_run=_run_predict)


def _add_impute_verb(verbs: argparse._SubParsersAction) -> None:
    parser = verbs.add_parser(
        "impute",
        help="fill in missing entries with a fitted model",
        formatter_class=_DefaultsFormatter,
        description="Impute the missing entries of the training rows (default) or of the rows "
        "in --observations (LMMVAE.impute): the decoder's reconstruction from the posterior "
        "latents (GSNN: from the covariates only). Writes an (N, D) array to --out (.npy, or "
        ".csv by extension; atomic). Models other than the oLMM-VAE need --covariates of the "
        "given rows.",
    )
    _add_model_argument(parser)
    parser.add_argument(
        "--out",
        required=True,
        default=argparse.SUPPRESS,
        metavar="IMPUTED.npy",
        help="output array, .npy or .csv",
    )
    parser.add_argument(
        "--observations",
        metavar="FILE",
        help="(N, D) rows to impute (NaN missing): .npy, .npz or .csv; the training rows if not "
        "given",
    )
    parser.add_argument("--mask", metavar="FILE", help="(N, D) mask of --observations")
    parser.add_argument(
        "--covariates", metavar="FILE", help="covariates of the --observations rows"
    )
    parser.add_argument(
        "--keep-observed",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="keep observed entries as given (--no-keep-observed: the full reconstruction)",
    )
    parser.set_defaults(_run=_run_impute)


def _add_effects_verb(verbs: argparse._SubParsersAction) -> None:
    defaults = _source_defaults("api.py", "LMMVAE.effects")
    parser = verbs.add_parser(
        "effects",
        help="write a fitted model's fixed and random effects (netCDF, CSV summary, forest plot)",
        formatter_class=_DefaultsFormatter,
        description="Draw the learned effects (LMMVAE.effects) and write, atomically, to "
        "--out-dir: effects.nc (the ArviZ InferenceData, a DataTree on ArviZ >= 1.0; "
        "pyro_lmmvae.arviz_compat.from_netcdf or az.from_netcdf reads it), summary.csv (the fixed "
        "and random effects: mean, sd and the 94% HDI as columns hdi_3%, hdi_97%, on every "
        "ArviZ version) and forest.png (the fixed effects: means, 94% and 50% HDIs). Point "
        "estimates (the sLMM default) give a single draw.",
    )
    _add_model_argument(parser)
    parser.add_argument(
        "--out-dir",
        required=True,
        default=argparse.SUPPRESS,
        metavar="DIR",
        help="output folder (created if needed)",
    )
    parser.add_argument(
        "--draws", type=int, default=defaults["num_draws"], help="draws from the posterior"
    )
    parser.add_argument("--seed", type=int, default=defaults["seed"], help="seed of the draws")
    parser.set_defaults(_run=_run_effects)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pyro-lmmvae", description="LMM-VAE: VAEs with a linear-mixed-model latent prior."
    )
    verbs = parser.add_subparsers(dest="verb", required=True)
    demo = verbs.add_parser(
        "demo",
        help="fit LMM-VAE variants and baselines on built-in synthetic data",
        formatter_class=_DefaultsFormatter,
        description="Generate the synthetic dataset (spec §7), fit every --variant x --objective "
        "and the --baselines, and write metrics.json (every model) and effects.nc, "
        "fixed_effects.png and trajectories.png (the first model) to --out.",
    )
    demo.add_argument("--out", required=True, help="output folder")
    defaults = _source_defaults("demo.py", "DemoConfig")
    optional = {"max_epochs": int, "lr": float}  # None: fit()'s own default
    for name, default in defaults.items():
        demo.add_argument(
            f"--{name.replace('_', '-')}",
            type=_optional(optional[name]) if default is None else type(default),
            default=default,
            help=HELP.get(name, name.replace("_", " ")),
        )
    demo.add_argument("--no-progress", action="store_true", help="hide progress bars")
    demo.set_defaults(_fields=list(defaults), _error=demo.error)
    _add_data_verb(verbs)
    _add_fit_verb(verbs)
    _add_predict_verb(verbs)
    _add_impute_verb(verbs)
    _add_effects_verb(verbs)
    return parser


def _resume_hint(args: argparse.Namespace) -> str:
    """For an interrupted ``fit`` that writes checkpoints: how to continue it."""
    checkpoint = getattr(args, "checkpoint", None)
    if args.verb != "fit" or checkpoint is None:
        return ""
    if not Path(checkpoint).exists():
        return f"; no checkpoint was written to {checkpoint} yet"
    return (
        f"; {checkpoint} holds the last completed epoch: run the same command with --resume "
        "to continue"
    )


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``pyro-lmmvae`` command.

    Exit status 0 on success; 2 for usage errors and bad or missing input files (the message
    names the file, column or shape at fault; no traceback); 1 when a needed package is
    missing, a file cannot be written, or training fails (non-finite loss); 130 on Ctrl-C
    (one line; for ``fit`` with ``--checkpoint``, how to resume).
    """
    args = _parser().parse_args(argv)
    try:
        if args.verb == "data":
            return _run_data(args)
        if args.verb == "demo":
            return _run_demo(args)
        return args._run(args)
    except KeyboardInterrupt:
        print(f"pyro-lmmvae {args.verb}: interrupted{_resume_hint(args)}", file=sys.stderr)
        return 130
    except (ValueError, OSError, MissingPackageError) as err:
        # argparse's format without the usage block: the input, not the syntax, is at fault
        print(f"pyro-lmmvae {args.verb}: error: {err}", file=sys.stderr)
        return 2 if isinstance(err, ValueError | FileNotFoundError) else 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
