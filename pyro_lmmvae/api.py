"""The user-facing estimator: formula + DataFrame in, trained LMM-VAE and ArviZ effects out."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import pyro.distributions as dist
import torch
import xarray as xr
from torch import nn

from pyro_lmmvae import arviz_compat, fitting, inspection, legacy, metrics, persistence
from pyro_lmmvae.data import Batch, InstanceBatcher, LongitudinalTensors
from pyro_lmmvae.design import Design, DesignMatrices, UnseenPolicy
from pyro_lmmvae.effects import effects_inference_data
from pyro_lmmvae.fitting import MAX_LOCAL_LR  # noqa: F401 (documented here: fit's local_lr)
from pyro_lmmvae.models import Likelihood
from pyro_lmmvae.priors import EffectPrior
from pyro_lmmvae.training.loop import TrainingHistory
from pyro_lmmvae.validation import (
    check_likelihood_support,
    check_unit_scale,
    validate_observations,
)
from pyro_lmmvae.variants import VARIANTS, Objective, Variant, VariantOptions, build_pair

PriorSpec = EffectPrior | dist.TorchDistribution | str | None
IDENTITY_NOISE = 0.01
"""Fixed likelihood noise of ``network="identity"``: z is y up to this; sigma_z the residual."""
Selection = Literal["objective", "prediction_mse"]
PredictUnseen = Literal["error", "prior", "context"]
KLEstimator = Literal["auto", "closed_form", "trace_mean_field"]

__all__ = ["LMMVAE", "VARIANTS"]


class LMMVAE:
    """A variational autoencoder whose latent prior is a linear mixed model.

    Parameters
    ----------
    formula : str
        One-sided lme4-style formula of the latent prior, e.g.
        ``"~ 1 + age + sex + sex:age + (1 + age | id)"``; ``"~ 0"`` is a plain VAE.
    data : pandas.DataFrame
        Covariates, one row per observation.
    y : array-like, (N, D)
        Observations (flatten images first). NaN marks a missing entry if ``mask`` is omitted.
    mask : array-like of bool, (N, D), optional
        True where observed. Unobserved entries never enter the likelihood.
    latent_dim : int, default 16
        L.
    variant : {"olmm", "slmm", "cvae"}, default "olmm"
        ``"olmm"``: one latent per observation, amortized encoder, mean-field q(A).
        ``"slmm"``: one latent offset per instance shared by its rows, inferred by pooling the
        encoder outputs of the instance; A a point estimate by default.
        ``"cvae"``: the conditional-VAE baseline, prior N(0, sigma_z^2 I) and the fixed-effect
        columns of the formula appended to the encoder and decoder inputs.
    objective : {"elbo", "gsnn"}, default "elbo"
        ``"gsnn"`` sets q(z | y, x) to the prior p(z | x): training then matches conditional
        generation, but the model has no encoder, so it gives no posterior latents, no
        imputation from a row's observed entries and no MCC (those calls raise).
    instance : str, optional
        Instance column, if the formula has no random effects (see :class:`Design`).
    encoder, decoder : torch.nn.Module, optional
        Any networks: the encoder maps (n, D) (plus D with ``mask_channel``, plus Q_f for the
        CVAE) to (n, 2L) or a tuple (mu, log sigma^2); the decoder maps (n, L) (plus Q_f for the
        CVAE) to (n, D). They replace the networks named by ``network``.
        ``decoder="identity"`` is ``network="identity"``.
    network : str, default "mlp"
        The named encoder/decoder architecture (spec §8; see
        :func:`pyro_lmmvae.architectures.build_networks`): ``"mlp"``, ``"health_mnist"``,
        ``"health_mnist_identifiability"``, ``"rotating_mnist"``, ``"physionet"``, or
        ``"identity"``: ``g(z) = z`` (needs ``latent_dim = D``) and a linear encoder, which makes
        the model a linear-Gaussian mixed model, ``y = A_f x + u_p w + noise`` per feature, to be
        held against lme4 (z-score y and the covariates; see the user guide).
    likelihood : {"gaussian", "bernoulli"} or Likelihood, default "gaussian"
        Gaussian with learned per-feature noise unless ``noise_scale`` fixes it (with
        ``network="identity"`` it is fixed at 0.01 by default, so that sigma_z is the LMM's
        residual scale).
    noise_scale : float, optional
        Fixed Gaussian noise standard deviation (e.g. 0.1 for images in [0, 1]).
    latent_scale : float, default 1.0
        sigma_z, the prior standard deviation of the latent noise (its initial value when
        learned).
    learn_latent_scale : bool, default True
        Learn sigma_z as a point estimate (the LMM's residual scale in the latent space).
    fixed_prior, random_prior : pyro distribution, EffectPrior or "learned_scale", optional
        Priors on the entries of A_f and u_p; Normal(0, 1) by default. Bayesian effects only.
    bayesian_effects : bool, optional
        Mean-field q(A) with priors, or point estimates of A without a prior term. Defaults to
        True for ``"olmm"`` and False for ``"slmm"`` (spec §2, §3).
    pooling : {"precision", "mean"}, default "precision"
        sLMM: pool the rows of an instance by precision weighting or by averaging.
    include_prior_precision : bool, default False
        sLMM: add sigma_z^-2 to the pooled precision.
    local_reparam : bool, default False
        GSNN-oLMM: draw z from its marginal under q(A) (lower-variance gradients).
    effects_guide : {"mean_field", "structured"}, default "mean_field"
        Variational family of Bayesian effects. ``"mean_field"``: independent q(A_f) q(u_p).
        ``"structured"``: full-rank q(A_f) and q(u_p | A_f) linear in A_f, the form of the exact
        posterior of a linear-Gaussian LMM; its fixed-effect sds match lme4's standard errors
        where mean-field ones are several times too small (see the guide, "Effect
        uncertainty"). It costs k(k + Q_f) more numbers per instance and latent dimension.
    instance_intercept : bool, optional
        Add ``(1 | instance)`` to a formula without random terms. Defaults to True for
        ``objective="gsnn"`` (without an encoder, instance identity can enter only through
        u_p; spec §4) and False otherwise.
    standardize : bool or sequence of str, default True
        Z-score the design columns computed from continuous covariates (``age``,
        ``np.log(t + 1)``, ``sex[m]:age``) with their training mean and sd, after the formula is
        evaluated: formula functions and bases see raw values (see :class:`Design`).
    mask_channel : bool, default False
        Give the encoder the mask as extra input features.
    seed : int, default 0
        Seed of the network and parameter initialisation.

    Examples
    --------
    >>> from pyro_lmmvae import LMMVAE
    >>> from pyro_lmmvae.datasets import make_synthetic
    >>> ds = make_synthetic(n_instances=20, seed=0).split("train")
    >>> m = LMMVAE("~ 1 + t + g + (1 + t | id)", data=ds.data, y=ds.y, mask=ds.mask,
    ...            latent_dim=4, standardize=False)
    >>> _ = m.fit(max_epochs=2, batch_size=8, validation=None, progress=False)
    >>> m.effects(num_draws=10).posterior["fixed_effects"].dims
    ('chain', 'draw', 'latent', 'term')
    """

    def __init__(
        self,
        formula: str,
        data: pd.DataFrame,
        y: np.ndarray,
        mask: np.ndarray | None = None,
        *,
        latent_dim: int = 16,
        variant: Variant = "olmm",
        objective: Objective = "elbo",
        instance: str | None = None,
        encoder: nn.Module | None = None,
        decoder: nn.Module | None = None,
        network: str = "mlp",
        likelihood: str | Likelihood = "gaussian",
        noise_scale: float | None = None,
        latent_scale: float = 1.0,
        learn_latent_scale: bool = True,
        fixed_prior: PriorSpec = None,
        random_prior: PriorSpec = None,
        bayesian_effects: bool | None = None,
        pooling: str = "precision",
        include_prior_precision: bool = False,
        local_reparam: bool = False,
        effects_guide: str = "mean_field",
        instance_intercept: bool | None = None,
        standardize: bool | Sequence[str] = True,
        mask_channel: bool = False,
        seed: int = 0,
        _design_scaling: str = "columns",
    ) -> None:
        self._design_scaling = _design_scaling  # "inputs": a model saved by 0.2 (see Design)
        if isinstance(decoder, str):
            if decoder != "identity" or encoder is not None:
                raise ValueError(
                    f"decoder={decoder!r}: a name here can only be 'identity' (without encoder=); "
                    "pass other named networks as network="
                )
            network, decoder = "identity", None
        if network == "identity" and noise_scale is None and likelihood == "gaussian":
            noise_scale = IDENTITY_NOISE
            check_unit_scale(y, mask)
        if not isinstance(latent_dim, int) or latent_dim < 1:
            raise ValueError(f"latent_dim must be a positive integer, got {latent_dim!r}")
        self.options = VariantOptions(
            variant=variant,
            objective=objective,
            bayesian_effects=(variant != "slmm") if bayesian_effects is None else bayesian_effects,
            pooling=pooling,
            include_prior_precision=include_prior_precision,
            local_reparam=local_reparam,
            effects_guide=effects_guide,
        )
        self.latent_dim = latent_dim
        self.design = self._design(formula, data, instance, standardize, instance_intercept)
        self._y, self._mask = validate_observations(y, mask, n_rows=len(data))
        check_likelihood_support(likelihood, self._y, self._mask)
        self._data = data.reset_index(drop=True)
        self.obs_dim = self._y.shape[1]
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.pair = build_pair(
                self.design,
                self.obs_dim,
                latent_dim,
                self.options,
                encoder=encoder,
                decoder=decoder,
                likelihood=likelihood,
                noise_scale=noise_scale,
                latent_scale=latent_scale,
                learn_latent_scale=learn_latent_scale,
                fixed_prior=fixed_prior,
                random_prior=random_prior,
                mask_channel=mask_channel,
                network=network,
            )
        self.history = TrainingHistory()
        self.device = torch.device("cpu")
        self._attach_hyperparameter_guide()
        # what save() records to rebuild this estimator (priors and likelihood are read from the
        # live model at save time, so swapping them after construction is saved too)
        self._constructor = {
            "formula": formula,
            "latent_dim": latent_dim,
            "variant": variant,
            "objective": objective,
            "instance": instance,
            "network": network,
            "encoder": None if encoder is None else {"custom": type(encoder).__name__},
            "decoder": None if decoder is None else {"custom": type(decoder).__name__},
            "latent_scale": float(latent_scale),
            "bayesian_effects": self.options.bayesian_effects,
            "pooling": pooling,
            "include_prior_precision": include_prior_precision,
            "local_reparam": local_reparam,
            "effects_guide": effects_guide,
            "instance_intercept": instance_intercept,
            "standardize": standardize if isinstance(standardize, bool) else list(standardize),
            "mask_channel": mask_channel,
            "seed": seed,
        }

    def _attach_hyperparameter_guide(self) -> None:
        """q for the hyper-parameter sites of hierarchical priors (see VariationalPair).

        The effects are traced on the rows of a few instances (not the whole data set).
        """
        if getattr(self.pair.guide, "effects", None) is None:  # point effects: no priors
            return
        if self.design.instance is None:
            rows = np.arange(min(8, len(self._data)))
        else:
            labels = self._data[self.design.instance]
            rows = np.flatnonzero(labels.isin(pd.unique(labels)[:8]).to_numpy())
        prototype = self._row_subset(rows, self.device).full_batch()
        with torch.random.fork_rng(devices=[]):
            self.pair.attach_hyperparameter_guide(prototype)

    def _design(self, formula, data, instance, standardize, instance_intercept) -> Design:
        scaling = self._design_scaling
        design = Design(formula, data, instance=instance, standardize=standardize, scaling=scaling)
        wanted = (
            self.options.objective == "gsnn" and self.options.variant != "cvae"
            if instance_intercept is None
            else instance_intercept
        )
        if not wanted or design.n_random:
            return design
        if design.instance is None:
            if instance_intercept:
                raise ValueError(
                    "instance_intercept=True needs the instance column: pass instance="
                )
            return design
        with_intercept = f"{design.formula} + (1 | {design.instance})"
        return Design(
            with_intercept, data, instance=instance, standardize=standardize, scaling=scaling
        )

    @property
    def variant(self) -> str:
        """``"olmm"``, ``"slmm"`` or ``"cvae"``."""
        return self.options.variant

    @property
    def objective(self) -> str:
        """``"elbo"`` or ``"gsnn"``."""
        return self.options.objective

    # ------------------------------------------------------------------ components
    @property
    def model(self) -> nn.Module:
        """The Pyro model: a callable taking a :class:`~pyro_lmmvae.data.Batch`."""
        return self.pair.model

    @property
    def guide(self) -> nn.Module:
        """The Pyro guide: a callable taking a :class:`~pyro_lmmvae.data.Batch`."""
        return self.pair.guide

    def loss_module(self, num_particles: int = 1, kl: KLEstimator = "auto") -> nn.Module:
        """The training loss (negative ELBO or GSNN objective) as a torch module.

        Use it in custom loops, Lightning or DDP; with ``num_particles > 1`` it averages several
        Monte Carlo samples per estimate (``kl="trace_mean_field"``). See :meth:`fit` for
        ``kl``.
        """
        return self.pair.loss_module(num_particles, kl=self._kl_estimator(kl, num_particles))

    def _kl_estimator(self, kl: KLEstimator, num_particles: int = 1) -> str:
        """Resolve ``kl="auto"``: the closed form wherever it applies (see :meth:`fit`)."""
        if kl != "auto":
            return kl
        closed = self.pair.closed_form_applies and num_particles == 1
        return "closed_form" if closed else "trace_mean_field"

    def tensors(
        self,
        data: pd.DataFrame | None = None,
        y: np.ndarray | None = None,
        mask: np.ndarray | None = None,
        *,
        unseen: UnseenPolicy = "error",
    ) -> LongitudinalTensors:
        """Encode rows (the training rows by default) as tensors on the model's device."""
        if data is None:
            data = self._data
            if y is None:
                y, mask = self._y, self._mask
        elif y is None:  # covariates only (prediction): no observations to validate
            y = np.zeros((len(data), self.obs_dim), dtype=np.float32)
            mask = np.ones_like(y, dtype=bool)
        return LongitudinalTensors.from_frame(
            self.design, data, y, mask, device=self.device, unseen=unseen
        )

    def batches(self, batch_size: int = 32, seed: int = 0) -> InstanceBatcher:
        """Batches of whole training instances, e.g. to drive ``pyro.infer.SVI`` by hand."""
        generator = torch.Generator().manual_seed(seed)
        return InstanceBatcher(self.tensors(), batch_size, generator)

    # ------------------------------------------------------------------ training
    def fit(
        self,
        max_epochs: int | None = None,
        batch_size: int = 32,
        *,
        lr: float = 1e-3,
        effects_lr: float = 1e-2,
        lr_decay: float = 1.0,
        local_lr: float | None = None,
        validation: float | tuple | None = None,
        select: Selection = "objective",
        patience: int | None = None,
        clip_norm: float | None = None,
        device: str | torch.device = "cpu",
        progress: bool | str = True,
        seed: int = 0,
        kl: KLEstimator = "auto",
        sparse_updates: bool = True,
        checkpoint: str | Path | None = None,
        resume: bool = False,
        threads: int | None = None,
    ) -> LMMVAE:
        """Train by stochastic variational inference (ELBO or GSNN objective, see ``kl``).

        Parameters
        ----------
        max_epochs : int, optional
            Number of epochs. By default training runs until the objective stops improving
            (the validation objective when ``validation`` is given, the training objective
            otherwise; the rule is :class:`~pyro_lmmvae.training.convergence.Convergence`),
            at most :data:`~pyro_lmmvae.training.loop.EPOCH_CAP` epochs; ``history.stop_reason``
            says which, and a :class:`~pyro_lmmvae.training.loop.ConvergenceWarning` is given
            when the cap came first.
        batch_size : int, default 32
            Instances per batch; each batch holds all training rows of its instances.
        lr : float, default 1e-3
            Adam learning rate of the encoder and decoder networks.
        effects_lr : float, default 1e-2
            Adam learning rate of the latent LMM's shared parameters (fixed effects, variance
            components and other prior hyper-parameters, sigma_z) and the likelihood noise: a
            few numbers of order one, which must travel that far.
        lr_decay : float, default 1.0
            Per-epoch factor on every learning rate (1: constant, no cap on how far a
            parameter can move).
        local_lr : float, optional
            Learning rate of the per-instance random-effect parameters. Each instance is in one
            batch per epoch, so they get one Adam step per epoch; by default ``local_lr`` is
            ``effects_lr`` times the number of batches per epoch (at most
            :data:`MAX_LOCAL_LR`), so that they move per epoch as far as the shared effects.
        validation : float, tuple or None, default None
            A fraction of rows held out at random (seeded), or ``(data, y, mask)`` of
            validation rows of the training instances, or None (train on every row). The
            weights with the best validation score (see ``select``) are kept.
        select : {"objective", "prediction_mse"}, default "objective"
            Score of the validation rows: the variant's own objective per row (negative ELBO;
            the sLMM pools each instance's validation rows; GSNN its own objective), or the
            mean squared error of predicting them from their covariates (observed entries).
        patience : int, optional
            Early stopping after this many epochs without improvement.
        clip_norm : float, optional
            Gradient-norm clipping.
        device : str or torch.device, default "cpu"
            ``"cuda"`` trains on the GPU; data are moved there once.
        progress : bool or str, default True
            Show a progress bar; a string labels it (e.g. ``"oLMM-VAE 1/2"``).
        seed : int, default 0
            Seed of batching and Monte Carlo draws; the caller's global RNG state is restored.
        kl : {"auto", "closed_form", "trace_mean_field"}, default "auto"
            How the ELBO's KL terms are estimated. ``"trace_mean_field"``: Pyro's
            :class:`~pyro.infer.TraceMeanField_ELBO`, analytic KLs given one draw of A per
            step. ``"closed_form"`` (oLMM ELBO only): the expectation over q(A) of the latent
            KL in closed form (spec §2), no draw of A, lower-variance gradients
            (:class:`~pyro_lmmvae.training.loss.ClosedFormELBOLoss`). ``"auto"`` takes the
            closed form wherever it applies (oLMM and CVAE ELBO with priors that sample no
            hyper-parameters) and Pyro's estimator elsewhere; BENCHMARKS.md has the
            measurements behind this default.
        sparse_updates : bool, default True
            Step the per-instance random-effect tables with lazy (sparse) Adam, so that a
            step costs O(batch) whatever the number of instances; ``False`` uses one dense
            Adam over every parameter (every row moves on every step, with momentum).
        checkpoint : str or Path, optional
            Write a checkpoint here after every epoch (atomically): model, guide, optimizer,
            scheduler, random states, history and the estimator itself (design, options,
            data), so :meth:`load` also reads it. A failed step never touches it.
        resume : bool, default False
            Continue from ``checkpoint`` if that file exists (otherwise start afresh): the fit
            then reproduces the uninterrupted run exactly, up to ``max_epochs`` epochs in all.
            The other arguments must be those of the interrupted fit.
        threads : int, optional
            Intra-op CPU threads of torch during the fit (restored afterwards). By default one
            thread for small networks (MLPs, the identity network: a second thread only waits
            on the first, and on a shared CPU it waits much longer), and torch's own setting for
            convolutional or large (at least a million parameters) networks
            (:func:`~pyro_lmmvae.fitting.choose_threads`).

        Returns
        -------
        LMMVAE
            ``self``, fitted.

        Raises
        ------
        NonFiniteLossError
            When the loss becomes NaN or infinite; the message names the epoch, the step and
            the non-finite parameters and sample sites, and the last checkpoint written.
        """
        fitting.fit(
            self,
            max_epochs=max_epochs,
            batch_size=batch_size,
            lr=lr,
            effects_lr=effects_lr,
            lr_decay=lr_decay,
            local_lr=local_lr,
            validation=validation,
            select=select,
            patience=patience,
            clip_norm=clip_norm,
            device=device,
            progress=progress,
            seed=seed,
            kl=kl,
            sparse_updates=sparse_updates,
            checkpoint=checkpoint,
            resume=resume,
            threads=threads,
        )
        return self

    def _row_subset(self, rows: np.ndarray, device: torch.device) -> LongitudinalTensors:
        data = self._data.iloc[rows]
        return LongitudinalTensors.from_frame(
            self.design, data, self._y[rows], self._mask[rows], device=device
        )

    def to(self, device: str | torch.device) -> LMMVAE:
        """Move the model and guide to ``device``."""
        self.device = torch.device(device)
        self.pair.to(self.device)
        return self

    def fit_lightning(
        self,
        max_epochs: int | None = None,
        batch_size: int = 32,
        *,
        accelerator: str = "auto",
        devices: int | str | list[int] = 1,
        strategy: str | object = "auto",
        **kwargs,
    ) -> LMMVAE:
        """Train with a PyTorch Lightning trainer, e.g. data-parallel (DDP) on several devices.

        Needs the ``lightning`` extra (``pip install "pyro_lmmvae[lightning]"``). The same
        objective, optimizer groups, convergence rule, validation, early stopping and
        best-weights selection as :meth:`fit`; what differs: no checkpoints or resume (use
        Lightning's ``ModelCheckpoint``), and the instance tables get dense gradients. See
        :mod:`pyro_lmmvae.training.lightning`.

        Parameters
        ----------
        max_epochs : int, optional
            By default until the objective converges (at most 1,000 epochs), as in :meth:`fit`.
        batch_size : int, default 32
            Instances per batch *per process*: under DDP with W processes a step uses
            ``W * batch_size`` instances, and its averaged gradient equals the one-process
            gradient with that global batch.
        accelerator : str, default "auto"
            Lightning accelerator (``"cpu"``, ``"gpu"``, ``"auto"``).
        devices : int, str or list of int, default 1
        strategy : str or lightning Strategy, default "auto"
            E.g. ``"ddp"``: Lightning then runs the calling script again for each further
            process, so call it from a script, not from an interactive session.
        **kwargs
            Passed to :func:`~pyro_lmmvae.training.lightning.fit_lightning`: ``lr``,
            ``lr_decay``, ``local_lr``, ``validation``, ``select``, ``patience`` (as in
            :meth:`fit`), ``seed`` (instance order and Monte Carlo draws),
            ``num_nodes``, ``kl`` (as in :meth:`loss_module`), ``progress`` (default False),
            ``optimizer``, and any :class:`lightning.Trainer` argument (``callbacks``,
            ``logger``, ``precision``, ...).

        Returns
        -------
        LMMVAE
            ``self``, fitted; :attr:`history` holds the per-epoch training loss per row.
        """
        from pyro_lmmvae.training.lightning import fit_lightning  # imports lightning

        fit_lightning(
            self,
            max_epochs=max_epochs,
            batch_size=batch_size,
            accelerator=accelerator,
            devices=devices,
            strategy=strategy,
            **kwargs,
        )
        return self

    # ------------------------------------------------------------------ outputs
    def _observation_tensors(self, y, mask, data) -> LongitudinalTensors:
        """Rows to encode: the training rows, or given observations (with covariates)."""
        if y is None:
            if data is not None:
                raise ValueError("data= was given without y=: pass the observations of its rows")
            return self.tensors()
        y, mask = validate_observations(y, mask)
        if y.shape[1] != self.obs_dim:
            raise ValueError(f"y has {y.shape[1]} features; the model was built for {self.obs_dim}")
        if data is not None:
            return self.tensors(data, y, mask, unseen="prior")
        if self.pair.gsnn or self.variant != "olmm":
            raise ValueError(
                f"the {self.variant} model ({self.objective}) needs the covariates of these rows: "
                "pass data= with one row per row of y"
            )
        # The oLMM encoder needs no covariates: encode the rows on their own.
        design_rows = np.zeros((len(y), 0), np.float32)
        matrices = DesignMatrices(design_rows, design_rows, np.full(len(y), -1, np.int64))
        return LongitudinalTensors(matrices, y, mask, np.arange(len(y)), self.device)

    @torch.no_grad()
    def latents(
        self,
        y: np.ndarray | None = None,
        mask: np.ndarray | None = None,
        data: pd.DataFrame | None = None,
    ) -> np.ndarray:
        """Posterior means of the latents, (N, L).

        ``mu_phi(m ⊙ y)`` for the oLMM-VAE (and the VAE/CVAE); ``eta_i + m_p`` for the sLMM-VAE,
        pooling each instance over the given rows (the training rows by default).

        Parameters
        ----------
        y, mask : array-like, optional
            Observations and mask (the training ones by default).
        data : pandas.DataFrame, optional
            Covariates of the rows of ``y``: needed by the sLMM-VAE and the CVAE.

        Raises
        ------
        GSNNUnavailableError
            For GSNN-trained models, which have no posterior over the latents.
        """
        self.pair._require_encoder("posterior latents")
        tensors = self._observation_tensors(y, mask, data)
        return self.pair.latent_mean(tensors.full_batch()).cpu().numpy()

    @torch.no_grad()
    def prior_latents(self, data: pd.DataFrame, *, unseen: UnseenPolicy = "error") -> np.ndarray:
        """The latent prior mean at covariates, ``M_f x + E[u_p] w``, (N, L).

        The trajectory the mixed model implies for each row (before the decoder); available for
        every variant and objective, GSNN included. Instances not seen in training raise, or get
        the prior mean of their random effects with ``unseen="prior"``.
        """
        batch = self.tensors(data, unseen=unseen).full_batch()
        return self.pair.prior_latent_mean(batch).cpu().numpy()

    def mcc(self, true_latents: np.ndarray, **rows) -> float:
        """Mean correlation coefficient between the posterior latents and known true latents.

        Parameters
        ----------
        true_latents : array-like, (N, L_true)
        **rows
            ``y``, ``mask``, ``data`` as in :meth:`latents` (the training rows by default).

        Raises
        ------
        GSNNUnavailableError
            For GSNN-trained models (no posterior latents).
        """
        self.pair._require_encoder("MCC")
        return metrics.mcc(self.latents(**rows), true_latents)

    @torch.no_grad()
    def impute(
        self,
        y: np.ndarray | None = None,
        mask: np.ndarray | None = None,
        data: pd.DataFrame | None = None,
        *,
        keep_observed: bool = True,
    ) -> np.ndarray:
        """Fill the missing entries of observations (spec §5).

        oLMM/VAE: ``g(mu_phi(m ⊙ y))``; CVAE: ``g(mu_phi(m ⊙ y, x), x)``; sLMM: ``g(eta_i + m_p)``
        with ``m_p`` pooled over the instance's given rows; GSNN: only the covariate fill-in
        ``g(M x̄_i)``, which ignores the row's observed entries (a GSNN has no encoder).

        Parameters
        ----------
        y, mask : array-like, optional
            Observations and mask (the training ones by default).
        data : pandas.DataFrame, optional
            Covariates of the rows of ``y`` (needed except by the oLMM-VAE and the VAE).
            Instances not seen in training get the prior mean of their random effects.
        keep_observed : bool, default True
            Keep observed entries as given; otherwise return the full reconstruction.

        Returns
        -------
        numpy.ndarray, (N, D)
        """
        tensors = self._observation_tensors(y, mask, data)
        batch = tensors.full_batch()
        recon = self.pair.impute(batch)
        if keep_observed:
            recon = torch.where(batch.mask, batch.y, recon)
        return recon.cpu().numpy()

    def predict(
        self,
        data: pd.DataFrame,
        *,
        unseen: PredictUnseen = "error",
        context: tuple | None = None,
        context_steps: int = 200,
        context_lr: float = 1e-2,
        seed: int = 0,
    ) -> np.ndarray:
        """Conditional generation at new covariates (spec §5).

        ``g(M_f x* + E[u_p] w*)`` for the oLMM-VAE and GSNN; ``g(A_f x* + u_p w* + m_p)`` for
        the sLMM-VAE, with ``m_p`` pooled over the instance's training rows; ``g(0, x*)`` for the
        CVAE; ``g(0)`` (the prior mean) for a plain VAE.

        Parameters
        ----------
        data : pandas.DataFrame
            Covariates of the rows to predict, with the instance column when the formula has
            random effects or the model is an sLMM-VAE.
        unseen : {"error", "prior", "context"}, default "error"
            An instance not seen in training raises; gets the prior mean of its random effects
            and offset (``"prior"``: the population curve); or (``"context"``) is adapted to its
            rows in ``context``: the sLMM-VAE runs its group encoder on them, every other model
            fits only that instance's random effects on its own objective, everything else
            frozen (``context_steps`` Adam steps at ``context_lr``).
        context : tuple, optional
            ``(data, y)`` or ``(data, y, mask)``: observed rows of the unseen instances, for
            ``unseen="context"``. Unseen instances without context rows get the prior mean.
        context_steps, context_lr : int, float
            Optimisation of the context fit.
        seed : int, default 0
            Seed of the context fit's Monte Carlo draws.

        Returns
        -------
        numpy.ndarray, (N, D)
        """
        if unseen not in ("error", "prior", "context"):
            raise ValueError(f"unseen must be 'error', 'prior' or 'context', got {unseen!r}")
        if (unseen == "context") != (context is not None):
            raise ValueError("pass context=(data, y[, mask]) exactly when unseen='context'")
        tensors = self.tensors(data, unseen="error" if unseen == "error" else "prior")
        batch = tensors.full_batch()
        with torch.no_grad():
            offsets = self._row_offsets(self._offset_table(), batch)
            pred = self.pair.predict(batch, offsets)
        if unseen == "context":
            rows, new_pred = self._predict_context(data, context, context_steps, context_lr, seed)
            pred[torch.as_tensor(rows, device=pred.device)] = new_pred
        return pred.cpu().numpy()

    def _offset_table(self, tensors: LongitudinalTensors | None = None) -> torch.Tensor:
        """``m_p`` of every training instance, (P, L); zeros for models without offsets.

        ``tensors`` are the rows to pool (all training rows by default, encoded only if needed).
        """
        table = torch.zeros(self.design.n_groups, self.latent_dim, device=self.device)
        if self.variant == "slmm" and not self.pair.gsnn:
            for batch in (tensors if tensors is not None else self.tensors()).chunks():
                seen = batch.instances >= 0
                table[batch.instances[seen]] = self.pair.instance_offsets(batch)[seen]
        return table

    @staticmethod
    def _row_offsets(table: torch.Tensor, batch: Batch) -> torch.Tensor:
        groups = batch.instances[batch.local]
        return table[groups.clamp(min=0)] * (groups >= 0)[:, None]

    def _predict_context(self, data, context, steps, lr, seed):
        """Adapt new instances to their context rows; predictions for their rows in ``data``."""
        if self.design.instance is None:
            raise ValueError("unseen='context' needs the instance column: pass instance=")
        labels = pd.Series(data[self.design.instance]).reset_index(drop=True)
        if not isinstance(context, tuple) or len(context) not in (2, 3):
            raise TypeError("context must be a (data, y) or (data, y, mask) tuple")
        ctx_data, ctx_y, *rest = context
        try:
            ctx_y, ctx_mask = validate_observations(ctx_y, rest[0] if rest else None, len(ctx_data))
        except ValueError as err:
            raise ValueError(f"context: {err}") from err
        if ctx_y.shape[1] != self.obs_dim:
            raise ValueError(
                f"context: y has {ctx_y.shape[1]} features; the model was built for "
                f"{self.obs_dim} (one column per observed feature, flattened)"
            )
        ctx_labels = pd.Series(ctx_data[self.design.instance]).reset_index(drop=True)
        seen = ctx_labels.isin(self.design.groups)
        if seen.any():
            raise ValueError(
                f"context rows of instance(s) {sorted(map(str, ctx_labels[seen].unique()))[:5]} "
                "seen in training: context is for unseen instances (seen ones use their fit)"
            )
        new_labels = pd.Index(pd.unique(ctx_labels))
        ctx_matrices = self.design.transform(ctx_data, unseen="prior")
        ctx = LongitudinalTensors(
            ctx_matrices, ctx_y, ctx_mask, new_labels.get_indexer(ctx_labels), self.device
        )
        target_codes = new_labels.get_indexer(labels)
        rows = np.flatnonzero(target_codes >= 0)
        new_pair = self.pair.with_instances(len(new_labels))
        cuda = [self.device.index or 0] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=cuda):
            torch.manual_seed(seed)
            offsets = new_pair.adapt(ctx.full_batch(), steps=steps, lr=lr)
        target_matrices = self.design.transform(data.iloc[rows], unseen="prior")
        n = len(rows)
        target = LongitudinalTensors(
            target_matrices,
            np.zeros((n, self.obs_dim), np.float32),
            np.ones((n, self.obs_dim), bool),
            target_codes[rows],
            self.device,
        ).full_batch()
        with torch.no_grad():
            pred = new_pair.predict(target, self._row_offsets(offsets.detach(), target))
        return rows, pred

    def effects(
        self, num_draws: int = 500, seed: int = 0, groups: Sequence | None = None
    ) -> arviz_compat.DataContainer:
        """The learned fixed and random effects for ArviZ: an :class:`arviz.InferenceData` on
        ArviZ 0.x, an :class:`xarray.DataTree` on ArviZ >= 1.0 (see
        :mod:`pyro_lmmvae.arviz_compat`).

        Draws from q(A) for Bayesian effects; a single draw holding the estimate for point
        estimates (the sLMM default). See :func:`pyro_lmmvae.effects.effects_inference_data`
        for dims and coords.
        """
        return effects_inference_data(
            self.design,
            self.pair.effect_estimates,
            self.model.effects,
            num_draws=num_draws,
            seed=seed,
            groups=groups,
            attrs={
                "variant": self.variant,
                "objective": self.objective,
                "latent_dim": self.latent_dim,
            },
        )

    def prior_kernel(
        self, term: str, t, t_prime=None, *, effect: str | None = None, latent: int | None = None
    ) -> np.ndarray:
        """The prior covariance ``φ(t)ᵀ Λ φ(t')`` that one basis term implies.

        Parameters
        ----------
        term : str
            A formula term holding a basis, e.g. ``"fourier(age, 4)"``.
        t, t_prime : array_like
            Raw covariate values, (n,) and (n',); ``t_prime`` defaults to ``t``.
        effect : {"fixed", "random"}, optional
            Effect matrix of a term that is both fixed and random (the fixed one by default).
        latent : int, optional
            Latent dimension, needed only if the prior differs between them.

        Returns
        -------
        numpy.ndarray, (n, n')
            See :func:`pyro_lmmvae.inspection.prior_kernel` for details and errors.
        """
        return inspection.prior_kernel(self, term, t, t_prime, effect=effect, latent=latent)

    def latent_trajectories(
        self, grid: pd.DataFrame, *, num_draws: int = 20, seed: int = 0
    ) -> xr.Dataset:
        """Prior and posterior trajectories of ``eta = A_f x + u_p w`` over a grid's rows.

        Parameters
        ----------
        grid : pandas.DataFrame
            Covariates of the points, optionally with the instance column (seen instances use
            their random effects; unseen or missing ones give the population curve).
        num_draws : int, default 20
            Draws from the posterior and from the prior.
        seed : int, default 0
            Seed of the draws (the global RNG state is left unchanged).

        Returns
        -------
        xarray.Dataset
            See :func:`pyro_lmmvae.inspection.latent_trajectories` for variables and coords.
        """
        return inspection.latent_trajectories(self, grid, num_draws=num_draws, seed=seed)

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | Path) -> Path:
        """Write the fitted estimator to ``path`` atomically.

        The file holds plain values, tensors and state dicts (no pickled objects; see
        :mod:`pyro_lmmvae.persistence`): the constructor arguments, the training rows, the
        design's encodings, the weights and the history. A custom encoder, decoder, likelihood
        or prior is recorded by class name and must be passed again to :meth:`load`.
        """
        return persistence.write_model_file(path, persistence.estimator_payload(self))

    @classmethod
    def load(
        cls,
        path: str | Path,
        device: str | torch.device = "cpu",
        *,
        encoder: nn.Module | None = None,
        decoder: nn.Module | None = None,
        likelihood: Likelihood | None = None,
        fixed_prior: PriorSpec = None,
        random_prior: PriorSpec = None,
        trust_pickle: bool = False,
    ) -> LMMVAE:
        """Load an estimator written by :meth:`save` (or a checkpoint written by :meth:`fit`).

        The file is read with ``torch.load(weights_only=True)``: it runs no code from the file.
        The estimator is rebuilt through the constructor and its weights loaded; a checkpoint
        loads with the weights of its last completed epoch.

        Parameters
        ----------
        path : str or Path
        device : str or torch.device, default "cpu"
        encoder, decoder, likelihood, fixed_prior, random_prior : optional
            The custom objects the model was built with, when it was (the error says which);
            built like the saved ones: their learned values come from the file.
        trust_pickle : bool, default False
            Read a file written by pyro_lmmvae 0.1 (a pickle: it can run code, so only for
            files you trust); ``save`` it again to convert it.

        Raises
        ------
        FileNotFoundError
            If there is no file at ``path``.
        pyro_lmmvae.persistence.ModelFileError
            (a ValueError) For an empty, damaged or foreign file, a newer format version, a
            0.1 file without ``trust_pickle``, a missing custom object, or a CUDA device on a
            machine without one; the one-line message names the file and the cause.
        """
        target = persistence.check_device(device, path)
        try:
            payload = persistence.read_model_file(path)
        except persistence.LegacyFormatError:
            if not trust_pickle:
                raise
            payload = legacy.read_legacy(path)
        supplied = {
            "encoder": encoder,
            "decoder": decoder,
            "likelihood": likelihood,
            "fixed_prior": fixed_prior,
            "random_prior": random_prior,
        }
        self = persistence.build_estimator(cls, payload, supplied, Path(path))
        self.history = TrainingHistory.from_dict(payload["history"])
        return self.to(target)

    def __repr__(self) -> str:
        return (
            f"LMMVAE({self.design.formula!r}, variant={self.variant!r}, "
            f"objective={self.objective!r}, latent_dim={self.latent_dim}, "
            f"obs_dim={self.obs_dim}, groups={self.design.n_groups})"
        )
