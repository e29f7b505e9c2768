"""The demo job: synthetic data with known effects → the chosen LMM-VAE variants and baselines.

Fits every requested variant × objective plus the baselines (a plain VAE and optionally a CVAE)
on the same split, and writes ``effects.nc`` and the figures of the first model, and
``metrics.json`` with the figures of every model, into an output folder (each file atomically).
"""

from __future__ import annotations

import json
import platform
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from pyro_lmmvae import arviz_compat, defaults, metrics, plots
from pyro_lmmvae.api import LMMVAE
from pyro_lmmvae.datasets import make_synthetic
from pyro_lmmvae.datasets.synthetic import FIXED_TERMS
from pyro_lmmvae.io import write_atomic, write_text_atomic
from pyro_lmmvae.models import OBJECTIVES

#: The latent prior of the synthetic data (spec §7), written as a formula.
SYNTHETIC_FORMULA = "~ 1 + t + g + c + g:t + sin_2pi_t + cos_2pi_t + (1 + t | id)"
#: The ELBO-trained sLMM-VAE's per-instance offset is its random intercept (inferred by the group
#: encoder), so its formula keeps the slope only; GSNN draws the offset from the prior and keeps
#: the random intercept (spec §3, §4).
SLMM_FORMULA = SYNTHETIC_FORMULA.replace("(1 + t | id)", "(0 + t | id)")
#: Covariates of the CVAE baseline: the fixed part of the synthetic formula.
CVAE_FORMULA = SYNTHETIC_FORMULA.replace(" + (1 + t | id)", "")
LMM_VARIANTS = ("olmm", "slmm")
BASELINES = ("vae", "cvae")


@dataclass(frozen=True)
class DemoConfig:
    """Settings of the demo: ``fit()``'s defaults (until convergence) unless ``max_epochs`` or
    ``lr`` are given.

    ``variant``, ``objective`` and ``baselines`` are comma-separated lists: the demo fits every
    variant × objective, then each baseline.
    """

    n_instances: int = defaults.DEMO_N_INSTANCES
    latent_dim: int = defaults.DEMO_LATENT_DIM
    max_epochs: int | None = None
    batch_size: int = defaults.DEMO_BATCH_SIZE
    lr: float | None = None
    variant: str = defaults.DEMO_VARIANT
    objective: str = defaults.DEMO_OBJECTIVE
    baselines: str = defaults.DEMO_BASELINES
    seed: int = defaults.DEMO_SEED
    data_seed: int = defaults.DEMO_DATA_SEED
    device: str = defaults.DEMO_DEVICE

    def runs(self) -> list[tuple[str, str, str]]:
        """``(name, variant, objective)`` of every model, in order; checks the lists."""
        variants, objectives = _split(self.variant), _split(self.objective)
        baselines = _split(self.baselines)
        for value, allowed, what in (
            (variants, LMM_VARIANTS, "variant"),
            (objectives, OBJECTIVES, "objective"),
            (baselines, BASELINES, "baseline"),
        ):
            unknown = [v for v in value if v not in allowed]
            if unknown:
                raise ValueError(f"unknown {what}(s) {unknown}; choose from {list(allowed)}")
        if not variants or not objectives:
            raise ValueError("the demo needs at least one variant and one objective")
        runs = [(f"{v}-{o}", v, o) for v in variants for o in objectives]
        return runs + [(b, "cvae" if b == "cvae" else "olmm", "elbo") for b in baselines]


