"""Evaluation metrics: imputation/prediction MSE, MCC and effect recovery.

Implements spec section 5 ("MSE"), section 10 (MCC) and the effect-recovery
check of section 7 ("Synthetic ground truth"). Every function accepts numpy
arrays, array-likes or torch tensors and computes in ``float64`` numpy.

:mod:`~pyro_lmmvae.metrics.mse` holds the errors of imputed and predicted
outcomes; :mod:`~pyro_lmmvae.metrics.recovery` compares learned latents and
effects with the true ones (MCC, least-squares alignment, effect recovery).
"""

from __future__ import annotations

from pyro_lmmvae.metrics.mse import imputation_mse, observed_mse, prediction_mse
from pyro_lmmvae.metrics.recovery import align_latents, effect_recovery, mcc

__all__ = [
    "align_latents",
    "effect_recovery",
    "imputation_mse",
    "mcc",
    "observed_mse",
    "prediction_mse",
]
