"""The model of a run and how it is fitted: :class:`~pyro_lmmvae.LMMVAE` arguments and fitters.

:func:`model_arguments` turns a :class:`~benchmarks.paper.plan.Run` into a formula and
:class:`~pyro_lmmvae.LMMVAE` keyword arguments (``baseline: linear LMM``: a linear decoder,
:func:`linear_decoder`), which :func:`fit_lmmvae` fits with ``[training]``. Other models are
fitted by their entry of :data:`MODEL_FITTERS` (the GP-prior VAE of
:mod:`benchmarks.paper.gp_vae`: :func:`fit_gp_vae`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from pyro_lmmvae import LMMVAE
from pyro_lmmvae.datasets import LongitudinalDataset
from pyro_lmmvae.gp import additive_gp, categorical, continuous, interaction

from .data import Splits
from .gp_vae import GPPriorVAE
from .plan import LINEAR_BASELINE, LMM_MODELS, Run

__all__ = [
    "CONVERGED_MAX_EPOCHS",
    "CONVERGED_PATIENCE",
    "MODEL_FITTERS",
    "ModelFitter",
    "fit_gp_vae",
    "fit_lmmvae",
    "gp_vae_settings",
    "linear_decoder",
    "model_arguments",
]

CONVERGED_MAX_EPOCHS, CONVERGED_PATIENCE = 1000, 20
"""Epoch cap and validation patience of ``[training] until_converged = true``."""


def _fill(template: str, n_basis: int) -> str:
    if "{M}" in template:
        if n_basis < 2 or n_basis % 2:
            raise ValueError(f"{template!r} needs an even n_basis = 2M >= 2, got {n_basis}")
        return template.replace("{M}", str(n_basis // 2))
    return template


def _without_intercept(random: str) -> str | None:
    """The random part without its ``1`` (the sLMM's ε_p takes the random intercept's place)."""
    terms = [t.strip() for t in random.split("+") if t.strip() not in ("1", "")]
    return " + ".join(["0"] + terms) if terms else None


def model_arguments(run: Run, config: dict, train: LongitudinalDataset) -> tuple[str, dict]:
    """The formula and the :class:`LMMVAE` keyword arguments of a run."""
    instance = train.instance_column
    common = {
        "latent_dim": run.latent_dim,
        "network": run.network,
        "instance": instance,
        "standardize": config.get("standardize", True),
        "noise_scale": config.get("noise_scale"),
        "seed": run.seed,
    }
    if run.model == "VAE":
        return "~ 0", common
    if run.model == "GP stand-in":
        gp = config["gp"]
        components = [_component(text, gp.get("period")) for text in gp["components"]]
        frequencies = run.n_basis // 2 if run.n_basis else gp.get("n_frequencies", 4)
        setup = additive_gp(
            components,
            train.data,
            instance=instance,
            n_frequencies=frequencies,
            kernel=gp.get("kernel", "se"),
            lengthscale=gp.get("lengthscale"),
        )
        return setup.formula, common | setup.model_kwargs()
    cov = config["covariates"][run.covariates]
    fixed = _fill(cov["fixed"], run.n_basis)
    if run.model == "CVAE":
        return f"~ {fixed} + C({instance})", common | {"variant": "cvae"}
    variant, objective = LMM_MODELS.get(run.model, ("olmm", "elbo"))  # the linear LMM: an oLMM
    random = _fill(cov.get("random", "1"), run.n_basis)
    if variant == "slmm" and objective == "elbo":
        random = _without_intercept(random)
    formula = f"~ {fixed}" + (f" + ({random} | {instance})" if random else "")
    kwargs = common | {"variant": variant, "objective": objective}
    if run.model == LINEAR_BASELINE:
        kwargs["decoder"] = linear_decoder(run.latent_dim, train.n_features, run.seed)
    return formula, kwargs


def linear_decoder(latent_dim: int, obs_dim: int, seed: int) -> nn.Module:
    """``g(z) = W z + b``, initialised from ``seed`` (the decoder of ``baseline: linear LMM``)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return nn.Linear(latent_dim, obs_dim)


def _component(text: str, period: float | None = None):
    """``"continuous:age"``, ``"categorical:sex"``, ``"interaction:id:age[:kind]"``."""
    kind, *columns = text.split(":")
    if kind == "continuous" and len(columns) == 1:
        return continuous(columns[0], period=period)
    if kind == "categorical" and len(columns) == 1:
        return categorical(columns[0])
    if kind == "interaction" and len(columns) in (2, 3):
        extra = {"kind": columns[2]} if len(columns) == 3 else {}
        return interaction(columns[0], columns[1], period=period, **extra)
    raise ValueError(f"bad GP component {text!r}: use continuous:t, categorical:c, interaction:a:t")


