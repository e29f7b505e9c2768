"""Assemble the model and guide of each variant × objective from a design and networks.

=========  ===================================================  ===============================
variant    latent prior and noise                               guide (ELBO)
=========  ===================================================  ===============================
``olmm``   z_i ~ N(eta_i, sigma_z^2 I), q(A) mean-field          amortized q(z_i | y_i)
``slmm``   z_i = eta_i + eps_p, A a point estimate by default    group encoder q(eps_p | y_p)
``cvae``   z_i ~ N(0, sigma_z^2 I); networks see x               q(z_i | y_i, x_i)
=========  ===================================================  ===============================

A plain VAE is ``olmm`` with the empty formula ``"~ 0"``. With ``objective="gsnn"`` the guide
holds only q(A) (or nothing) and the model draws z from its prior (spec §4).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Literal

from torch import nn

from pyro_lmmvae.architectures import build_networks
from pyro_lmmvae.design import Design
from pyro_lmmvae.guides import (
    GSNNGuide,
    MeanFieldEffects,
    OLMMGuide,
    SLMMGuide,
    StructuredEffects,
)
from pyro_lmmvae.inference import VariationalPair
from pyro_lmmvae.models import (
    OBJECTIVES,
    LatentScale,
    Likelihood,
    MixedEffects,
    OLMMModel,
    PointEffects,
    SLMMModel,
    make_likelihood,
)
from pyro_lmmvae.networks import GaussianEncoder

Variant = Literal["olmm", "slmm", "cvae"]
Objective = Literal["elbo", "gsnn"]
VARIANTS = ("olmm", "slmm", "cvae")
EFFECTS_GUIDES = {"mean_field": MeanFieldEffects, "structured": StructuredEffects}
"""Variational families of Bayesian effects: ``effects_guide=`` of :class:`~pyro_lmmvae.LMMVAE`."""


@dataclass(frozen=True)
class VariantOptions:
    """How to build a model: the variant, its objective and their options.

    Attributes
    ----------
    variant : {"olmm", "slmm", "cvae"}
    objective : {"elbo", "gsnn"}
    bayesian_effects : bool
        Mean-field q(A) with priors (oLMM default) or point estimates without a prior term
        (sLMM default).
    pooling : {"precision", "mean"}
        sLMM group-encoder pooling.
    include_prior_precision : bool
        sLMM: add sigma_z^-2 to the pooled precision.
    local_reparam : bool
        GSNN-oLMM: local reparameterisation of z.
    effects_guide : {"mean_field", "structured"}
        The variational family of Bayesian effects: mean-field q(A_f) q(u_p), or full-rank
        q(A_f) with q(u_p | A_f) linear in A_f (:class:`~pyro_lmmvae.guides.StructuredEffects`).
    """

    variant: Variant = "olmm"
    objective: Objective = "elbo"
    bayesian_effects: bool = True
    pooling: str = "precision"
    include_prior_precision: bool = False
    local_reparam: bool = False
    effects_guide: str = "mean_field"

    def __post_init__(self) -> None:
        if self.effects_guide not in EFFECTS_GUIDES:
            raise ValueError(
                f"effects_guide must be one of {tuple(EFFECTS_GUIDES)}, got {self.effects_guide!r}"
            )
        if self.effects_guide != "mean_field" and not self.bayesian_effects:
            raise ValueError(
                f"effects_guide={self.effects_guide!r} is a posterior over Bayesian effects, but A "
                "is a point estimate here (the sLMM default): pass bayesian_effects=True"
            )
        if self.variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, got {self.variant!r}")
        if self.objective not in OBJECTIVES:
            raise ValueError(f"objective must be one of {OBJECTIVES}, got {self.objective!r}")
        if self.local_reparam and (self.variant == "slmm" or self.objective != "gsnn"):
            raise ValueError(
                "local_reparam applies to objective='gsnn' with variant 'olmm' or 'cvae' only"
            )
        if self.variant != "slmm" and (self.pooling != "precision" or self.include_prior_precision):
            raise ValueError("pooling and include_prior_precision apply to variant='slmm' only")


def build_pair(
    design: Design,
    obs_dim: int,
    latent_dim: int,
    options: VariantOptions,
    *,
    encoder: nn.Module | None = None,
    decoder: nn.Module | None = None,
    likelihood: str | Likelihood = "gaussian",
    noise_scale: float | None = None,
    latent_scale: float = 1.0,
    learn_latent_scale: bool = False,
    fixed_prior=None,
    random_prior=None,
    mask_channel: bool = False,
    network: str = "mlp",
) -> VariationalPair:
    """The model and guide of ``options.variant`` × ``options.objective`` for a design.

    See :class:`~pyro_lmmvae.LMMVAE` for the parameters.
    """
    L, d = latent_dim, design
    conditional = options.variant == "cvae"
    if conditional and d.n_random:
        raise ValueError(
            "variant='cvae' conditions its networks on the fixed-effect columns; the formula's "
            f"random terms {list(d.random_terms)} have no place in it: drop them"
        )
    if not options.bayesian_effects and (fixed_prior is not None or random_prior is not None):
        raise ValueError(
            "fixed_prior/random_prior need Bayesian effects, but A is a point estimate here "
            "(the sLMM default): pass bayesian_effects=True"
        )
    # Each model gets its own prior objects: a prior with learned hyper-parameters (or bound to
    # this design's basis columns) must not be shared with another model built from it.
    fixed_prior, random_prior = copy.deepcopy(fixed_prior), copy.deepcopy(random_prior)
    # The CVAE prior is N(0, sigma_z^2 I): its covariates feed the networks, not the prior.
    n_fixed = 0 if conditional else d.n_fixed
    n_covariates = d.n_fixed if conditional else 0
    if options.bayesian_effects:
        effects = MixedEffects(
            L,
            n_fixed,
            d.n_random,
            d.n_groups,
            fixed_prior,
            random_prior,
            fixed_columns=d.fixed_bases if n_fixed else (),
            random_columns=d.random_bases,
            random_blocks=d.random_blocks,
        )
        q_effects = EFFECTS_GUIDES[options.effects_guide](L, n_fixed, d.n_random, d.n_groups)
    else:
        effects = PointEffects(L, n_fixed, d.n_random, d.n_groups)
        q_effects = None
    default_net, default_dec = build_networks(
        network, obs_dim, L, mask_channel=mask_channel, n_covariates=n_covariates
    )
    model_class = SLMMModel if options.variant == "slmm" else OLMMModel
    model = model_class(
        effects,
        decoder or default_dec,
        make_likelihood(likelihood, obs_dim, noise_scale),
        LatentScale(latent_scale, learn_latent_scale),
        objective=options.objective,
        conditional=conditional,
    )
    if options.objective == "gsnn":
        if encoder is not None:
            raise ValueError(f"objective='gsnn' uses no encoder ({GSNN_NO_ENCODER})")
        return VariationalPair(model, GSNNGuide(q_effects), options.local_reparam)
    network = encoder or default_net
    gaussian_encoder = GaussianEncoder(network, L, mask_channel, conditional)
    if options.variant == "slmm":
        guide = SLMMGuide(
            q_effects,
            q_effects if q_effects is not None else effects,
            gaussian_encoder,
            model.latent_scale,
            options.pooling,
            options.include_prior_precision,
        )
    else:
        guide = OLMMGuide(q_effects, gaussian_encoder)
    return VariationalPair(model, guide, options.local_reparam)


GSNN_NO_ENCODER = "q(z | y, x) is the prior p(z | x)"
