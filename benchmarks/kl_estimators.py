"""The two estimators of the oLMM-VAE ELBO compared: ``kl="trace_mean_field"`` vs ``"closed_form"``.

Both estimate the same objective (spec §2). ``trace_mean_field`` (Pyro's
:class:`~pyro.infer.TraceMeanField_ELBO`, :class:`~pyro_lmmvae.training.loss.ELBOLoss`) draws the
effects A once per step and takes KL(q(z_i) || N(A x̄_i, σ_z² I)) given the draw;
``closed_form`` (:class:`~pyro_lmmvae.training.loss.ClosedFormELBOLoss`) takes its expectation
over q(A) in closed form. Given the draw of z, the closed form is the conditional expectation of
the trace_mean_field estimate over A, so (law of total variance) its loss and gradients are never
noisier: Rao–Blackwellisation. This script measures by how much, and what it buys in training.

Parts (``--parts``):

``noise``
    At fixed parameters (the model at initialisation and after ``--warm-epochs`` epochs of
    training with ``--warm-kl``), each estimator is evaluated ``--repeats`` times on one fixed
    batch. Reported: mean, standard deviation and Monte Carlo standard error of the loss, whether
    the two means agree within 4 combined standard errors (they estimate the same quantity), and
    for each parameter group the total gradient variance (trace of the covariance), the mean
    per-coordinate variance and the squared norm of the mean gradient. Groups: ``encoder``,
    ``decoder`` (decoder and likelihood scale), ``fixed effects`` (``fixed_loc``, ``fixed_rho``),
    ``random effects`` (``random_loc``, ``random_rho``; only the batch's instances' rows, the
    others have zero gradient), and ``fixed_loc`` alone.
``training``
    Each estimator is fitted with the same seeds (``--seeds``; a seed fixes the initialisation,
    the held-out rows, the batch order and the Monte Carlo draws) for ``--epochs`` epochs with
    ``fit(validation=--validation)``; the validation objective (per row, lower is better,
    closed form, common random numbers) is recorded after every epoch.

    Target rule (symmetric in the estimators): per seed, each estimator's best validation
    objective up to epoch ``ceil(--target-fraction * epochs)`` is taken, and the target is the
    *worse* (larger) of the two. Both curves reach it within the budget by construction, neither
    estimator sets it alone, and the epochs to reach it (first epoch whose validation objective
    is at or below it) are compared. The same is reported for the target at 100% of the epochs.
    When one estimator's curve is below the other's throughout, the other one sets the target
    and needs exactly ``ceil(fraction * epochs)`` epochs by construction; the comparison is
    then how much earlier the better one gets there.
    Final (last epoch) and best validation objectives are given as mean ± std over seeds, and as
    the paired difference trace_mean_field − closed_form.
``timing``
    Per-step wall time of :func:`~pyro_lmmvae.training.loop.optimisation_step` with the fit's
    optimizer (:class:`~pyro_lmmvae.training.optim.FitOptimizer`, lazy sparse updates of the
    instance tables), the estimators interleaved in rounds to spread the noise of a shared
    machine.

Datasets (``--dataset``): ``synthetic`` (:func:`~pyro_lmmvae.datasets.make_synthetic`, formula
``~ 1 + t + g + (1 + t | id)``) and ``physionet`` (PhysioNet 2012 set A, the first
``--instances`` records, the paper network and the formula of
``benchmarks/paper/configs/physionet.toml`` with 2M = 8 basis functions).

Outputs under ``--out`` (written atomically), each named ``<stem>`` + ``_noise.csv``,
``_loss_agreement.csv``, ``_curves.csv``, ``_training.csv``, ``_step_time.csv``, ``_run.json``
and the markdown report ``<stem>.md``; ``<stem>`` is the dataset, or ``<dataset>_<tag>`` with
``--tag``.

Usage::

    flock /tmp/bench.lock python -m benchmarks.kl_estimators --dataset synthetic
    flock /tmp/bench.lock python -m benchmarks.kl_estimators --dataset physionet --instances 400
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyro
import torch

from benchmarks.machine import cpu_model
from pyro_lmmvae import LMMVAE
from pyro_lmmvae.io import write_atomic, write_text_atomic
from pyro_lmmvae.training.loop import optimisation_step
from pyro_lmmvae.training.optim import FitOptimizer, sparse_instance_gradients

ESTIMATORS = ("trace_mean_field", "closed_form")
GROUPS = ("encoder", "decoder", "fixed effects", "random effects", "fixed_loc")
DEFAULT_OUT = Path("benchmarks/results/kl_estimators")
PHYSIONET_FORMULA = (
    "~ 1 + t + fourier(t, 4) + age + gender + icu_type + death + death:t + (1 + t | id)"
)


# ---------------------------------------------------------------------------------- set-up
@dataclass
class Setup:
    """A dataset and the model and fit settings of one benchmark."""

    name: str
    formula: str
    data: pd.DataFrame
    y: np.ndarray
    mask: np.ndarray
    model_kwargs: dict
    fit_kwargs: dict
    description: str
    extra: dict = field(default_factory=dict)

    def estimator(self, seed: int) -> LMMVAE:
        """A fresh model initialised with ``seed``."""
        return LMMVAE(
            self.formula,
            data=self.data,
            y=self.y,
            mask=self.mask,
            seed=seed,
            **self.model_kwargs,
        )


def synthetic_setup(args: argparse.Namespace) -> Setup:
    """make_synthetic's training split, ``~ 1 + t + g + (1 + t | id)``, an MLP oLMM-VAE."""
    from pyro_lmmvae.datasets import make_synthetic

    n = args.instances or 300
    train = make_synthetic(n_instances=n, seed=args.data_seed).split("train")
    return Setup(
        name="synthetic",
        formula="~ 1 + t + g + (1 + t | id)",
        data=train.data,
        y=train.y,
        mask=train.mask,
        model_kwargs={"latent_dim": args.latent_dim or 4, "standardize": False},
        fit_kwargs={
            "batch_size": args.batch_size or 32,
            "lr": args.lr,
            "lr_decay": args.lr_decay,
            "local_lr": args.local_lr,
        },
        description=f"make_synthetic(n_instances={n}, seed={args.data_seed}).split('train')",
    )


