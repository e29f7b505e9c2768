"""Learned fixed and random effects as an ArviZ container.

The container is an :class:`arviz.InferenceData` on ArviZ 0.x and an :class:`xarray.DataTree`
on ArviZ >= 1.0 (:mod:`pyro_lmmvae.arviz_compat` builds it); on both, ``data.posterior[name]``
is an :class:`xarray.DataArray` and ``data.posterior.attrs`` a dict.

Draws come from the variational posterior (mean-field q(A_f) q(u_p), or the structured
q(A_f) q(u_p | A_f) of ``effects_guide="structured"``, drawn jointly); for point estimates (the
sLMM default) the posterior group holds a single draw, the estimate, and says so in its
attributes. It holds

* ``fixed_effects`` with dims ``(chain, draw, latent, term)``; ``term`` named from the formula,
  e.g. ``Intercept``, ``age``, ``sex[m]``, ``sex[m]:age``;
* ``random_effects`` with dims ``(chain, draw, latent, group, random_term)``; ``group`` holds
  the labels of the grouping factor, ``random_term`` the expression columns (``1``, ``age``).

The two term dims have different names because one dataset cannot give a dim two coordinate
sets. Attributes record the formula, the priors and the standardisation of the covariates, so
that a coefficient can be read on the right scale.

For Bayesian effects the ``prior`` group holds as many draws from the priors p(A_f), p(u_p)
(same variables, dims and coords; e.g. for ``az.plot_dist_comparison`` on ArviZ 0.x,
``az.plot_prior_posterior`` on 1.x), and ``constant_data`` holds each entry's prior standard
deviation, ``fixed_prior_sd`` (latent, term) and ``random_prior_sd`` (latent, random_term): with
a :class:`~pyro_lmmvae.gp.prior.SpectralPrior` these are the spectral scales ``√Λ`` of the
basis columns, and the posterior attributes ``fixed_prior_hyperparameters`` /
``random_prior_hyperparameters`` hold the (possibly learned) kernel variance and lengthscale of
every basis term as JSON.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import numpy as np
import torch

from pyro_lmmvae import arviz_compat
from pyro_lmmvae.design import Design
from pyro_lmmvae.draws import EffectDraws, effect_draws, group_batch, point_draws
from pyro_lmmvae.guides import MeanFieldEffects
from pyro_lmmvae.models import MixedEffects, PointEffects
from pyro_lmmvae.pyro_module import local_params


def effects_inference_data(
    design: Design,
    estimates: MeanFieldEffects | PointEffects,
    prior_effects: MixedEffects | PointEffects,
    *,
    num_draws: int = 500,
    seed: int = 0,
    groups: Sequence | None = None,
    attrs: dict | None = None,
) -> arviz_compat.DataContainer:
    """Draw the effects from q and wrap them in an ArviZ container.

    Parameters
    ----------
    design : Design
        Gives term names and group labels.
    estimates : MeanFieldEffects or PointEffects
        The variational factors, or point estimates.
    prior_effects : MixedEffects or PointEffects
        The priors (described in the attributes); point estimates have none.
    num_draws : int, default 500
        Draws per variable (one chain: the draws are independent); 1 for point estimates.
    seed : int, default 0
        Seed of the draws.
    groups : sequence, optional
        Labels of the groups to include (all by default); limits memory for many instances.
    attrs : dict, optional
        Extra attributes for the posterior group.

    Returns
    -------
    arviz.InferenceData or xarray.DataTree
        :data:`pyro_lmmvae.arviz_compat.DataContainer`: ``InferenceData`` on ArviZ 0.x,
        ``DataTree`` on ArviZ >= 1.0.
    """
    if num_draws < 1:
        raise ValueError(f"num_draws must be at least 1, got {num_draws}")
    if not (estimates.n_fixed or estimates.n_random):
        raise ValueError(
            "this model has no effect matrices to report: its formula is empty ('~ 0', a plain "
            "VAE) or it is a CVAE, whose covariates feed the networks, not a latent prior"
        )
    point = estimates.is_point
    if point:
        num_draws = 1
    posterior: dict[str, np.ndarray] = {}
    dims: dict[str, list[str]] = {}
    coords: dict[str, object] = {"latent": np.arange(estimates.latent_dim)}

    index = np.arange(design.n_groups) if estimates.n_random else np.zeros(0, dtype=int)
    if estimates.n_random and groups is not None:
        index = design.group_codes(list(groups))
    idx = torch.as_tensor(index, dtype=torch.long, device=estimates.fixed_loc.device)
    batch = group_batch(idx, design.n_groups, estimates)
    if point:
        draws = point_draws(estimates, idx, num_draws)
    else:
        draws = effect_draws(estimates, batch, num_draws, seed)
    posterior.update(_as_arrays(draws, dims))
    if estimates.n_fixed:
        coords["term"] = list(design.fixed_terms)
    if estimates.n_random:
        coords["group"] = np.asarray(design.groups)[index]
        coords["random_term"] = random_term_names(design)
        components = _variance_components(prior_effects, point)
        if components is not None:
            sd, corr = components
            posterior["random_effects_sd"] = np.broadcast_to(sd, (1, num_draws, *sd.shape))
            posterior["random_effects_corr"] = np.broadcast_to(corr, (1, num_draws, *corr.shape))
            dims["random_effects_sd"] = ["latent", "random_term"]
            dims["random_effects_corr"] = ["latent", "random_term", "random_term_"]
            coords["random_term_"] = coords["random_term"]
    all_attrs = {
        "formula": design.formula,
        "fixed_prior": "none (point estimate)" if point else prior_effects.fixed_prior.describe(),
        "random_prior": "none (point estimate)" if point else prior_effects.random_prior.describe(),
        "group_factor": design.group_factor or "",
        "standardization": json.dumps(design.standardization),
        "draws_from": estimates.description,
        "inference_library": "pyro",
        **(attrs or {}),
    }
    groups_of_data: dict[str, dict] = {"posterior": posterior}
    if not point:
        prior_draws = effect_draws(prior_effects, batch, num_draws, seed + 1)
        groups_of_data["prior"] = _as_arrays(prior_draws, {})
        groups_of_data["constant_data"] = _prior_sd(prior_effects, prior_draws, len(index))
        dims.update({"fixed_prior_sd": ["latent", "term"]})
        dims.update({"random_prior_sd": ["latent", "random_term"]})
        for name in ("fixed_prior", "random_prior"):
            hyper = getattr(getattr(prior_effects, name), "hyperparameters", None)
            if hyper is not None and getattr(prior_effects, name).columns:
                all_attrs[f"{name}_hyperparameters"] = json.dumps(hyper())
    return arviz_compat.from_dict(
        groups_of_data, coords=coords, dims=dims, attrs={"posterior": all_attrs}
    )


def _as_arrays(draws: EffectDraws, dims: dict[str, list[str]]) -> dict[str, np.ndarray]:
    """One chain of ArviZ arrays from effect draws; records each variable's dims in ``dims``."""
    out: dict[str, np.ndarray] = {}
    if draws.fixed is not None:
        out["fixed_effects"] = draws.fixed.numpy()[None]
        dims["fixed_effects"] = ["latent", "term"]
    if draws.random is not None:
        # (draw, group, latent, term) -> (draw, latent, group, term)
        out["random_effects"] = draws.random.permute(0, 2, 1, 3).numpy()[None]
        dims["random_effects"] = ["latent", "group", "random_term"]
    for name, (values, site_dims) in draws.hyper.items():
        out[name] = values.numpy()[None]
        dims[name] = site_dims
    return out


