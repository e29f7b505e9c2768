"""The user-facing estimator: formula + DataFrame in, trained LMM-VAE and ArviZ effects out."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import torch
from torch import nn

from pyro_lmmvae import defaults, fitting
from pyro_lmmvae.data import InstanceBatcher, LongitudinalTensors
from pyro_lmmvae.design import Design, UnseenPolicy
from pyro_lmmvae.fitting import MAX_LOCAL_LR  # noqa: F401 (documented here: fit's local_lr)
from pyro_lmmvae.inspection import InspectionMixin
from pyro_lmmvae.models import Likelihood
from pyro_lmmvae.models.likelihoods import likelihood_support
from pyro_lmmvae.persistence.estimator import PersistenceMixin
from pyro_lmmvae.posterior import PosteriorMixin
from pyro_lmmvae.prior_specs import PriorSpec
from pyro_lmmvae.training.loop import TrainingHistory
from pyro_lmmvae.validation import (
    check_likelihood_support,
    check_unit_scale,
    validate_observations,
)
from pyro_lmmvae.variants import VARIANTS, Objective, Variant, VariantOptions, build_pair

IDENTITY_NOISE = 0.01
"""Fixed likelihood noise of ``network="identity"``: z is y up to this; sigma_z the residual."""
Selection = Literal["objective", "prediction_mse"]
KLEstimator = Literal["auto", "closed_form", "trace_mean_field"]

__all__ = ["LMMVAE", "VARIANTS"]


class LMMVAE(PosteriorMixin, InspectionMixin, PersistenceMixin):
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
        latent_dim: int = defaults.LATENT_DIM,
        variant: Variant = defaults.VARIANT,
        objective: Objective = defaults.OBJECTIVE,
        instance: str | None = None,
        encoder: nn.Module | None = None,
        decoder: nn.Module | None = None,
        network: str = defaults.NETWORK,
        likelihood: str | Likelihood = defaults.LIKELIHOOD,
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
        seed: int = defaults.SEED,
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
        name = likelihood if isinstance(likelihood, str) else type(likelihood).__name__
        support = likelihood_support(likelihood)
        check_likelihood_support(support, name, self._y, self._mask)
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
        batch_size: int = defaults.BATCH_SIZE,
        *,
        lr: float = defaults.LR,
        effects_lr: float = defaults.EFFECTS_LR,
        lr_decay: float = defaults.LR_DECAY,
        local_lr: float | None = None,
        validation: float | tuple | None = None,
        select: Selection = defaults.SELECT,
        patience: int | None = None,
        clip_norm: float | None = None,
        device: str | torch.device = defaults.DEVICE,
        progress: bool | str = defaults.PROGRESS,
        seed: int = 0,
        kl: KLEstimator = defaults.KL,
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

    def __repr__(self) -> str:
        return (
            f"LMMVAE({self.design.formula!r}, variant={self.variant!r}, "
            f"objective={self.objective!r}, latent_dim={self.latent_dim}, "
            f"obs_dim={self.obs_dim}, groups={self.design.n_groups})"
        )