def fit_lmmvae(
    run: Run, config: dict, splits: Splits, device: str, progress: bool
) -> tuple[LMMVAE, int]:
    """Fit the :class:`LMMVAE` of a run (:func:`model_arguments`) with ``[training]``.

    Parameters
    ----------
    run : Run
    config : dict
        From :func:`~benchmarks.paper.config.load_config`.
    splits : Splits
        Fits on ``splits.train``, validates on ``splits.val``.
    device : str
    progress : bool

    Returns
    -------
    (LMMVAE, int)
        The fitted model and the number of epochs trained.
    """
    train, val = splits.train, splits.val
    formula, kwargs = model_arguments(run, config, train)
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    training = config["training"]
    model = LMMVAE(formula, train.data, train.y, train.mask, **kwargs)
    if training.get("until_converged", False):
        # fit()'s own defaults: learning rates, KL estimator, lazy updates, and training until
        # the validation objective stops improving (the convergence rule), best weights kept
        model.fit(
            batch_size=int(training.get("batch_size", 32)),
            validation=(val.data, val.y, val.mask),
            device=device,
            progress=progress,
            seed=run.seed,
        )
        return model, len(model.history.train_loss)
    model.fit(
        max_epochs=int(training["max_epochs"]),
        batch_size=int(training.get("batch_size", 32)),
        lr=float(training.get("lr", 1e-3)),
        lr_decay=float(training.get("lr_decay", 0.99)),
        local_lr=training.get("local_lr"),
        kl=training.get("kl", "auto"),
        sparse_updates=bool(training.get("sparse_updates", True)),
        validation=(val.data, val.y, val.mask),
        patience=training.get("patience"),
        device=device,
        progress=progress,
        seed=run.seed,
    )
    return model, len(model.history.train_loss)


def gp_vae_settings(config: dict, instance: str) -> dict:
    """The time column, covariates and inducing points of a benchmark configuration.

    ``[gp_vae] time = "...", covariates = [...], n_inducing = M`` where given; otherwise the
    time is the first ``continuous:`` column of ``[gp] components`` (``"t"`` without one) and the
    covariates are the other columns the components name, the instance column excepted.
    """
    own = dict(config.get("gp_vae", {}))
    columns: list[str] = []
    time = None
    for text in config.get("gp", {}).get("components", []):
        kind, *names = text.split(":")
        names = names[:2] if kind == "interaction" else names
        if kind == "continuous" and time is None:
            time = names[0]
        columns += [n for n in names if n not in columns and n != instance]
    time = own.get("time", time or "t")
    covariates = own.get("covariates", [c for c in columns if c != time])
    return {"time": time, "covariates": covariates, "n_inducing": int(own.get("n_inducing", 24))}


def fit_gp_vae(run, config: dict, splits, device: str, progress: bool) -> tuple[GPPriorVAE, int]:
    """The harness's model fitter (:data:`MODEL_FITTERS`).

    Builds a :class:`GPPriorVAE` on ``splits.train`` with the run's latent size, network and
    seed, the configuration's ``noise_scale`` and :func:`gp_vae_settings`, and trains it with
    ``[training]`` (``max_epochs``, ``batch_size`` instances, ``lr``, ``lr_decay``, ``patience``
    on ``splits.val``; ``until_converged``: at most :data:`CONVERGED_MAX_EPOCHS`, patience
    :data:`CONVERGED_PATIENCE` unless given) and ``[gp_vae] polish_steps``. Returns the model and
    its epochs.
    """
    train, val = splits.train, splits.val
    model = GPPriorVAE(
        train.data,
        train.y,
        train.mask,
        latent_dim=run.latent_dim,
        instance=train.instance_column,
        network=run.network,
        noise_scale=config.get("noise_scale"),
        seed=run.seed,
        **gp_vae_settings(config, train.instance_column),
    )
    training = config["training"]
    converged = bool(training.get("until_converged", False))  # LMMVAE.fit's cap and patience
    model.fit(
        max_epochs=CONVERGED_MAX_EPOCHS if converged else int(training["max_epochs"]),
        batch_size=int(training.get("batch_size", 32)),
        lr=float(training.get("lr", 1e-3)),
        lr_decay=float(training.get("lr_decay", 0.99)),
        validation=(val.data, val.y, val.mask),
        patience=training.get("patience", CONVERGED_PATIENCE if converged else None),
        polish_steps=config.get("gp_vae", {}).get("polish_steps"),
        seed=run.seed,
        device=device,
        progress=progress,
    )
    return model, len(model.history.train_loss)


ModelFitter = Callable[[Run, dict, Splits, str, bool], tuple[Any, int]]
"""``(run, config, splits, device, progress) → (fitted model, epochs)``, like :func:`fit_lmmvae`.

The model needs ``impute(y, mask, data, keep_observed=False)`` and ``predict(data)`` returning
``(n, D)`` arrays (:func:`~benchmarks.paper.evaluate.evaluate`), and ``latents(y, mask, data)``
for the MCC tasks (a model without it, or with ``pair.gsnn = True``, gets no MCC rows).
"""

#: Register another model here: name → fitter. A name listed here may appear in an experiment's
#: ``baselines = { NAME = "-" }`` (its covariate set is passed as ``run.covariates``); every other
#: model is fitted by :func:`fit_lmmvae`.
MODEL_FITTERS: dict[str, ModelFitter] = {"GP-prior VAE": fit_gp_vae}
