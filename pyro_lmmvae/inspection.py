"""What the latent prior implies: prior vs posterior trajectories of the latent predictor.

:func:`latent_trajectories` evaluates the latent linear mixed model ``eta = A_f x + u_p w``
(spec §1) along a grid of covariates under the prior p(A_f) p(u_p) and under the variational
posterior q(A_f) q(u_p) (or the point estimates), as an :class:`xarray.Dataset` ready for
plotting (:func:`pyro_lmmvae.plots.plot_trajectories`). It reads the model's own prior objects,
so learned kernel hyper-parameters and custom priors are taken into account. The kernel that a
basis term's prior implies is :func:`pyro_lmmvae.gp.inspection.prior_kernel` (spec §6).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import torch
import xarray as xr

from pyro_lmmvae import arviz_compat, defaults
from pyro_lmmvae.draws import effect_draws, group_batch, point_draws
from pyro_lmmvae.effects import effects_inference_data
from pyro_lmmvae.gp import inspection as gp_inspection
from pyro_lmmvae.models import MixedEffects
from pyro_lmmvae.pyro_module import local_params

if TYPE_CHECKING:
    from pyro_lmmvae.design import Design

__all__ = ["InspectionMixin", "latent_trajectories"]

_RESERVED = (
    "point",
    "latent",
    "draw",
    "posterior_mean",
    "posterior_sd",
    "posterior_draws",
    "prior_mean",
    "prior_sd",
    "prior_draws",
)


def _no_prior_message(model: InspectionMixin) -> str:
    return (
        f"the effects of this {model.variant} model are point estimates (the sLMM-VAE default, "
        "or bayesian_effects=False): they have no prior, so there is no prior to inspect; "
        "build the model with bayesian_effects=True for a prior on A"
    )


# ------------------------------------------------------------------------------------------
# latent trajectories
# ------------------------------------------------------------------------------------------


def _with_instances(design: Design, grid: pd.DataFrame) -> pd.DataFrame:
    """The grid with a placeholder unseen instance for rows with no (or a missing) instance.

    All such rows form one new instance: the population curve under the posterior, one draw of
    the random effects per prior draw.
    """
    name = design.instance
    if name is None:
        return grid
    labels = grid[name] if name in grid.columns else pd.Series([np.nan] * len(grid))
    labels = labels.reset_index(drop=True)
    missing = labels.isna().to_numpy()
    if not missing.any():
        return grid
    taken = set(design.groups.tolist()) | set(labels[~missing].tolist())
    if np.issubdtype(np.asarray(design.groups).dtype, np.number):
        numbers = [float(v) for v in taken if isinstance(v, (int, float, np.number))]
        placeholder = max(numbers, default=0.0) + 1.0
    else:
        placeholder = "<population>"
        while placeholder in taken:
            placeholder = f"<{placeholder}>"
    frame = grid.reset_index(drop=True).copy()
    frame[name] = labels.astype(object).where(~missing, placeholder)
    if isinstance(placeholder, float):
        frame[name] = pd.to_numeric(frame[name])
    return frame


def _eta(
    fixed: torch.Tensor | None,
    random: torch.Tensor | None,
    x: torch.Tensor,
    w: torch.Tensor,
    local: torch.Tensor,
    n_latent: int,
) -> torch.Tensor:
    """``A x + u[local] w`` for draws ``fixed`` (S, L, Q) and ``random`` (S, B, L, k): (S, n, L)."""
    leading = (fixed if fixed is not None else random).shape[0]
    eta = x.new_zeros(leading, x.shape[0], n_latent)
    if fixed is not None:
        eta = eta + torch.einsum("slq,nq->snl", fixed, x)
    if random is not None:
        eta = eta + torch.einsum("snlk,nk->snl", random[:, local], w)
    return eta


def _moments(
    fixed: tuple[torch.Tensor, torch.Tensor] | None,
    random: tuple[torch.Tensor, torch.Tensor] | None,
    x: torch.Tensor,
    w: torch.Tensor,
    local: torch.Tensor,
    n_latent: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and variance of ``A x + u[local] w``, each (n, L): entries of A independent, u's
    terms independent or (given covariances) jointly Normal."""
    mean = x.new_zeros(x.shape[0], n_latent)
    var = x.new_zeros(x.shape[0], n_latent)
    if fixed is not None:
        mean = mean + x @ fixed[0].T
        var = var + x.square() @ fixed[1].T
    if random is not None:
        mean = mean + torch.einsum("nlk,nk->nl", random[0][local], w)
        if random[1].dim() == 4:  # covariances (P, L, k, k) of a joint prior: w' Σ w
            var = var + torch.einsum("nk,nlkj,nj->nl", w, random[1][local], w)
        else:
            var = var + torch.einsum("nlk,nk->nl", random[1][local], w.square())
    return mean, var