def physionet_setup(args: argparse.Namespace) -> Setup:
    """PhysioNet 2012 set A (first ``--instances`` records), the paper network and formula."""
    from pyro_lmmvae.datasets import load_physionet

    n = args.instances or 400
    cache = Path(args.cache_dir) / f"physionet_a_{n}_seed{args.data_seed}.npz"
    ds = load_physionet(
        root=Path(args.data_root) / "physionet2012",
        patients=n,
        seed=args.data_seed,
        cache=cache,
    )
    train = ds.split("train")
    local_lr = args.local_lr if args.local_lr is not None else 1e-2  # configs/physionet.toml
    return Setup(
        name="physionet",
        formula=PHYSIONET_FORMULA,
        data=train.data,
        y=train.y,
        mask=train.mask,
        model_kwargs={
            "latent_dim": args.latent_dim or 8,
            "network": "physionet",
            "instance": "id",
            "standardize": ["t", "age"],
        },
        fit_kwargs={
            "batch_size": args.batch_size or 32,
            "lr": args.lr,
            "lr_decay": args.lr_decay,
            "local_lr": local_lr,
        },
        description=(
            f"load_physionet(patients={n}, seed={args.data_seed}).split('train'), "
            "network='physionet'"
        ),
    )


SETUPS = {"synthetic": synthetic_setup, "physionet": physionet_setup}


# ---------------------------------------------------------------------------------- noise
def parameter_group(name: str) -> str:
    """The group of a loss-module parameter name (see the module docstring)."""
    if name.endswith(("fixed_loc", "fixed_rho")) and "effects" in name:
        return "fixed effects"
    if name.endswith(("random_loc", "random_rho")) and "effects" in name:
        return "random effects"
    if ".encoder." in name:
        return "encoder"
    return "decoder"


