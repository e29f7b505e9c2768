"""``pyro-lmmvae effects``: a fitted model's fixed and random effects as netCDF, a CSV summary
and a forest plot.

The options' defaults are :mod:`pyro_lmmvae.defaults`, the ones ``LMMVAE.effects`` takes; torch,
ArviZ, matplotlib and the library are imported when the verb runs.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from pyro_lmmvae import defaults
from pyro_lmmvae.cli.common import DefaultsFormatter, add_model_argument, load_model


def add_parser(verbs: argparse._SubParsersAction) -> None:
    """Add the ``effects`` verb to ``verbs``."""
    parser = verbs.add_parser(
        "effects",
        help="write a fitted model's fixed and random effects (netCDF, CSV summary, forest plot)",
        formatter_class=DefaultsFormatter,
        description="Draw the learned effects (LMMVAE.effects) and write, atomically, to "
        "--out-dir: effects.nc (the ArviZ InferenceData, a DataTree on ArviZ >= 1.0; "
        "pyro_lmmvae.arviz_compat.from_netcdf or az.from_netcdf reads it), summary.csv (the fixed "
        "and random effects: mean, sd and the 94% HDI as columns hdi_3%, hdi_97%, on every "
        "ArviZ version) and forest.png (the fixed effects: means, 94% and 50% HDIs). Point "
        "estimates (the sLMM default) give a single draw.",
    )
    add_model_argument(parser)
    parser.add_argument(
        "--out-dir",
        required=True,
        default=argparse.SUPPRESS,
        metavar="DIR",
        help="output folder (created if needed)",
    )
    parser.add_argument(
        "--draws", type=int, default=defaults.NUM_DRAWS, help="draws from the posterior"
    )
    parser.add_argument("--seed", type=int, default=defaults.SEED, help="seed of the draws")
    parser.set_defaults(_run=_run_effects)


def _run_effects(args: argparse.Namespace) -> int:
    """Draw the effects and write effects.nc, summary.csv and forest.png atomically."""
    if args.draws < 1:
        raise ValueError(f"--draws must be >= 1, got {args.draws}")
    out_dir = Path(args.out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"--out-dir {args.out_dir} is a file, not a folder")
    model = load_model(args.model)
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
