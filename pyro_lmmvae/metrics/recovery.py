"""Recovery of the true latents and effects: MCC, least-squares alignment, effect recovery.

Spec section 10 (MCC) and the effect-recovery check of section 7 ("Synthetic ground truth").
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.stats import rankdata

from pyro_lmmvae.metrics.arrays import _to_numpy

__all__ = ["align_latents", "effect_recovery", "mcc"]


def _as_latent(x: Any, name: str) -> np.ndarray:
    arr = _to_numpy(x, name)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2:
        raise ValueError(f"{name} must be 2-D of shape (n, d), got shape {arr.shape}")
    return arr


def _abs_corr_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``|corr(a[:, j], b[:, k])|``; columns with zero variance give 0."""
    a = a - a.mean(axis=0)
    b = b - b.mean(axis=0)
    na = np.sqrt((a**2).sum(axis=0))
    nb = np.sqrt((b**2).sum(axis=0))
    with np.errstate(invalid="ignore", divide="ignore"):
        c = (a.T @ b) / np.outer(na, nb)
    return np.nan_to_num(np.abs(c), nan=0.0, posinf=0.0, neginf=0.0).clip(0.0, 1.0)


def mcc(z1: Any, z2: Any, method: Literal["pearson", "spearman"] = "pearson") -> float:
    """Mean correlation coefficient between two sets of latents (spec section 10).

    Forms ``C_jk = |corr(z1[:, j], z2[:, k])|``, solves the assignment that
    maximizes the matched sum with :func:`scipy.optimize.linear_sum_assignment`
    (rectangular when the dimensions differ) and returns the mean of the
    ``min(d1, d2)`` matched entries.

    Parameters
    ----------
    z1 : array_like or torch.Tensor
        Latents of shape ``(n, d1)`` (a 1-D array is treated as ``(n, 1)``).
    z2 : array_like or torch.Tensor
        Latents of shape ``(n, d2)`` on the same rows.
    method : {"pearson", "spearman"}, optional
        Correlation type. Spearman correlates column-wise ranks.

    Returns
    -------
    float
        MCC in ``[0, 1]``. A column with zero variance correlates 0 with
        everything.

    Raises
    ------
    ValueError
        If the row counts differ, fewer than 2 rows or no columns are given,
        or ``method`` is unknown.
    """
    if method not in ("pearson", "spearman"):
        raise ValueError(f"method must be 'pearson' or 'spearman', got {method!r}")
    a = _as_latent(z1, "z1")
    b = _as_latent(z2, "z2")
    if a.shape[0] != b.shape[0]:
        raise ValueError(
            f"z1 and z2 must have the same number of rows, got z1 shape {a.shape} "
            f"and z2 shape {b.shape}"
        )
    if a.shape[0] < 2:
        raise ValueError(f"mcc needs at least 2 rows, got z1 shape {a.shape}")
    if a.shape[1] == 0 or b.shape[1] == 0:
        raise ValueError(f"z1 and z2 need at least one column, got {a.shape} and {b.shape}")
    if method == "spearman":
        a = rankdata(a, axis=0)
        b = rankdata(b, axis=0)
    c = _abs_corr_matrix(a, b)
    rows, cols = linear_sum_assignment(-c)
    return float(c[rows, cols].mean())


def align_latents(mu_hat: Any, z_true: Any) -> tuple[np.ndarray, np.ndarray, float]:
    """Least-squares map ``z_true ≈ T mu_hat + b`` between learned and true latents (spec §7).

    Parameters
    ----------
    mu_hat : array-like, (n, L)
        Learned latent means.
    z_true : array-like, (n, L*)
        True latents of the same rows.

    Returns
    -------
    T : numpy.ndarray, (L*, L)
    b : numpy.ndarray, (L*,)
    r2 : float
        Pooled coefficient of determination of the fit.
    """
    mu = _as_latent(mu_hat, "mu_hat")
    z = _as_latent(z_true, "z_true")
    if mu.shape[0] != z.shape[0]:
        raise ValueError(f"mu_hat shape {mu.shape} and z_true shape {z.shape} differ in rows")
    design = np.column_stack([mu, np.ones(mu.shape[0])])
    coef, *_ = np.linalg.lstsq(design, z, rcond=None)
    resid = z - design @ coef
    ss_tot = float(((z - z.mean(axis=0)) ** 2).sum())
    r2 = 1.0 - float((resid**2).sum()) / ss_tot if ss_tot > 0 else float("nan")
    return coef[: mu.shape[1]].T, coef[mu.shape[1]], r2