class _Welford:
    """Running mean and sum of squared deviations of a flat vector, in float64."""

    def __init__(self) -> None:
        self.count = 0
        self.mean: torch.Tensor | None = None
        self.m2: torch.Tensor | None = None

    def add(self, value: torch.Tensor) -> None:
        value = value.detach().to(torch.float64).reshape(-1)
        self.count += 1
        if self.mean is None:
            self.mean = value.clone()
            self.m2 = torch.zeros_like(value)
            return
        delta = value - self.mean
        self.mean += delta / self.count
        self.m2 += delta * (value - self.mean)

    def variance(self) -> torch.Tensor:
        return self.m2 / (self.count - 1)


def estimator_noise(
    est: LMMVAE, kl: str, batch, repeats: int, seed: int
) -> tuple[np.ndarray, dict[str, dict]]:
    """Evaluate one estimator ``repeats`` times on ``batch`` at the model's current parameters.

    Returns
    -------
    losses : numpy.ndarray
        The ``repeats`` loss values (negative ELBO of the batch scaled to the whole data set).
    groups : dict
        Per group: ``n_coords``, ``total_var`` (trace of the gradient covariance),
        ``mean_coord_var`` and ``mean_grad_sq`` (squared norm of the mean gradient).
    """
    module = est.loss_module(kl=kl)
    named = [(n, p) for n, p in module.named_parameters() if p.requires_grad]
    rows = batch.instances.long()
    stats = {name: _Welford() for name, _ in named}
    losses = np.empty(repeats)
    with pyro.validation_enabled(False):
        for r in range(repeats):
            torch.manual_seed(seed + r)
            for _, p in named:
                p.grad = None
            value = module(batch)
            value.backward()
            losses[r] = float(value.detach())
            for name, p in named:
                grad = p.grad if p.grad is not None else torch.zeros_like(p)
                if grad.is_sparse:
                    grad = grad.to_dense()
                if parameter_group(name) == "random effects":
                    grad = grad[rows]  # only the batch's instances have a gradient
                stats[name].add(grad)
    for _, p in named:
        p.grad = None
    groups = {g: {"n_coords": 0, "total_var": 0.0, "mean_grad_sq": 0.0} for g in GROUPS}
    for name, _ in named:
        s = stats[name]
        keys = [parameter_group(name)] + (["fixed_loc"] if name.endswith("fixed_loc") else [])
        for key in keys:
            groups[key]["n_coords"] += int(s.mean.numel())
            groups[key]["total_var"] += float(s.variance().sum())
            groups[key]["mean_grad_sq"] += float(s.mean.square().sum())
    for values in groups.values():
        values["mean_coord_var"] = values["total_var"] / max(values["n_coords"], 1)
    return losses, groups


