"""``pyro-lmmvae data DATASET``: build Health/Rotating MNIST or PhysioNet 2012 into an ``.npz``.

Running the verb imports :mod:`pyro_lmmvae.datasets` (numpy, pandas, scipy), never Pyro nor torch.
"""

from __future__ import annotations

import argparse
import importlib
import os
from pathlib import Path

from pyro_lmmvae import defaults

#: dataset -> (generator in pyro_lmmvae.datasets, default root, description,
#: [(parameter, type, default, help), ...]); the defaults are the generator's.
DATASETS: dict[str, tuple[str, str, str, list[tuple[str, type, object, str]]]] = {
    "health-mnist": (
        "make_health_mnist",
        defaults.MNIST_ROOT,
        "Health MNIST (spec §7): '3's and '6's rotated by a disease-dependent angle and "
        "shifted with age, with pixels missing at random. --root must hold "
        "train-images-idx3-ubyte.gz and train-labels-idx1-ubyte.gz (placed by hand).",
        [
            (
                "n_per_digit",
                int,
                defaults.HEALTH_MNIST_N_PER_DIGIT,
                "number of '3's and of '6's (instances P = 2 x this)",
            ),
            ("n_times", int, defaults.HEALTH_MNIST_N_TIMES, "time points per instance (> 5)"),
            (
                "missing_rate",
                float,
                defaults.HEALTH_MNIST_MISSING_RATE,
                "probability that a pixel is unobserved, in [0, 1)",
            ),
            (
                "balanced",
                bool,
                defaults.HEALTH_MNIST_BALANCED,
                "exactly half of each digit diseased",
            ),
            ("seed", int, defaults.DATA_SEED, "data seed"),
        ],
    ),
    "rotating-mnist": (
        "make_rotating_mnist",
        defaults.MNIST_ROOT,
        "Rotating MNIST (spec §7): each source image rotated to --n-angles angles. --root "
        "must hold train-images-idx3-ubyte.gz and train-labels-idx1-ubyte.gz (placed by hand).",
        [
            ("n_instances", int, defaults.ROTATING_MNIST_N_INSTANCES, "number of source images"),
            ("n_angles", int, defaults.ROTATING_MNIST_N_ANGLES, "number of angles 2 pi k / K"),
            ("digit", int, defaults.ROTATING_MNIST_DIGIT, "digit class, 0..9"),
            (
                "n_test_instances",
                int,
                defaults.ROTATING_MNIST_N_TEST_INSTANCES,
                "instances with a held-out block of angles",
            ),
            (
                "test_block",
                int,
                defaults.ROTATING_MNIST_TEST_BLOCK,
                "length of the held-out block of consecutive angles",
            ),
            ("seed", int, defaults.DATA_SEED, "data seed"),
        ],
    ),
    "physionet": (
        "load_physionet",
        defaults.PHYSIONET_ROOT,
        "PhysioNet 2012 (spec §7): hourly ICU series of 37 variables. --root must hold "
        "set-<set>.tar.gz and Outcomes-<set>.txt (placed by hand).",
        [
            ("set_name", str, defaults.PHYSIONET_SET_NAME, "set letter: a, b or c"),
            (
                "min_hours",
                int,
                defaults.PHYSIONET_MIN_HOURS,
                "keep patients with at least this many observed hours",
            ),
            (
                "test_fraction",
                float,
                defaults.PHYSIONET_TEST_FRACTION,
                "fraction of patients with held-out late hours",
            ),
            (
                "split_hour",
                float,
                defaults.PHYSIONET_SPLIT_HOUR,
                "hour from which test patients' rows are held out",
            ),
            (
                "val_fraction",
                float,
                defaults.PHYSIONET_VAL_FRACTION,
                "fraction of the other rows sent to validation",
            ),
            ("seed", int, defaults.DATA_SEED, "data seed of the split"),
            (
                "patients",
                int,
                None,
                "read only the first N records in archive order (None: all)",
            ),
        ],
    ),
}


def add_parser(verbs: argparse._SubParsersAction) -> None:
    """Add the ``data`` verb, with one sub-verb per dataset, to ``verbs``."""
    data = verbs.add_parser(
        "data",
        help="build a dataset (Health/Rotating MNIST, PhysioNet 2012) into an .npz cache",
        description="Build a dataset from raw files placed by hand (nothing is downloaded) and "
        "write it to --out as an .npz cache; an existing cache built with the same options is "
        "reused, one built with other options is replaced. Prints a short summary.",
    )
    kinds = data.add_subparsers(dest="dataset", required=True, metavar="DATASET")
    for verb, (generator, root, description, options) in DATASETS.items():
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
        sub.add_argument("--root", default=str(root), help="folder of the raw files")
        for name, kind, default, text in options:
            flag = f"--{name.replace('_', '-')}"
            if kind is bool:
                sub.add_argument(
                    flag, action=argparse.BooleanOptionalAction, default=default, help=text
                )
            else:
                sub.add_argument(flag, type=kind, default=default, help=text)
        sub.set_defaults(
            _run=run, _generator=generator, _options=[o[0] for o in options], _error=sub.error
        )


def _stamp(path: Path) -> tuple[int, int, int] | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_ino, stat.st_mtime_ns, stat.st_size


def run(args: argparse.Namespace) -> int:
    """Build (or reuse) the cache and print a one-line summary of the dataset."""
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