def effect_recovery(
    mu_hat: Any,
    z_true: Any,
    fixed_hat: Any,
    fixed_true: Any,
    random_hat: Any = None,
    random_true: Any = None,
    intercept_index: int | None = 0,
) -> dict[str, float]:
    """Effect-recovery check against the synthetic truth (spec section 7).

    1. Fit ``z_true ≈ T mu_hat + b`` by least squares over the given rows
       (pass the training rows), ``T`` of shape ``(L*, L)``, ``b`` of shape
       ``(L*,)``.
    2. Map the fitted fixed effects to the true latent space,
       ``F = T fixed_hat`` with ``b`` added to column ``intercept_index``, and
       report ``||F - fixed_true||_F / ||fixed_true||_F``.
    3. If random effects are given, report the Pearson correlation between
       the flattened ``einsum("sl,plk->psk", T, random_hat)`` and the
       flattened ``random_true``.

    Parameters
    ----------
    mu_hat : array_like or torch.Tensor
        Fitted latents (posterior means), shape ``(n, L)``.
    z_true : array_like or torch.Tensor
        True latents on the same rows, shape ``(n, L*)``.
    fixed_hat : array_like or torch.Tensor
        Fitted fixed effects ``M_f``, shape ``(L, Q)``.
    fixed_true : array_like or torch.Tensor
        True fixed effects ``A_f*``, shape ``(L*, Q)`` with the same column
        order as ``fixed_hat``.
    random_hat : array_like or torch.Tensor, optional
        Fitted random effects, shape ``(P, L, k)``.
    random_true : array_like or torch.Tensor, optional
        True random effects ``u*``, shape ``(P, L*, k)``. Must be given
        together with ``random_hat``.
    intercept_index : int or None, optional
        Column of the fixed design holding the intercept, which absorbs
        ``b``. ``None`` means no intercept column (``b`` is then ignored).
        Default 0.

    Returns
    -------
    dict of str to float
        ``"fixed_effects_rel_error"``, ``"latent_r2"`` (R^2 of the
        least-squares fit, pooled over the L* outputs:
        ``1 - ||residual||^2 / ||z_true - mean(z_true)||^2``), ``"mcc"``
        (Pearson MCC between ``mu_hat`` and ``z_true``) and, when random
        effects are given, ``"random_effects_corr"``.

    Raises
    ------
    ValueError
        If any shapes disagree, only one of the random-effect arrays is given,
        or ``intercept_index`` is out of range.
    """
    mu = _to_numpy(mu_hat, "mu_hat")
    z = _to_numpy(z_true, "z_true")
    fh = _to_numpy(fixed_hat, "fixed_hat")
    ft = _to_numpy(fixed_true, "fixed_true")
    if mu.ndim != 2:
        raise ValueError(f"mu_hat must be 2-D of shape (n, L), got shape {mu.shape}")
    if z.ndim != 2:
        raise ValueError(f"z_true must be 2-D of shape (n, L*), got shape {z.shape}")
    if mu.shape[0] != z.shape[0]:
        raise ValueError(
            f"mu_hat and z_true must have the same number of rows, got mu_hat shape {mu.shape} "
            f"and z_true shape {z.shape}"
        )
    if mu.shape[0] < 2:
        raise ValueError(f"effect_recovery needs at least 2 rows, got mu_hat shape {mu.shape}")
    n_lat, n_true = mu.shape[1], z.shape[1]
    if fh.ndim != 2 or fh.shape[0] != n_lat:
        raise ValueError(
            f"fixed_hat must have shape (L, Q) with L = {n_lat} (from mu_hat), got shape {fh.shape}"
        )
    if ft.ndim != 2 or ft.shape[0] != n_true:
        raise ValueError(
            f"fixed_true must have shape (L*, Q) with L* = {n_true} (from z_true), "
            f"got shape {ft.shape}"
        )
    if fh.shape[1] != ft.shape[1]:
        raise ValueError(
            f"fixed_hat shape {fh.shape} and fixed_true shape {ft.shape} have different "
            "numbers of design columns Q"
        )
    if intercept_index is not None and not -ft.shape[1] <= intercept_index < ft.shape[1]:
        raise ValueError(
            f"intercept_index {intercept_index} is out of range for Q = {ft.shape[1]} columns"
        )
    if (random_hat is None) != (random_true is None):
        raise ValueError("random_hat and random_true must be given together")

    t_map, offset, latent_r2 = align_latents(mu, z)

    mapped = t_map @ fh
    if intercept_index is not None:
        mapped[:, intercept_index] += offset
    denom = float(np.linalg.norm(ft))
    if denom == 0.0:
        raise ValueError("fixed_true has zero Frobenius norm; relative error is undefined")
    out = {
        "fixed_effects_rel_error": float(np.linalg.norm(mapped - ft)) / denom,
        "latent_r2": latent_r2,
        "mcc": mcc(mu, z),
    }

    if random_hat is not None:
        rh = _to_numpy(random_hat, "random_hat")
        rt = _to_numpy(random_true, "random_true")
        if rh.ndim != 3 or rh.shape[1] != n_lat:
            raise ValueError(
                f"random_hat must have shape (P, L, k) with L = {n_lat}, got shape {rh.shape}"
            )
        if rt.ndim != 3 or rt.shape[1] != n_true:
            raise ValueError(
                f"random_true must have shape (P, L*, k) with L* = {n_true}, got shape {rt.shape}"
            )
        if rh.shape[0] != rt.shape[0] or rh.shape[2] != rt.shape[2]:
            raise ValueError(
                f"random_hat shape {rh.shape} and random_true shape {rt.shape} disagree in P or k"
            )
        mapped_r = np.einsum("sl,plk->psk", t_map, rh).ravel()
        flat_t = rt.ravel()
        if mapped_r.size < 2 or mapped_r.std() == 0.0 or flat_t.std() == 0.0:
            corr = float("nan")
        else:
            corr = float(np.corrcoef(mapped_r, flat_t)[0, 1])
        out["random_effects_corr"] = corr
    return out
