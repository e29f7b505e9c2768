"""Posterior and prediction: what a fitted LMM-VAE says about rows, seen or new (spec §5).

:class:`PosteriorMixin` gives the estimator (:class:`~pyro_lmmvae.LMMVAE`) its outputs on rows:
posterior latent means, the prior's latent mean at covariates, imputation of missing entries,
prediction at new covariates (seen instances, unseen ones at the population curve, or unseen
ones adapted to context rows), and the MCC against known latents. Each output runs the
variational pair (:class:`~pyro_lmmvae.variants.VariationalPair`): the encoder, the effect
estimates and the decoder of the model being used.

The mixin reads the estimator's ``pair``, ``design``, ``device``, ``obs_dim``, ``latent_dim``,
``variant``, ``objective`` and ``tensors()``.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd
import torch

from pyro_lmmvae import defaults, metrics
from pyro_lmmvae.data import Batch, LongitudinalTensors
from pyro_lmmvae.design import DesignMatrices, UnseenPolicy
from pyro_lmmvae.validation import validate_observations

PredictUnseen = Literal["error", "prior", "context"]

__all__ = ["PosteriorMixin", "PredictUnseen"]


class PosteriorMixin:
    """Posterior latents, imputation and prediction of :class:`~pyro_lmmvae.LMMVAE`."""

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
        unseen: PredictUnseen = defaults.UNSEEN,
        context: tuple | None = None,
        context_steps: int = defaults.CONTEXT_STEPS,
        context_lr: float = defaults.CONTEXT_LR,
        seed: int = defaults.SEED,
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
