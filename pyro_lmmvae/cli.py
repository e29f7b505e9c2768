"""Command-line interface.

- ``pyro-lmmvae demo --out DIR [--variant ...] [--objective ...]``: fit on synthetic data.
- ``pyro-lmmvae data {health-mnist,rotating-mnist,physionet} --out FILE.npz [--root DIR]
  [generator options]``: build a dataset into an ``.npz`` cache (reused when it was built
  with the same options).
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import sys
from dataclasses import fields
from pathlib import Path

from pyro_lmmvae.datasets import load_physionet, make_health_mnist, make_rotating_mnist
from pyro_lmmvae.demo import DemoConfig, run_demo

HELP = {
    "variant": "comma-separated LMM-VAE variants: olmm, slmm",
    "objective": "comma-separated training objectives: elbo, gsnn",
    "baselines": "comma-separated baselines: vae, cvae (empty for none)",
}


# verb -> (generator, description, [(parameter, type, help), ...]); defaults come from the
# generator's signature so that the CLI and the Python API cannot disagree.
DATASETS = {
    "health-mnist": (
        make_health_mnist,
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
        make_rotating_mnist,
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
        load_physionet,
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
    for verb, (generator, description, options) in DATASETS.items():
        signature = inspect.signature(generator).parameters
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
        sub.add_argument(
            "--root", default=str(signature["root"].default), help="folder of the raw files"
        )
        for name, kind, text in options:
            flag = f"--{name.replace('_', '-')}"
            default = signature[name].default
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
    out = Path(args.out)
    before = _stamp(out)
    kwargs = {name: getattr(args, name) for name in args._options}
    try:
        ds = args._generator(root=args.root, **kwargs, cache=out)
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


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pyro-lmmvae", description="LMM-VAE: VAEs with a linear-mixed-model latent prior."
    )
    verbs = parser.add_subparsers(dest="verb", required=True)
    demo = verbs.add_parser(
        "demo",
        help="fit LMM-VAE variants and baselines on built-in synthetic data",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description="Generate the synthetic dataset (spec §7), fit every --variant x --objective "
        "and the --baselines, and write metrics.json (every model) and effects.nc, "
        "fixed_effects.png and trajectories.png (the first model) to --out.",
    )
    demo.add_argument("--out", required=True, help="output folder")
    defaults = DemoConfig()
    for f in fields(DemoConfig):
        demo.add_argument(
            f"--{f.name.replace('_', '-')}",
            type=type(getattr(defaults, f.name)),
            default=getattr(defaults, f.name),
            help=HELP.get(f.name, f.name.replace("_", " ")),
        )
    demo.add_argument("--no-progress", action="store_true", help="hide progress bars")
    _add_data_verb(verbs)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``pyro-lmmvae`` command."""
    args = _parser().parse_args(argv)
    if args.verb == "data":
        return _run_data(args)
    if args.verb == "demo":
        config = DemoConfig(**{f.name: getattr(args, f.name) for f in fields(DemoConfig)})
        try:
            config.runs()
        except ValueError as err:
            _parser().error(str(err))
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


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
