"""``pyro-lmmvae fit``: train an LMM-VAE on covariate and observation files and save it.

The options' defaults are :mod:`pyro_lmmvae.defaults`, the ones ``LMMVAE(...)`` and
``LMMVAE.fit`` take; torch and the library are imported when the verb runs.
"""

from __future__ import annotations

import argparse
import sys

from pyro_lmmvae import defaults
from pyro_lmmvae.cli.common import DefaultsFormatter, fraction_or_none, library_errors
from pyro_lmmvae.cli.readers import read_covariates, read_observations
from pyro_lmmvae.cli.writers import check_output


def add_parser(verbs: argparse._SubParsersAction) -> None:
    """Add the ``fit`` verb to ``verbs``."""
    parser = verbs.add_parser(
        "fit",
        help="train an LMM-VAE on covariate and observation files and save it",
        formatter_class=DefaultsFormatter,
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
    model.add_argument("--latent-dim", type=int, default=defaults.LATENT_DIM, help="L")
    model.add_argument(
        "--variant",
        choices=("olmm", "slmm", "cvae"),
        default=defaults.VARIANT,
        help="model variant",
    )
    model.add_argument(
        "--objective", choices=("elbo", "gsnn"), default=defaults.OBJECTIVE, help="objective"
    )
    model.add_argument(
        "--likelihood",
        choices=("gaussian", "bernoulli"),
        default=defaults.LIKELIHOOD,
        help="observation likelihood",
    )
    model.add_argument(
        "--noise-scale",
        type=float,
        default=None,
        help="fixed Gaussian noise sd (learned per feature if not given)",
    )
    model.add_argument(
        "--network",
        default=defaults.NETWORK,
        help="encoder/decoder: mlp, health_mnist, health_mnist_identifiability, rotating_mnist, "
        "physionet",
    )
    model.add_argument(
        "--instance",
        default=None,
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
        default=defaults.SEED,
        help="seed of initialisation, batching and Monte Carlo draws",
    )
    train = parser.add_argument_group("training (LMMVAE.fit arguments)")
    train.add_argument(
        "--epochs",
        type=int,
        default=None,
        help="number of epochs; None: until the objective stops improving, at most 1000",
    )
    train.add_argument(
        "--batch-size", type=int, default=defaults.BATCH_SIZE, help="instances per batch"
    )
    train.add_argument(
        "--lr", type=float, default=defaults.LR, help="Adam learning rate of the networks"
    )
    train.add_argument(
        "--effects-lr",
        type=float,
        default=defaults.EFFECTS_LR,
        help="Adam learning rate of the latent LMM (effects, variance components, sigma_z)",
    )
    train.add_argument(
        "--lr-decay", type=float, default=defaults.LR_DECAY, help="per-epoch learning-rate factor"
    )
    train.add_argument(
        "--local-lr",
        type=float,
        default=None,
        help="learning rate of the per-instance random effects (default: --effects-lr times "
        "the batches per epoch, at most 0.1)",
    )
    train.add_argument(
        "--validation",
        type=fraction_or_none,
        default=None,
        help="fraction of rows held out for early stopping, or 'none'",
    )
    train.add_argument(
        "--select",
        choices=("objective", "prediction_mse"),
        default=defaults.SELECT,
        help="validation score that picks the kept weights",
    )
    train.add_argument(
        "--patience",
        type=int,
        default=None,
        help="stop after this many epochs without improvement (never if not given)",
    )
    train.add_argument(
        "--kl",
        choices=("auto", "closed_form", "trace_mean_field"),
        default=defaults.KL,
        help="KL estimator of the ELBO",
    )
    train.add_argument("--device", default=defaults.DEVICE, help="torch device, e.g. cuda")
    train.add_argument(
        "--checkpoint",
        metavar="FILE",
        default=None,
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
        default=defaults.PROGRESS,
        help="show a progress bar",
    )
    parser.set_defaults(_run=_run_fit)


def _run_fit(args: argparse.Namespace) -> int:
    """Check the files, train, save; exit status 1 (one line) when the loss is not finite."""
    out = check_output(args.out, "--out")
    if args.resume and args.checkpoint is None:
        raise ValueError("--resume needs --checkpoint: the file to resume from")
    covariates = read_covariates(args.covariates)
    y, mask = read_observations(args.observations, len(covariates), args.covariates, args.mask)
    import torch

    from pyro_lmmvae import LMMVAE
    from pyro_lmmvae.training.loop import NonFiniteLossError

    try:
        device = torch.device(args.device)
    except RuntimeError as err:
        raise ValueError(f"--device {args.device}: {err}") from err
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {args.device}: torch.cuda.is_available() is False")
    with library_errors():
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