def noise_part(setup: Setup, args: argparse.Namespace, log) -> tuple[list[dict], list[dict]]:
    """Loss and gradient noise of both estimators at initialisation and after warm-up."""
    est = setup.estimator(args.noise_seed)
    batch = next(iter(est.batches(setup.fit_kwargs["batch_size"], seed=args.noise_seed)))
    noise_rows, agreement_rows = [], []
    states = [("init", 0)] + ([("trained", args.warm_epochs)] if args.warm_epochs > 0 else [])
    for state, epochs in states:
        if epochs:
            begin = time.perf_counter()
            est.fit(
                max_epochs=epochs,
                kl=args.warm_kl,
                validation=None,
                seed=args.noise_seed,
                progress=False,
                **setup.fit_kwargs,
            )
            log(
                f"  warm-up: {epochs} epochs ({args.warm_kl}) in {time.perf_counter() - begin:.1f}s"
            )
        summary = {}
        for index, kl in enumerate(ESTIMATORS):
            begin = time.perf_counter()
            # Distinct seed blocks: the two estimators' draws are independent.
            losses, groups = estimator_noise(
                est, kl, batch, args.repeats, seed=10_000_000 * (index + 1) + 1000 * args.noise_seed
            )
            seconds = time.perf_counter() - begin
            summary[kl] = losses
            log(
                f"  {state} {kl}: loss {losses.mean():.6g} ± {losses.std(ddof=1):.3g} "
                f"({args.repeats} evaluations, {seconds:.1f}s)"
            )
            for group, values in groups.items():
                noise_rows.append(
                    {
                        "dataset": setup.name,
                        "state": state,
                        "estimator": kl,
                        "group": group,
                        **values,
                        "relative_var": values["total_var"] / values["mean_grad_sq"]
                        if values["mean_grad_sq"] > 0
                        else float("nan"),
                        "loss_mean": float(losses.mean()),
                        "loss_std": float(losses.std(ddof=1)),
                        "repeats": args.repeats,
                        "batch_rows": batch.n_rows,
                        "batch_instances": len(batch.instances),
                    }
                )
        a, b = summary["trace_mean_field"], summary["closed_form"]
        se_a, se_b = a.std(ddof=1) / math.sqrt(len(a)), b.std(ddof=1) / math.sqrt(len(b))
        combined = math.sqrt(se_a**2 + se_b**2)
        diff = float(a.mean() - b.mean())
        z = diff / combined if combined > 0 else (0.0 if diff == 0 else math.inf)
        agreement_rows.append(
            {
                "dataset": setup.name,
                "state": state,
                "tmf_mean": float(a.mean()),
                "tmf_se": float(se_a),
                "cf_mean": float(b.mean()),
                "cf_se": float(se_b),
                "difference": diff,
                "combined_se": combined,
                "z": z,
                "agree_4se": bool(abs(z) <= 4.0),
                "repeats": args.repeats,
            }
        )
    return noise_rows, agreement_rows


# ---------------------------------------------------------------------------------- training
def training_part(
    setup: Setup, args: argparse.Namespace, log
) -> tuple[list[dict], list[dict], int]:
    """Validation curves of both estimators for each seed."""
    curves, fits = [], []
    steps_per_epoch = 0
    for s, seed in enumerate(range(args.seeds)):
        order = ESTIMATORS if s % 2 == 0 else ESTIMATORS[::-1]  # balance drift of the machine
        for kl in order:
            est = setup.estimator(seed)
            # Steps per epoch: ceil(P / B), P the instances of the training rows (the held-out
            # fraction is of rows, so every instance keeps training rows in practice).
            steps_per_epoch = len(est.batches(setup.fit_kwargs["batch_size"]))
            begin = time.perf_counter()
            est.fit(
                max_epochs=args.epochs,
                kl=kl,
                validation=args.validation,
                seed=seed,
                progress=False,
                **setup.fit_kwargs,
            )
            seconds = time.perf_counter() - begin
            history = est.history
            for epoch, (train_loss, val) in enumerate(
                zip(history.train_loss, history.val_loss, strict=True), start=1
            ):
                curves.append(
                    {
                        "dataset": setup.name,
                        "seed": seed,
                        "estimator": kl,
                        "epoch": epoch,
                        "step": epoch * steps_per_epoch,
                        "train_loss": train_loss,
                        "val_objective": val,
                    }
                )
            fits.append(
                {
                    "seed": seed,
                    "estimator": kl,
                    "fit_seconds": seconds,
                    "epochs": len(history.val_loss),
                    "steps_per_epoch": steps_per_epoch,
                }
            )
            log(
                f"  seed {seed} {kl}: val {history.val_loss[0]:.4f} -> {history.val_loss[-1]:.4f}"
                f" (best {history.best_val_loss:.4f} at epoch {history.best_epoch + 1}), "
                f"{seconds:.1f}s"
            )
    return curves, fits, steps_per_epoch


def first_reaching(values: np.ndarray, target: float) -> int | None:
    """1-based epoch of the first value at or below ``target`` (None if never)."""
    hits = np.flatnonzero(values <= target)
    return int(hits[0]) + 1 if hits.size else None


