"""``pyro-lmmvae demo``: fit LMM-VAE variants and baselines on the built-in synthetic data."""

from __future__ import annotations

import argparse
import json

from pyro_lmmvae import defaults
from pyro_lmmvae.cli.common import DefaultsFormatter, optional

#: The options: (field of DemoConfig, type, default, help), in the order of its fields.
OPTIONS: list[tuple[str, type, object, str]] = [
    ("n_instances", int, defaults.DEMO_N_INSTANCES, "n instances"),
    ("latent_dim", int, defaults.DEMO_LATENT_DIM, "latent dim"),
    (
        "max_epochs",
        int,
        None,
        "epochs per model (default: until the validation objective converges)",
    ),
    ("batch_size", int, defaults.DEMO_BATCH_SIZE, "batch size"),
    ("lr", float, None, "Adam learning rate of the networks (default: fit()'s, 1e-3)"),
    ("variant", str, defaults.DEMO_VARIANT, "comma-separated LMM-VAE variants: olmm, slmm"),
    ("objective", str, defaults.DEMO_OBJECTIVE, "comma-separated training objectives: elbo, gsnn"),
    (
        "baselines",
        str,
        defaults.DEMO_BASELINES,
        "comma-separated baselines: vae, cvae (empty for none)",
    ),
    ("seed", int, defaults.DEMO_SEED, "seed"),
    ("data_seed", int, defaults.DEMO_DATA_SEED, "data seed"),
    ("device", str, defaults.DEMO_DEVICE, "device"),
]


def add_parser(verbs: argparse._SubParsersAction) -> None:
    """Add the ``demo`` verb to ``verbs``."""
    demo = verbs.add_parser(
        "demo",
        help="fit LMM-VAE variants and baselines on built-in synthetic data",
        formatter_class=DefaultsFormatter,
        description="Generate the synthetic dataset (spec §7), fit every --variant x --objective "
        "and the --baselines, and write metrics.json (every model) and effects.nc, "
        "fixed_effects.png and trajectories.png (the first model) to --out.",
    )
    demo.add_argument("--out", required=True, help="output folder")
    for name, kind, default, text in OPTIONS:
        demo.add_argument(
            f"--{name.replace('_', '-')}",
            type=optional(kind) if default is None else kind,
            default=default,
            help=text,
        )
    demo.add_argument("--no-progress", action="store_true", help="hide progress bars")
    demo.set_defaults(_run=run, _fields=[o[0] for o in OPTIONS], _error=demo.error)


def run(args: argparse.Namespace) -> int:
    """Run the demo (imports the library) and print every model's figures as JSON."""
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
