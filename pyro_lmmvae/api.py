"""The user-facing estimator: formula + DataFrame in, trained LMM-VAE and ArviZ effects out."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import arviz as az
import numpy as np
import pandas as pd
import pyro.distributions as dist
import torch
from torch import nn

from pyro_lmmvae.data import InstanceBatcher, LongitudinalTensors, validate_observations
from pyro_lmmvae.design import Design, DesignMatrices, UnseenPolicy
from pyro_lmmvae.effects import effects_inference_data
from pyro_lmmvae.guides import MeanFieldEffects, OLMMGuide
from pyro_lmmvae.inference import OLMMVariationalPair
from pyro_lmmvae.io import write_atomic
from pyro_lmmvae.models import LatentScale, Likelihood, MixedEffects, OLMMModel, make_likelihood
from pyro_lmmvae.networks import GaussianEncoder, default_decoder, default_encoder
from pyro_lmmvae.priors import EffectPrior
from pyro_lmmvae.training.loop import TrainingHistory, train
from pyro_lmmvae.training.loss import ELBOLoss

Variant = Literal["olmm"]
VARIANTS = ("olmm",)
FORMAT = "pyro_lmmvae.LMMVAE/1"
PriorSpec = EffectPrior | dist.TorchDistribution | str | None


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
    variant : {"olmm"}, default "olmm"
        oLMM-VAE: one latent per observation, amortized encoder, mean-field q(A).
    instance : str, optional
        Instance column, if the formula has no random effects (see :class:`Design`).
    encoder, decoder : torch.nn.Module, optional
        Any networks: the encoder maps (n, D) (or (n, 2D) with ``mask_channel``) to (n, 2L) or a
        tuple (mu, log sigma^2); the decoder maps (n, L) to (n, D). MLPs by default.
    likelihood : {"gaussian", "bernoulli"} or Likelihood, default "gaussian"
        Gaussian with learned per-feature noise unless ``noise_scale`` fixes it.
    noise_scale : float, optional
        Fixed Gaussian noise standard deviation (e.g. 0.1 for images in [0, 1]).
    latent_scale : float, default 1.0
        sigma_z, the prior standard deviation of the latent noise.
    learn_latent_scale : bool, default False
        Learn sigma_z as a point estimate.
    fixed_prior, random_prior : pyro distribution, EffectPrior or "learned_scale", optional
        Priors on the entries of A_f and u_p; Normal(0, 1) by default.
    standardize : bool or sequence of str, default True
        Z-score continuous covariates with training statistics (see :class:`Design`).
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
        instance: str | None = None,
        encoder: nn.Module | None = None,
        decoder: nn.Module | None = None,
        likelihood: str | Likelihood = "gaussian",
        noise_scale: float | None = None,
        latent_scale: float = 1.0,
        learn_latent_scale: bool = False,
        fixed_prior: PriorSpec = None,
        random_prior: PriorSpec = None,
        standardize: bool | Sequence[str] = True,
        mask_channel: bool = False,
        seed: int = 0,
    ) -> None:
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
        if not isinstance(latent_dim, int) or latent_dim < 1:
            raise ValueError(f"latent_dim must be a positive integer, got {latent_dim!r}")
        self.variant = variant
        self.latent_dim = latent_dim
        self.design = Design(formula, data, instance=instance, standardize=standardize)
        self._y, self._mask = validate_observations(y, mask, n_rows=len(data))
        self._data = data.reset_index(drop=True)
        obs_dim = self._y.shape[1]
        self.obs_dim = obs_dim
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.pair = self._build(
                obs_dim,
                encoder=encoder,
                decoder=decoder,
                likelihood=likelihood,
                noise_scale=noise_scale,
                latent_scale=latent_scale,
                learn_latent_scale=learn_latent_scale,
                fixed_prior=fixed_prior,
                random_prior=random_prior,
                mask_channel=mask_channel,
            )
        self.history = TrainingHistory()
        self.device = torch.device("cpu")

    def _build(self, obs_dim: int, **options) -> OLMMVariationalPair:
        d, L = self.design, self.latent_dim
        effects = MixedEffects(
            L, d.n_fixed, d.n_random, d.n_groups, options["fixed_prior"], options["random_prior"]
        )
        decoder = options["decoder"] or default_decoder(obs_dim, L)
        model = OLMMModel(
            effects,
            decoder,
            make_likelihood(options["likelihood"], obs_dim, options["noise_scale"]),
            LatentScale(options["latent_scale"], options["learn_latent_scale"]),
        )
        mask_channel = options["mask_channel"]
        network = options["encoder"] or default_encoder(obs_dim, L, mask_channel)
        guide = OLMMGuide(
            MeanFieldEffects(L, d.n_fixed, d.n_random, d.n_groups),
            GaussianEncoder(network, L, mask_channel),
        )
        return OLMMVariationalPair(model, guide)

    # ------------------------------------------------------------------ components
    @property
    def model(self) -> OLMMModel:
        """The Pyro model: a callable taking a :class:`~pyro_lmmvae.data.Batch`."""
        return self.pair.model

    @property
    def guide(self) -> OLMMGuide:
        """The Pyro guide: a callable taking a :class:`~pyro_lmmvae.data.Batch`."""
        return self.pair.guide

    def loss_module(self, num_particles: int = 1) -> ELBOLoss:
        """The negative ELBO as a torch module (for custom loops, Lightning or DDP)."""
        return ELBOLoss(self.model, self.guide, num_particles=num_particles)

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
        max_epochs: int = 200,
        batch_size: int = 32,
        *,
        lr: float = 1e-3,
        lr_decay: float = 0.99,
        validation: float | tuple | None = 0.2,
        patience: int | None = None,
        clip_norm: float | None = None,
        device: str | torch.device = "cpu",
        progress: bool = True,
        seed: int = 0,
    ) -> LMMVAE:
        """Train with SVI on :class:`~pyro.infer.TraceMeanField_ELBO`.

        Parameters
        ----------
        max_epochs : int, default 200
        batch_size : int, default 32
            Instances per batch; each batch holds all training rows of its instances.
        lr, lr_decay : float
            Adam learning rate and its per-epoch exponential decay.
        validation : float, tuple or None, default 0.2
            A fraction of rows held out at random (seeded), or ``(data, y, mask)`` of
            validation rows of the training instances, or None. The weights with the best
            validation objective (negative ELBO per row) are kept.
        patience : int, optional
            Early stopping after this many epochs without improvement.
        clip_norm : float, optional
            Gradient-norm clipping.
        device : str or torch.device, default "cpu"
            ``"cuda"`` trains on the GPU; data are moved there once.
        progress : bool, default True
            Show a progress bar.
        seed : int, default 0
            Seed of batching and Monte Carlo draws; the caller's global RNG state is restored.

        Returns
        -------
        LMMVAE
            ``self``, fitted.
        """
        device = torch.device(device)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise RuntimeError("device='cuda' was requested but torch.cuda.is_available() is False")
        train_rows, val_tensors = self._split(validation, seed, device)
        self.to(device)
        train_tensors = self._row_subset(train_rows, device)
        cuda = [device.index or 0] if device.type == "cuda" else []
        with torch.random.fork_rng(devices=cuda):
            torch.manual_seed(seed)
            generator = torch.Generator().manual_seed(seed)
            batcher = InstanceBatcher(train_tensors, batch_size, generator)
            loss = self.loss_module()
            validate = None
            if val_tensors is not None:
                val_batch = val_tensors.full_batch()

                def validate() -> float:
                    with torch.no_grad():
                        g = torch.Generator().manual_seed(seed)
                        return float(self.pair.row_objective(val_batch, g).mean())

            self.history = train(
                loss,
                batcher,
                n_rows=len(train_tensors),
                max_epochs=max_epochs,
                lr=lr,
                lr_decay=lr_decay,
                clip_norm=clip_norm,
                validate=validate,
                patience=patience,
                progress=progress,
            )
        return self

    def _split(self, validation, seed: int, device: torch.device):
        n = len(self._data)
        if validation is None:
            return np.arange(n), None
        if isinstance(validation, float):
            if not 0.0 < validation < 1.0:
                raise ValueError(f"validation fraction must be in (0, 1), got {validation}")
            rng = np.random.default_rng(seed)
            perm = rng.permutation(n)
            n_val = int(round(validation * n))
            val_rows, train_rows = np.sort(perm[:n_val]), np.sort(perm[n_val:])
            val = self._row_subset(val_rows, device)
            return train_rows, val
        if isinstance(validation, tuple) and len(validation) in (2, 3):
            data, y, *rest = validation
            mask = rest[0] if rest else None
            self.device = device
            return np.arange(n), self.tensors(data, y, mask)
        raise TypeError("validation must be a fraction, a (data, y, mask) tuple or None")

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

    # ------------------------------------------------------------------ outputs
    @torch.no_grad()
    def latents(self, y: np.ndarray | None = None, mask: np.ndarray | None = None) -> np.ndarray:
        """Posterior means of the latents ``mu_phi(m ⊙ y)``, (N, L)."""
        tensors = self._observation_tensors(y, mask)
        return self.pair.latent_mean(tensors.full_batch()).cpu().numpy()

    @torch.no_grad()
    def impute(
        self,
        y: np.ndarray | None = None,
        mask: np.ndarray | None = None,
        *,
        keep_observed: bool = True,
    ) -> np.ndarray:
        """Fill the missing entries of observations with ``g(mu_phi(m ⊙ y))`` (spec §5).

        Parameters
        ----------
        y, mask : array-like, optional
            Observations and mask (the training ones by default).
        keep_observed : bool, default True
            Keep observed entries as given; otherwise return the full reconstruction.

        Returns
        -------
        numpy.ndarray, (N, D)
        """
        tensors = self._observation_tensors(y, mask)
        batch = tensors.full_batch()
        recon = self.pair.impute(batch)
        if keep_observed:
            recon = torch.where(batch.mask, batch.y, recon)
        return recon.cpu().numpy()

    def _observation_tensors(self, y, mask) -> LongitudinalTensors:
        if y is None:
            return self.tensors()
        y, mask = validate_observations(y, mask)
        if y.shape[1] != self.obs_dim:
            raise ValueError(f"y has {y.shape[1]} features; the model was built for {self.obs_dim}")
        data = self._data if len(y) == len(self._data) else None
        if data is None:  # the oLMM encoder needs no covariates: encode rows on their own
            design_rows = np.zeros((len(y), 0), np.float32)
            matrices = DesignMatrices(design_rows, design_rows, np.full(len(y), -1, np.int64))
            return LongitudinalTensors(matrices, y, mask, np.arange(len(y)), self.device)
        return LongitudinalTensors.from_frame(self.design, data, y, mask, device=self.device)

    @torch.no_grad()
    def predict(self, data: pd.DataFrame, *, unseen: UnseenPolicy = "error") -> np.ndarray:
        """Conditional generation ``g(M_f x* + E[u_p] w*)`` at new covariates (spec §5).

        Parameters
        ----------
        data : pandas.DataFrame
            Covariates of the rows to predict, with the instance column when the formula has
            random effects.
        unseen : {"error", "prior"}, default "error"
            An instance not seen in training raises, or (``"prior"``) uses the prior mean of
            its random effects (the population curve).

        Returns
        -------
        numpy.ndarray, (N, D)
        """
        tensors = self.tensors(data, unseen=unseen)
        return self.pair.predict(tensors.full_batch()).cpu().numpy()

    def effects(
        self, num_draws: int = 500, seed: int = 0, groups: Sequence | None = None
    ) -> az.InferenceData:
        """The learned fixed and random effects as an :class:`arviz.InferenceData`.

        See :func:`pyro_lmmvae.effects.effects_inference_data` for dims and coords.
        """
        return effects_inference_data(
            self.design,
            self.guide.effects,
            self.model.effects,
            num_draws=num_draws,
            seed=seed,
            groups=groups,
            attrs={"variant": self.variant, "latent_dim": self.latent_dim},
        )

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | Path) -> Path:
        """Write the fitted estimator to ``path`` atomically (one file, ``torch.save``)."""
        state = {
            "format": FORMAT,
            "variant": self.variant,
            "latent_dim": self.latent_dim,
            "obs_dim": self.obs_dim,
            "design": self.design,
            "pair": copy.deepcopy(self.pair).cpu(),
            "data": self._data,
            "y": self._y,
            "mask": self._mask,
            "history": self.history,
        }
        return write_atomic(path, lambda tmp: torch.save(state, tmp))

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device = "cpu") -> LMMVAE:
        """Load an estimator written by :meth:`save`.

        The file is a pickle (it holds the networks): load only files you trust.
        """
        state = torch.load(path, map_location="cpu", weights_only=False)
        if not isinstance(state, dict) or state.get("format") != FORMAT:
            raise ValueError(f"{path} is not a pyro_lmmvae LMMVAE file (format {FORMAT})")
        self = cls.__new__(cls)
        self.variant = state["variant"]
        self.latent_dim = state["latent_dim"]
        self.obs_dim = state["obs_dim"]
        self.design = state["design"]
        self.pair = state["pair"]
        self._data = state["data"]
        self._y = state["y"]
        self._mask = state["mask"]
        self.history = state["history"]
        self.device = torch.device("cpu")
        return self.to(device)

    def __repr__(self) -> str:
        return (
            f"LMMVAE({self.design.formula!r}, variant={self.variant!r}, "
            f"latent_dim={self.latent_dim}, obs_dim={self.obs_dim}, "
            f"groups={self.design.n_groups})"
        )