def training_summary(
    curves: pd.DataFrame, fits: pd.DataFrame, fraction: float, name: str
) -> list[dict]:
    """Per seed and estimator: targets, epochs/steps/seconds to reach them, final and best."""
    rows = []
    for seed, per_seed in curves.groupby("seed"):
        series = {
            kl: per_seed[per_seed.estimator == kl].sort_values("epoch")["val_objective"].to_numpy()
            for kl in ESTIMATORS
        }
        epochs = min(len(v) for v in series.values())
        cut = max(1, math.ceil(fraction * epochs))
        targets = {
            f"{round(100 * fraction)}%": max(float(v[:cut].min()) for v in series.values()),
            "100%": max(float(v[:epochs].min()) for v in series.values()),
        }
        for kl, values in series.items():
            fit = fits[(fits.seed == seed) & (fits.estimator == kl)].iloc[0]
            per_epoch = fit.fit_seconds / fit.epochs
            row = {
                "dataset": name,
                "seed": seed,
                "estimator": kl,
                "final_val": float(values[-1]),
                "best_val": float(values.min()),
                "fit_seconds": float(fit.fit_seconds),
                "seconds_per_epoch": float(per_epoch),
                "steps_per_epoch": int(fit.steps_per_epoch),
            }
            for label, target in targets.items():
                hit = first_reaching(values, target)
                row[f"target_{label}"] = target
                row[f"epochs_to_{label}"] = hit
                row[f"steps_to_{label}"] = None if hit is None else hit * int(fit.steps_per_epoch)
                row[f"seconds_to_{label}"] = None if hit is None else hit * per_epoch
            rows.append(row)
    return rows