def _prior_trajectories(model: InspectionMixin, batch, num_draws: int, seed: int) -> dict:
    """Draws of eta from p(A_f) p(u), and its prior mean and sd (analytic when possible).

    The draws run the model's own effect sites (:func:`pyro_lmmvae.draws.effect_draws`). A prior
    that samples hyper-parameters of its own (hierarchical) is run once per draw, and its
    moments are then the draws' moments.
    """
    effects = model.model.effects
    n_latent = effects.latent_dim
    n_instances = len(batch.instances)
    drawn = effect_draws(effects, batch, num_draws, seed)
    x, w, local = batch.x.cpu(), batch.w.cpu(), batch.local.cpu()
    draws = _eta(drawn.fixed, drawn.random, x, w, local, n_latent)
    if drawn.hierarchical:
        mean = draws.mean(0)
        sd = draws.std(0) if num_draws > 1 else torch.full_like(mean, float("nan"))
        how = f"empirical over the {num_draws} draws (the prior samples hyper-parameters)"
    else:
        with local_params(), torch.no_grad():
            fixed_moments = random_moments = None
            if effects.n_fixed:
                p = effects.fixed_prior((n_latent, effects.n_fixed))
                fixed_moments = (p.mean.cpu(), p.variance.cpu())
            if effects.n_random:
                p = effects.random_prior((n_instances, n_latent, effects.n_random))
                joint = len(p.event_shape) == 1  # correlated terms: keep the covariances
                spread = p.covariance_matrix if joint else p.variance
                random_moments = (p.mean.cpu(), spread.cpu())
        mean, var = _moments(fixed_moments, random_moments, x, w, local, n_latent)
        sd = var.sqrt()
        how = "analytic (entry-wise prior means and variances)"
    return {"draws": draws, "mean": mean, "sd": sd, "how": how}