def _prior_sd(prior_effects: MixedEffects, draws: EffectDraws, n_groups: int) -> dict:
    """Each entry's prior sd: analytic, or the draws' sd for a hierarchical prior (whose
    marginal has no closed form here)."""
    sd: dict[str, np.ndarray] = {}
    L = prior_effects.latent_dim
    parts = (
        ("fixed_prior", draws.fixed, (L, prior_effects.n_fixed)),
        ("random_prior", draws.random, (max(n_groups, 1), L, prior_effects.n_random)),
    )
    for name, values, shape in parts:
        if values is None:
            continue
        if draws.hierarchical:
            stddev = values.std(0)
        else:
            with torch.no_grad(), local_params():
                stddev = getattr(prior_effects, name)(shape).stddev.cpu()
        sd[f"{name}_sd"] = (stddev[0] if name == "random_prior" else stddev).numpy()
    return sd


def random_term_names(design: Design) -> list[str]:
    """bambi's names of the random terms: ``1|id``, ``t|id``."""
    return [f"{term}|{design.group_factor}" for term in design.random_terms]


def _variance_components(prior_effects, point: bool) -> tuple[np.ndarray, np.ndarray] | None:
    """The learned sds (L, k) and correlations (L, k, k) of a covariance prior, else None."""
    prior = None if point else getattr(prior_effects, "random_prior", None)
    if not hasattr(prior, "components"):
        return None
    with local_params(), torch.no_grad():
        sd, corr = prior.components()
    return sd.cpu().numpy(), corr.cpu().numpy()