# ---------------------------------------------------------------------------------- timing
def timing_part(setup: Setup, args: argparse.Namespace, log) -> list[dict]:
    """Per-step wall time of the fit's optimisation step, estimators interleaved in rounds."""
    fk = setup.fit_kwargs
    runs = {}
    for kl in ESTIMATORS:
        est = setup.estimator(args.noise_seed)
        loss = est.loss_module(kl=kl)
        optimizer = FitOptimizer(loss, fk["lr"], fk["lr_decay"], fk["local_lr"], sparse=True)
        batches = list(est.batches(fk["batch_size"], seed=args.noise_seed))
        runs[kl] = (loss, optimizer, batches)
    rows = []
    rounds = max(1, args.timing_rounds)
    per_round = max(1, args.timing_steps // rounds)
    with pyro.validation_enabled(False):
        for r in range(rounds + 1):  # round 0 is a warm-up, not recorded
            order = ESTIMATORS if r % 2 == 0 else ESTIMATORS[::-1]
            for kl in order:
                loss, optimizer, batches = runs[kl]
                with sparse_instance_gradients(loss):
                    for i in range(per_round if r else 3):
                        batch = batches[i % len(batches)]
                        begin = time.perf_counter()
                        optimisation_step(loss, optimizer, batch)
                        seconds = time.perf_counter() - begin
                        if r:
                            rows.append(
                                {
                                    "dataset": setup.name,
                                    "estimator": kl,
                                    "round": r,
                                    "rows": batch.n_rows,
                                    "seconds": seconds,
                                }
                            )
    frame = pd.DataFrame(rows)
    for kl in ESTIMATORS:
        ms = 1e3 * frame[frame.estimator == kl].seconds
        log(f"  {kl}: median {ms.median():.2f} ms/step, mean {ms.mean():.2f} ms ({len(ms)} steps)")
    return rows


# ---------------------------------------------------------------------------------- report
def machine() -> dict:
    """CPU model, cores, threads and library versions."""
    return {
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "pyro": pyro.__version__,
        "platform": platform.platform(),
    }


def _fmt(value, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def _table(frame: pd.DataFrame, digits: int = 4) -> str:
    header = "| " + " | ".join(map(str, frame.columns)) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    body = [
        "| " + " | ".join(_fmt(v, digits) for v in row) + " |"
        for row in frame.itertuples(index=False)
    ]
    return "\n".join([header, rule, *body])


def _mean_std(values: pd.Series, digits: int = 4) -> str:
    values = values.dropna().astype(float)
    if values.empty:
        return "–"
    if len(values) == 1:
        return f"{values.iloc[0]:.{digits}g}"
    return f"{values.mean():.{digits}g} ± {values.std(ddof=1):.{digits - 2}g}"


def noise_tables(noise: pd.DataFrame, agreement: pd.DataFrame) -> str:
    """Markdown of the noise part."""
    parts = []
    loss = (
        noise[noise.group == "encoder"][["state", "estimator", "loss_mean", "loss_std", "repeats"]]
        .rename(columns={"loss_mean": "mean loss", "loss_std": "std of loss"})
        .reset_index(drop=True)
    )
    parts += ["Loss at fixed parameters, one fixed batch:", "", _table(loss, 6), ""]
    agree = agreement[["state", "tmf_mean", "cf_mean", "difference", "combined_se", "z"]].copy()
    agree["within 4 SE"] = agreement["agree_4se"].map({True: "yes", False: "NO"})
    parts += ["Agreement of the mean losses (z = difference / combined MC SE):", ""]
    parts += [_table(agree, 6), ""]
    rows = []
    for (state, group), sub in noise.groupby(["state", "group"], sort=False):
        tmf = sub[sub.estimator == "trace_mean_field"].iloc[0]
        cf = sub[sub.estimator == "closed_form"].iloc[0]
        ratio = tmf.total_var / cf.total_var if cf.total_var > 0 else float("inf")
        rows.append(
            {
                "state": state,
                "group": group,
                "coords": int(tmf.n_coords),
                "tr Cov TMF": tmf.total_var,
                "tr Cov CF": cf.total_var,
                "TMF / CF": ratio,
                "per-coord var TMF": tmf.mean_coord_var,
                "per-coord var CF": cf.mean_coord_var,
                "‖mean grad‖²": tmf.mean_grad_sq,
                "tr Cov / ‖mean‖² TMF": tmf.relative_var,
                "tr Cov / ‖mean‖² CF": cf.relative_var,
            }
        )
    parts += [
        "Gradient variance (tr Cov = sum of per-coordinate variances; random effects: the "
        "batch's instances only):",
        "",
        _table(pd.DataFrame(rows), 3),
        "",
    ]
    return "\n".join(parts)


def training_tables(summary: pd.DataFrame, frac: str) -> str:
    """Markdown of the training part."""
    parts = []
    rows = []
    for kl in ESTIMATORS:
        sub = summary[summary.estimator == kl]
        rows.append(
            {
                "estimator": kl,
                "final val": _mean_std(sub.final_val),
                "best val": _mean_std(sub.best_val),
                f"epochs to {frac} target": _mean_std(sub[f"epochs_to_{frac}"], 3),
                f"steps to {frac} target": _mean_std(sub[f"steps_to_{frac}"], 3),
                f"seconds to {frac} target": _mean_std(sub[f"seconds_to_{frac}"], 3),
                "epochs to 100% target": _mean_std(sub["epochs_to_100%"], 3),
                "fit s / epoch": _mean_std(sub.seconds_per_epoch, 3),
            }
        )
    parts += ["Mean ± std over seeds:", "", _table(pd.DataFrame(rows)), ""]
    paired = summary.pivot(index="seed", columns="estimator")
    diff_rows = []
    for column in ("final_val", "best_val", f"epochs_to_{frac}", "epochs_to_100%"):
        d = paired[column]["trace_mean_field"].astype(float) - paired[column]["closed_form"].astype(
            float
        )
        diff_rows.append({"quantity": column, "TMF − CF per seed": _mean_std(d, 3)})
    parts += ["Paired differences (same seed):", "", _table(pd.DataFrame(diff_rows)), ""]
    per_seed = summary[
        [
            "seed",
            "estimator",
            f"target_{frac}",
            f"epochs_to_{frac}",
            "target_100%",
            "epochs_to_100%",
            "final_val",
            "best_val",
        ]
    ]
    parts += ["Per seed:", "", _table(per_seed.reset_index(drop=True), 6), ""]
    return "\n".join(parts)


def timing_table(timing: pd.DataFrame) -> str:
    """Markdown of the timing part."""
    rows = []
    for kl in ESTIMATORS:
        ms = 1e3 * timing[timing.estimator == kl].seconds
        rows.append(
            {
                "estimator": kl,
                "median ms / step": float(ms.median()),
                "mean ms / step": float(ms.mean()),
                "p90 ms / step": float(ms.quantile(0.9)),
                "steps": len(ms),
            }
        )
    cf, tmf = rows[1]["median ms / step"], rows[0]["median ms / step"]
    return _table(pd.DataFrame(rows)) + f"\n\nMedian TMF / CF: {tmf / cf:.2f}×\n"


def write_csv(path: Path, rows: list[dict] | pd.DataFrame) -> None:
    frame = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(rows)
    write_atomic(path, lambda tmp: frame.to_csv(tmp, index=False))


def command_line() -> str:
    argv = list(sys.argv)
    if argv and argv[0].endswith("kl_estimators.py"):
        argv[0] = "python -m benchmarks.kl_estimators"
    return " ".join(argv)


# ---------------------------------------------------------------------------------- main
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.kl_estimators",
        description=(
            "Compare kl='trace_mean_field' and kl='closed_form' for the oLMM-VAE ELBO: "
            "loss/gradient noise at fixed parameters, epochs and wall time to a validation "
            "target, per-step cost."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--dataset", choices=sorted(SETUPS), default="synthetic")
    parser.add_argument(
        "--parts", default="noise,training,timing", help="comma list of noise,training,timing"
    )
    parser.add_argument(
        "--instances",
        type=int,
        default=None,
        help="synthetic: n_instances (300); physionet: records read (400)",
    )
    parser.add_argument("--latent-dim", type=int, default=None, help="4 synthetic, 8 physionet")
    parser.add_argument("--batch-size", type=int, default=None, help="32")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--lr-decay", type=float, default=0.99)
    parser.add_argument(
        "--local-lr", type=float, default=None, help="None (= lr) synthetic, 1e-2 physionet"
    )
    parser.add_argument("--data-seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=200, help="evaluations per estimator")
    parser.add_argument("--warm-epochs", type=int, default=20, help="training before 'trained'")
    parser.add_argument("--warm-kl", choices=ESTIMATORS, default="trace_mean_field")
    parser.add_argument("--noise-seed", type=int, default=0)
    parser.add_argument("--seeds", type=int, default=3, help="training seeds 0..seeds-1")
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--validation", type=float, default=0.2, help="held-out row fraction")
    parser.add_argument("--target-fraction", type=float, default=0.75)
    parser.add_argument("--timing-steps", type=int, default=200, help="timed steps per estimator")
    parser.add_argument("--timing-rounds", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1, help="torch.set_num_threads")
    parser.add_argument("--data-root", default="/work/shared/data")
    parser.add_argument("--cache-dir", default="/tmp/kl_estimators_cache")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument(
        "--tag", default="", help="output name suffix: <dataset>_<tag>.md etc. (several configs)"
    )
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    unknown = sorted(set(parts) - {"noise", "training", "timing"})
    if unknown:
        parser.error(f"unknown parts: {unknown}")
    args.parts = parts
    if not 0.0 < args.target_fraction <= 1.0:
        parser.error("--target-fraction must be in (0, 1]")
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)

    def log(message: str) -> None:
        if not args.quiet:
            print(message, flush=True)

    started = time.perf_counter()
    setup = SETUPS[args.dataset](args)
    probe = setup.estimator(0)
    if not probe.pair.closed_form_applies:
        raise SystemExit(f"kl='closed_form' does not apply to the {args.dataset} model")
    n_instances = probe.batches(1).n_instances
    log(
        f"{setup.name}: {len(setup.data)} rows, {n_instances} instances, D={setup.y.shape[1]}, "
        f"formula {setup.formula!r}"
    )
    out = Path(args.out)
    stem = f"{args.dataset}_{args.tag}" if args.tag else args.dataset
    prefix = out / stem
    results: dict = {}
    sections = []
    frac = f"{round(100 * args.target_fraction)}%"
    if "noise" in args.parts:
        log("noise at fixed parameters")
        noise_rows, agreement_rows = noise_part(setup, args, log)
        noise, agreement = pd.DataFrame(noise_rows), pd.DataFrame(agreement_rows)
        write_csv(Path(f"{prefix}_noise.csv"), noise)
        write_csv(Path(f"{prefix}_loss_agreement.csv"), agreement)
        results["noise"], results["agreement"] = noise, agreement
        sections += [
            "## Loss and gradient noise at fixed parameters",
            "",
            f"{args.repeats} evaluations of each estimator on one fixed batch (seed "
            f"{args.noise_seed}), at initialisation and after {args.warm_epochs} epochs with "
            f"kl={args.warm_kl!r}.",
            "",
            noise_tables(noise, agreement),
        ]
    timing = None
    if "timing" in args.parts:
        log("per-step wall time")
        timing = pd.DataFrame(timing_part(setup, args, log))
        write_csv(Path(f"{prefix}_step_time.csv"), timing)
        results["timing"] = timing
    if "training" in args.parts:
        log("training curves")
        curve_rows, fit_rows, _ = training_part(setup, args, log)
        curves, fits = pd.DataFrame(curve_rows), pd.DataFrame(fit_rows)
        summary = pd.DataFrame(training_summary(curves, fits, args.target_fraction, setup.name))
        write_csv(Path(f"{prefix}_curves.csv"), curves)
        write_csv(Path(f"{prefix}_training.csv"), summary)
        results["curves"], results["training"] = curves, summary
        sections += [
            "## Epochs and wall time to a validation target",
            "",
            f"{args.seeds} seeds × {args.epochs} epochs per estimator, validation objective "
            f"(per row, lower is better) on a held-out {args.validation:g} of the rows after "
            f"every epoch. Target rule: per seed, the worse of the two estimators' best "
            f"validation objectives within the first {frac} of the epochs (symmetric, both "
            "reach it); also the worse of the two best values over all epochs (100%).",
            "",
            training_tables(summary, frac),
        ]
    if timing is not None:
        sections += [
            "## Per-step wall time",
            "",
            f"`optimisation_step` with `FitOptimizer` (sparse instance tables), batches of "
            f"{setup.fit_kwargs['batch_size']} instances, {args.timing_rounds} interleaved rounds "
            "after a warm-up round; torch threads as above.",
            "",
            timing_table(timing),
        ]
    info = {
        "command": command_line(),
        "machine": machine(),
        "dataset": setup.description,
        "formula": setup.formula,
        "model_kwargs": setup.model_kwargs,
        "fit_kwargs": setup.fit_kwargs,
        "rows": len(setup.data),
        "instances": n_instances,
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "seconds": round(time.perf_counter() - started, 1),
    }
    write_text_atomic(Path(f"{prefix}_run.json"), json.dumps(info, indent=2) + "\n")
    m = info["machine"]
    header = [
        f"# KL estimators: trace_mean_field vs closed_form ({stem})",
        "",
        f"- Command: `{info['command']}`",
        f"- Machine: {m['cpu']}, {m['cpu_count']} logical CPUs, torch threads "
        f"{m['torch_threads']}; Python {m['python']}, torch {m['torch']}, pyro {m['pyro']}",
        f"- Data: {setup.description}: {info['rows']} rows, {n_instances} instances, "
        f"D = {setup.y.shape[1]}",
        f"- Model: `{setup.formula}`, {setup.model_kwargs}; fit {setup.fit_kwargs}",
        f"- Total run time: {info['seconds']} s",
        "",
    ]
    write_text_atomic(Path(f"{prefix}.md"), "\n".join(header + sections) + "\n")
    log(f"wrote {prefix}.md ({info['seconds']} s)")
    results["info"] = info
    return results


if __name__ == "__main__":
    main()
