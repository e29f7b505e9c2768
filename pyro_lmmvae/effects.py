"""Learned fixed and random effects as an ArviZ :class:`~arviz.InferenceData`.

Draws come from the variational posterior q(A_f) q(u_p). The posterior group holds

* ``fixed_effects`` with dims ``(chain, draw, latent, term)``; ``term`` named from the formula,
  e.g. ``Intercept``, ``age``, ``sex[m]``, ``sex[m]:age``;
* ``random_effects`` with dims ``(chain, draw, latent, group, random_term)``; ``group`` holds
  the labels of the grouping factor, ``random_term`` the expression columns (``1``, ``age``).

The two term dims have different names because one dataset cannot give a dim two coordinate
sets. Attributes record the formula, the priors and the standardisation of the covariates, so
that a coefficient can be read on the right scale.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import arviz as az
import numpy as np
import torch

from pyro_lmmvae.design import Design
from pyro_lmmvae.guides import MeanFieldEffects, variance_from_rho
from pyro_lmmvae.models import MixedEffects


def effects_inference_data(
    design: Design,
    guide_effects: MeanFieldEffects,
    prior_effects: MixedEffects,
    *,
    num_draws: int = 500,
    seed: int = 0,
    groups: Sequence | None = None,
    attrs: dict | None = None,
) -> az.InferenceData:
    """Draw the effects from q and wrap them in an InferenceData.

    Parameters
    ----------
    design : Design
        Gives term names and group labels.
    guide_effects : MeanFieldEffects
        The variational factors.
    prior_effects : MixedEffects
        The priors (described in the attributes).
    num_draws : int, default 500
        Draws per variable (one chain: the draws are independent).
    seed : int, default 0
        Seed of the draws.
    groups : sequence, optional
        Labels of the groups to include (all by default); limits memory for many instances.
    attrs : dict, optional
        Extra attributes for the posterior group.

    Returns
    -------
    arviz.InferenceData
    """
    if num_draws < 1:
        raise ValueError(f"num_draws must be at least 1, got {num_draws}")
    generator = torch.Generator().manual_seed(seed)
    latent = np.arange(guide_effects.latent_dim)
    posterior: dict[str, np.ndarray] = {}
    dims: dict[str, list[str]] = {}
    coords: dict[str, object] = {"latent": latent}
    with torch.no_grad():
        if design.n_fixed:
            loc = guide_effects.fixed_loc.detach().cpu()
            scale = guide_effects.fixed_var.detach().cpu().sqrt()
            noise = torch.randn((num_draws, *loc.shape), generator=generator)
            posterior["fixed_effects"] = (loc + scale * noise).numpy()[None]
            dims["fixed_effects"] = ["latent", "term"]
            coords["term"] = list(design.fixed_terms)
        if design.n_random:
            index = np.arange(design.n_groups)
            labels = np.asarray(design.groups)
            if groups is not None:
                index = design.group_codes(list(groups))
                labels = labels[index]
            idx = torch.as_tensor(index, dtype=torch.long)
            loc = guide_effects.random_loc.detach().cpu()[idx]
            scale = variance_from_rho(guide_effects.random_rho.detach().cpu()[idx]).sqrt()
            noise = torch.randn((num_draws, *loc.shape), generator=generator)
            draws = (loc + scale * noise).permute(0, 2, 1, 3)  # (draw, latent, group, term)
            posterior["random_effects"] = draws.numpy()[None]
            dims["random_effects"] = ["latent", "group", "random_term"]
            coords["group"] = labels
            coords["random_term"] = list(design.random_terms)
    all_attrs = {
        "formula": design.formula,
        "fixed_prior": prior_effects.fixed_prior.describe(),
        "random_prior": prior_effects.random_prior.describe(),
        "group_factor": design.group_factor or "",
        "standardization": json.dumps(design.standardization),
        "draws_from": "mean-field variational posterior",
        "inference_library": "pyro",
        **(attrs or {}),
    }
    idata = az.from_dict(posterior=posterior, coords=coords, dims=dims)
    idata.posterior.attrs.update(all_attrs)
    return idata
