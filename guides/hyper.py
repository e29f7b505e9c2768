"""q over the hyper-parameters that hierarchical effect priors sample (a horseshoe's tau, ...).

A prior may sample Pyro sites of its own, e.g. ``tau ~ HalfCauchy(1)`` and then
``a ~ Normal(0, tau)``. Those sites are global (they live in the latent plate, not in the
instance plate), so their variational factor is Pyro's :class:`~pyro.infer.autoguide.AutoNormal`
over exactly those sites: a Normal in the unconstrained space of each site, mapped to its support.
:class:`~pyro_lmmvae.guides.MeanFieldEffects` runs it before it samples the effects, so the
guide of every variant and objective covers the hyper-parameters, and the ELBO (Pyro's
``TraceMeanField_ELBO``) takes their KL by Monte Carlo.

The autoguide is set up from one trace of the model's effects (a prototype batch) when the
estimator is built, when a fit starts and when a saved model is loaded, so its parameters exist
before an optimizer is made and their names are stable in state dicts. It always runs with
module-local parameters (never Pyro's global param store).
"""

from __future__ import annotations

import torch
from pyro import poutine
from pyro.infer.autoguide import AutoNormal
from pyro.poutine.util import site_is_subsample
from torch import nn

from pyro_lmmvae.data import Batch
from pyro_lmmvae.models.effects import EffectPlates
from pyro_lmmvae.pyro_module import local_params

__all__ = ["HyperparameterGuide", "hyperparameter_sites"]

EFFECT_SITES = ("fixed_effects", "random_effects")


def hyperparameter_sites(effects: nn.Module, batch: Batch) -> list[str]:
    """The latent sample sites of the model's effects other than the effect sites themselves."""
    with torch.random.fork_rng(devices=[]), torch.no_grad(), local_params():
        trace = poutine.trace(effects).get_trace(batch)
    return [
        name
        for name, site in trace.nodes.items()
        if site["type"] == "sample"
        and not site["is_observed"]
        and not site_is_subsample(site)
        and name not in EFFECT_SITES
    ]


class HyperparameterGuide(nn.Module):
    """:class:`~pyro.infer.autoguide.AutoNormal` over the hyper-parameter sites of ``effects``.

    Parameters
    ----------
    effects : MixedEffects
        The model's effects (with their priors).
    batch : Batch
        A prototype batch to trace the effects once.
    init_scale : float, default 0.1
        Initial scale of the Normal factors (in the unconstrained space).

    Raises
    ------
    ValueError
        If a hyper-parameter site is in the instance plate (a per-instance hyper-parameter,
        which would need an amortized or per-instance factor).
    """

    def __init__(self, effects: nn.Module, batch: Batch, init_scale: float = 0.1) -> None:
        super().__init__()
        self.sites = tuple(hyperparameter_sites(effects, batch))
        blocked = poutine.block(effects, expose=list(self.sites))
        with local_params():
            # The guide's effects share one latent plate per run (EffectPlates): the autoguide
            # enters that plate instead of creating a second one of the same name.
            self.auto = AutoNormal(blocked, init_scale=init_scale, create_plates=_shared_plates)
            with torch.random.fork_rng(devices=[]), torch.no_grad():
                # set up the parameters now, before any optimizer
                self.auto(batch, EffectPlates(batch, effects.latent_dim))
        for name, site in self.auto.prototype_trace.nodes.items():
            if name in self.sites and any(f.name == "instances" for f in site["cond_indep_stack"]):
                raise ValueError(
                    f"the prior samples {name!r} per instance; only global hyper-parameters "
                    "(outside the instance plate) get a variational factor"
                )

    def forward(self, batch: Batch, plates: EffectPlates) -> dict:
        """Sample every hyper-parameter site from q within the run's ``plates``."""
        with local_params():
            return self.auto(batch, plates)


def _shared_plates(batch: Batch, plates: EffectPlates) -> list:
    return [plates.latent]
