"""``pyro-lmmvae predict`` and ``pyro-lmmvae impute``: a fitted model's predictions at new
covariates, and its imputation of missing entries.

The options' defaults are :mod:`pyro_lmmvae.defaults`, the ones ``LMMVAE.predict`` takes; torch
and the library are imported when a verb runs.
"""

from __future__ import annotations

import argparse

from pyro_lmmvae import defaults
from pyro_lmmvae.cli.common import (
    DefaultsFormatter,
    add_model_argument,
    library_errors,
    load_model,
)
from pyro_lmmvae.cli.readers import read_covariates, read_observations
from pyro_lmmvae.cli.writers import OUTPUT_EXTENSIONS, check_output, write_array


def add_predict_parser(verbs: argparse._SubParsersAction) -> None:
    """Add the ``predict`` verb to ``verbs``."""
    parser = verbs.add_parser(
        "predict",
        help="predict observations at new covariates with a fitted model",
        formatter_class=DefaultsFormatter,
        description="Conditional generation at the rows of --covariates (LMMVAE.predict): "
        "g(M_f x + E[u_p] w) for the oLMM-VAE and GSNN, the sLMM-VAE adds its instances' pooled "
        "offsets. Writes an (N, D) array to --out (.npy, or .csv by extension; atomic).",
    )
    add_model_argument(parser)
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
        default=defaults.UNSEEN,
        help="instances not seen in training: fail, use the prior mean of their random effects "
        "(the population curve), or adapt them to their --context-* rows",
    )
    context = parser.add_argument_group("context of unseen instances (--unseen context)")
    context.add_argument("--context-covariates", metavar="FILE", help="covariates of their rows")
    context.add_argument("--context-observations", metavar="FILE", help="their (n, D) observations")
    context.add_argument("--context-mask", metavar="FILE", help="their mask")
    context.add_argument(
        "--context-steps", type=int, default=defaults.CONTEXT_STEPS, help="Adam steps"
    )
    context.add_argument(
        "--context-lr", type=float, default=defaults.CONTEXT_LR, help="Adam learning rate"
    )
    context.add_argument("--seed", type=int, default=defaults.SEED, help="seed of the context fit")
    parser.set_defaults(_run=_run_predict)


def _run_predict(args: argparse.Namespace) -> int:
    """Read the covariates (and context), predict, write the (N, D) array."""
    out = check_output(args.out, "--out", OUTPUT_EXTENSIONS)
    context_files = args.context_covariates is not None or args.context_observations is not None
    if args.unseen == "context" and (
        args.context_covariates is None or args.context_observations is None
    ):
        raise ValueError("--unseen context needs --context-covariates and --context-observations")
    if context_files and args.unseen != "context":
        raise ValueError("--context-covariates/--context-observations need --unseen context")
    covariates = read_covariates(args.covariates)
    context = None
    if args.unseen == "context":
        ctx_data = read_covariates(args.context_covariates, "--context-covariates")
        try:
            ctx_y, ctx_mask = read_observations(
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
    model = load_model(args.model)
    with library_errors():
        pred = model.predict(
            covariates,
            unseen=args.unseen,
            context=context,
            context_steps=args.context_steps,
            context_lr=args.context_lr,
            seed=args.seed,
        )
    write_array(out, pred)
    print(f"predict: {pred.shape[0]} rows x {pred.shape[1]} features; wrote {out}")
    return 0


def add_impute_parser(verbs: argparse._SubParsersAction) -> None:
    """Add the ``impute`` verb to ``verbs``."""
    parser = verbs.add_parser(
        "impute",
        help="fill in missing entries with a fitted model",
        formatter_class=DefaultsFormatter,
        description="Impute the missing entries of the training rows (default) or of the rows "
        "in --observations (LMMVAE.impute): the decoder's reconstruction from the posterior "
        "latents (GSNN: from the covariates only). Writes an (N, D) array to --out (.npy, or "
        ".csv by extension; atomic). Models other than the oLMM-VAE need --covariates of the "
        "given rows.",
    )
    add_model_argument(parser)
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


def _run_impute(args: argparse.Namespace) -> int:
    """Read the rows to impute (or use the training rows), impute, write the (N, D) array."""
    out = check_output(args.out, "--out", OUTPUT_EXTENSIONS)
    if args.observations is None and (args.covariates is not None or args.mask is not None):
        raise ValueError("--covariates and --mask need --observations: the rows to impute")
    covariates = y = mask = None
    if args.observations is not None:
        if args.covariates is not None:
            covariates = read_covariates(args.covariates)
        y, mask = read_observations(
            args.observations,
            None if covariates is None else len(covariates),
            args.covariates,
            args.mask,
        )
    model = load_model(args.model)
    if y is not None and y.shape[1] != model.obs_dim:
        raise ValueError(
            f"--observations {args.observations} has {y.shape[1]} columns but the model "
            f"{args.model} was fitted to {model.obs_dim}"
        )
    with library_errors():
        imputed = model.impute(y, mask, covariates, keep_observed=args.keep_observed)
    write_array(out, imputed)
    rows = "training rows" if y is None else "rows"
    print(f"impute: {imputed.shape[0]} {rows} x {imputed.shape[1]} features; wrote {out}")
    return 0