def latent_trajectories(
    model: InspectionMixin, grid: pd.DataFrame, *, num_draws: int = 20, seed: int = 0
) -> xr.Dataset:
    """Prior and posterior trajectories of the latent linear predictor ``eta = A_f x + u_p w``.

    Each row of ``grid`` is a point (e.g. a grid over ``age`` with the other covariates fixed).
    Under the posterior, a row whose instance was seen in training uses that instance's random
    effects q(u_p); a row of an unseen instance, or with no (or a missing) instance, gets the
    population curve (random effects at their prior mean, zero). Under the prior every instance
    draws its own random effects from p(u); the rows without an instance share one such draw.
    ``eta`` excludes the latent noise ``σ_z`` and, for the sLMM-VAE, the instance offsets.

    Parameters
    ----------
    model : LMMVAE or InspectionMixin
        Any model with effect matrices (not a plain VAE or a CVAE); it need not be trained.
    grid : pandas.DataFrame
        Covariates of the points: every column the formula uses, and optionally the instance
        column.
    num_draws : int, default 20
        Draws of the trajectories from the posterior and from the prior.
    seed : int, default 0
        Seed of the draws; the caller's global RNG state is left unchanged.

    Returns
    -------
    xarray.Dataset
        Variables ``posterior_mean``, ``posterior_sd`` (point, latent) and ``posterior_draws``
        (draw, point, latent) from q(A_f) q(u_p) (point estimates: sd 0 and identical draws);
        ``prior_mean``, ``prior_sd`` (point, latent) and ``prior_draws`` (draw, point, latent)
        from p(A_f) p(u_p), absent when the effects are point estimates (the ``prior``
        attribute says why). Coordinates: ``point`` (0 .. n-1), one coordinate per column of
        ``grid`` along ``point``, ``latent`` and ``draw``. Attributes: ``formula``, ``variant``,
        ``objective``, the priors, ``num_draws`` and ``seed``.

    Raises
    ------
    ValueError
        If the model has no effect matrices, ``num_draws`` is not a positive integer, or a grid
        column is named like a dimension or variable of the result.
    """
    if isinstance(num_draws, bool) or not isinstance(num_draws, (int, np.integer)) or num_draws < 1:
        raise ValueError(f"num_draws must be a positive integer, got {num_draws!r}")
    if not isinstance(grid, pd.DataFrame):
        raise TypeError(f"grid must be a pandas DataFrame, got {type(grid).__name__}")
    if len(grid) == 0:
        raise ValueError("grid has no rows")
    clash = sorted(set(map(str, grid.columns)) & set(_RESERVED))
    if clash:
        raise ValueError(f"grid column(s) {clash} clash with the result's names: rename them")
    num_draws = int(num_draws)
    estimates = model.pair.effect_estimates
    n_latent = model.latent_dim
    if not (estimates.n_fixed or estimates.n_random):
        raise ValueError(
            "this model has no latent linear predictor: its formula is empty ('~ 0', a plain "
            "VAE) or it is a CVAE, whose covariates feed the networks, not a latent prior"
        )
    batch = model.tensors(_with_instances(model.design, grid), unseen="prior").full_batch()
    x, w, local = batch.x.cpu(), batch.w.cpu(), batch.local.cpu()
    with local_params(), torch.no_grad():
        mean, var = (t.detach().cpu() for t in estimates.predictor_moments(batch))
    seen = batch.instances >= 0
    groups = batch.instances.clamp(min=0)
    if estimates.is_point:
        drawn = point_draws(estimates, groups, num_draws)
    else:
        drawn = effect_draws(
            estimates, group_batch(groups, batch.n_instances_total, estimates), num_draws, int(seed)
        )
    fixed, random = drawn.fixed, drawn.random
    if random is not None:  # unseen instances: the prior mean of their random effects
        random = random * seen.cpu()[:, None, None]
    posterior_draws = _eta(fixed, random, x, w, local, n_latent)

    point_dims, draw_dims = ("point", "latent"), ("draw", "point", "latent")
    data_vars = {
        "posterior_mean": (point_dims, mean.double().numpy()),
        "posterior_sd": (point_dims, var.clamp(min=0).sqrt().double().numpy()),
        "posterior_draws": (draw_dims, posterior_draws.double().numpy()),
    }
    effects = model.model.effects
    attrs = {
        "formula": model.design.formula,
        "variant": model.variant,
        "objective": model.objective,
        "num_draws": num_draws,
        "seed": int(seed),
        "quantity": "eta = A_f x + u_p w (no latent noise sigma_z, no sLMM offsets)",
        "grid_columns": ", ".join(map(str, grid.columns)),
    }
    if isinstance(effects, MixedEffects):
        prior = _prior_trajectories(model, batch, num_draws, int(seed))
        data_vars["prior_mean"] = (point_dims, prior["mean"].double().numpy())
        data_vars["prior_sd"] = (point_dims, prior["sd"].double().numpy())
        data_vars["prior_draws"] = (draw_dims, prior["draws"].double().numpy())
        attrs["posterior"] = estimates.description
        attrs["prior"] = "draws from p(A_f) p(u_p); prior_mean and prior_sd " + prior["how"]
        attrs["fixed_prior"] = effects.fixed_prior.describe() if effects.n_fixed else "none"
        attrs["random_prior"] = effects.random_prior.describe() if effects.n_random else "none"
    else:
        attrs["posterior"] = "point estimates of A_f and u_p (sd 0, identical draws)"
        attrs["prior"] = "unavailable: " + _no_prior_message(model)
    coords = {
        "point": np.arange(len(grid)),
        "latent": np.arange(n_latent),
        "draw": np.arange(num_draws),
    }
    for column in grid.columns:
        coords[str(column)] = ("point", grid[column].to_numpy())
    return xr.Dataset(data_vars, coords=coords, attrs=attrs)


class InspectionMixin:
    """What :class:`~pyro_lmmvae.LMMVAE` shows of its latent prior and posterior: the learned
    effects for ArviZ, basis-term kernels and latent trajectories.

    Reads the estimator's ``pair``, ``model``, ``design``, ``device``, ``latent_dim``,
    ``variant``, ``objective`` and ``tensors()``.
    """

    def effects(
        self,
        num_draws: int = defaults.NUM_DRAWS,
        seed: int = defaults.SEED,
        groups: Sequence | None = None,
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
            See :func:`pyro_lmmvae.gp.inspection.prior_kernel` for details and errors.
        """
        return gp_inspection.prior_kernel(self, term, t, t_prime, effect=effect, latent=latent)

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
        return latent_trajectories(self, grid, num_draws=num_draws, seed=seed)