def _split(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def truth_columns(terms) -> list[int]:
    """Columns of the synthetic truth's ``fixed_effects`` in the order of a design's ``terms``."""
    return [FIXED_TERMS.index(term) for term in terms]


def _formula(name: str, variant: str, objective: str) -> str:
    if name == "vae":
        return "~ 0"
    if variant == "slmm" and objective == "elbo":
        return SLMM_FORMULA
    return CVAE_FORMULA if variant == "cvae" else SYNTHETIC_FORMULA


def run_demo(out_dir: str | Path, config: DemoConfig = DemoConfig(), progress: bool = True) -> dict:
    """Fit the configured models on the synthetic dataset and write the outputs.

    Parameters
    ----------
    out_dir : str or Path
        Folder for the outputs (created if needed).
    config : DemoConfig
    progress : bool, default True
        Show progress bars.

    Returns
    -------
    dict
        The metrics written to ``metrics.json``: ``models`` maps each run's name (e.g.
        ``"olmm-elbo"``, ``"vae"``) to its figures; the first run's headline figures are also
        at the top level.
    """
    runs = config.runs()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ds = make_synthetic(n_instances=config.n_instances, latent_dim=4, seed=config.data_seed)
    train, val, test = ds.split("train"), ds.split("val"), ds.split("test")
    fit_args = dict(
        max_epochs=config.max_epochs,  # None: fit()'s default, until the objective converges
        batch_size=config.batch_size,
        validation=(val.data, val.y, val.mask),
        device=config.device,
        progress=progress,
        seed=config.seed,
    )
    common = dict(latent_dim=config.latent_dim, standardize=False, seed=config.seed, instance="id")
    # The synthetic covariates are already on unit scale and the true effects live in these raw
    # coordinates, so the design does not standardise them.
    if config.lr is not None:
        fit_args["lr"] = config.lr
    models: dict[str, LMMVAE] = {}
    results: dict[str, dict] = {}
    for index, (name, variant, objective) in enumerate(runs, start=1):
        started = time.perf_counter()
        fit_args["progress"] = (
            f"{_label(name, variant, objective)} {index}/{len(runs)}" if progress else False
        )
        model = LMMVAE(
            _formula(name, variant, objective),
            data=train.data,
            y=train.y,
            mask=train.mask,
            variant=variant,
            objective=objective,
            **common,
        )
        model.fit(**fit_args)
        seconds = time.perf_counter() - started
        models[name] = model
        results[name] = _model_metrics(model, ds, train, test) | {"fit_seconds": seconds}

    primary = runs[0][0]
    report = {
        "dataset": {
            "name": ds.name,
            "n_instances": ds.n_instances,
            "n_train": train.n_obs,
            "n_val": val.n_obs,
            "n_test": test.n_obs,
            "obs_dim": ds.n_features,
        },
        "config": config.__dict__,
        "primary": primary,
        "models": results,
        "machine": {
            "platform": platform.platform(),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
        },
    }
    # The first model's headline figures also sit at the top level, as the CLI documents.
    for key in HEADLINE:
        report[key] = results[primary].get(key)

    lmm = models[primary]
    idata = lmm.effects(num_draws=500, seed=config.seed)
    write_atomic(out / "effects.nc", lambda tmp: arviz_compat.to_netcdf(idata, tmp))
    write_text_atomic(out / "metrics.json", json.dumps(report, indent=2, default=float))
    baseline = next((models[n] for n, *_ in runs if n == "vae"), None)
    _figures(out, ds, lmm, baseline, idata)
    return report


HEADLINE = ("imputation_mse", "prediction_mse", "fixed_effects_rel_error", "random_effects_corr")


def _model_metrics(model: LMMVAE, ds, train, test) -> dict:
    """Imputation and prediction MSE, and effect recovery where the model has latents."""
    figures: dict = {
        "variant": model.variant,
        "objective": model.objective,
        "formula": model.design.formula,
        "imputation_mse": metrics.imputation_mse(
            model.impute(train.y, train.mask, train.data), train.y_true, train.mask
        ),
        # A VAE's prior carries no covariates: its conditional generation is g(0).
        "prediction_mse": metrics.prediction_mse(model.predict(test.data), test.y_true),
        "best_epoch": model.history.best_epoch,
        "best_val_loss": model.history.best_val_loss,
    }
    if model.objective == "gsnn" or model.variant == "cvae" or not model.design.n_fixed:
        return figures  # no posterior latents or no effect matrices to compare with the truth
    is_train = (ds.data["split"] == "train").to_numpy()
    estimates = model.pair.effect_estimates
    random_hat = None
    if model.design.random_terms == ("1", "t"):
        order = model.design.group_codes(ds.truth["instance_labels"])
        random_hat = estimates.random_loc.detach().cpu().numpy()[order]
    # the truth's columns in the design's order (the design lists main effects first, as R does)
    truth_fixed = ds.truth["fixed_effects"][:, truth_columns(model.design.fixed_terms)]
    recovery = metrics.effect_recovery(
        model.latents(train.y, train.mask, train.data),
        ds.truth["z"][is_train],
        estimates.fixed_loc.detach().cpu().numpy(),
        truth_fixed,
        random_hat,
        ds.truth["random_effects"] if random_hat is not None else None,
    )
    return figures | recovery


def _figures(out: Path, ds, lmm: LMMVAE, baseline: LMMVAE | None, idata) -> None:
    is_train = (ds.data["split"] == "train").to_numpy()
    train = ds.split("train")
    # Learned latent coordinates of the training rows, mapped to the true ones: posterior means,
    # or the prior means M x̄ for a GSNN (which has no posterior latents).
    coords = (
        lmm.prior_latents(train.data)
        if lmm.objective == "gsnn"
        else lmm.latents(train.y, train.mask, train.data)
    )
    t_map, offset, _ = metrics.align_latents(coords, ds.truth["z"][is_train])
    draws = idata.posterior["fixed_effects"].values[0]  # (S, L, Q)
    aligned = np.einsum("kl,slq->skq", t_map, draws)
    aligned[:, :, 0] += offset
    truth_fixed = ds.truth["fixed_effects"][:, truth_columns(lmm.design.fixed_terms)]
    plots.fixed_effects_forest(
        aligned, truth_fixed, list(lmm.design.fixed_terms), out / "fixed_effects.png"
    )
    test_ids = ds.data.loc[ds.data["split"] == "test", "id"].unique()[:3]
    rows = ds.data["id"].isin(test_ids).to_numpy()
    frame = ds.data[rows]
    plots.trajectories(
        time=frame["t"].to_numpy(),
        observed=ds.y[rows],
        observed_mask=ds.mask[rows],
        predicted=lmm.predict(frame),
        truth=ds.y_true[rows],
        is_test=(frame["split"] == "test").to_numpy(),
        instances=frame["id"].to_numpy(),
        path=out / "trajectories.png",
        baseline=baseline.predict(frame) if baseline is not None else None,
    )


def _label(name: str, variant: str, objective: str) -> str:
    """The progress-bar name of a run: ``oLMM-VAE (ELBO)``, ``VAE``, ``CVAE``."""
    if name in BASELINES:
        return name.upper()
    return f"{variant[0]}{variant[1:].upper()}-VAE ({objective.upper()})"
