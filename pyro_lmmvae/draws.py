"""Draws of the effect sites, prior or posterior, through :class:`pyro.infer.Predictive`.

The model's effects (:class:`~pyro_lmmvae.models.MixedEffects`) and the guide's effect factors
(:class:`~pyro_lmmvae.guides.MeanFieldEffects`, :class:`~pyro_lmmvae.guides.StructuredEffects`)
are Pyro programs of a batch: they sample ``fixed_effects`` (in the latent plate) and the
``random_effects`` of the batch's instances (in the instance and latent plates), and a
hierarchical prior or its guide samples hyper-parameter sites first. Running such a program
under :class:`~pyro.infer.Predictive` draws from p (the model's effects) or from q (the guide's),
jointly where q is joint, so that the draws :meth:`~pyro_lmmvae.LMMVAE.effects` and
:meth:`~pyro_lmmvae.LMMVAE.latent_trajectories` report are those of the program a user edits or
subclasses. One vectorized run draws them all; a program that samples hyper-parameters (written
for a single draw) is run once per draw.

Point estimates (the sLMM default) have no sites: :func:`point_draws` repeats them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from pyro import poutine
from pyro.infer import Predictive
from torch import nn

from pyro_lmmvae.data import Batch
from pyro_lmmvae.guides.hyper import hyperparameter_sites
from pyro_lmmvae.models.effects import FIXED_SITE, RANDOM_SITE
from pyro_lmmvae.pyro_module import local_params

__all__ = ["EffectDraws", "effect_draws", "group_batch", "point_draws"]


@dataclass
class EffectDraws:
    """Draws of one effects program, on the CPU.

    Attributes
    ----------
    fixed : torch.Tensor or None
        A_f, (S, L, Q_f); None without fixed effects.
    random : torch.Tensor or None
        The u_p of the batch's instances, (S, B, L, k); None without random effects.
    hyper : dict
        ``{site: (values (S, *site shape), dims)}`` of the hyper-parameter sites; ``dims`` names
        each dim of the site (``"latent"`` for the latent plate, else ``"<site>_dim_<i>"``).
    hierarchical : bool
        Whether the program sampled hyper-parameters (and so was run once per draw).
    """

    fixed: torch.Tensor | None
    random: torch.Tensor | None
    hyper: dict[str, tuple[torch.Tensor, list[str]]]
    hierarchical: bool


def group_batch(instances: torch.Tensor, n_instances_total: int, effects: nn.Module) -> Batch:
    """A batch of the given instances without rows: what an effects program needs.

    Parameters
    ----------
    instances : torch.Tensor
        Global indices of the instances, (B,).
    n_instances_total : int
        P, the number of training instances.
    effects : nn.Module
        The effects (gives Q_f and k).
    """
    device = instances.device
    empty = torch.zeros(0, device=device)
    return Batch(
        x=empty.reshape(0, effects.n_fixed),
        w=empty.reshape(0, effects.n_random),
        y=empty.reshape(0, 0),
        mask=torch.zeros(0, 0, dtype=torch.bool, device=device),
        instances=instances,
        local=torch.zeros(0, dtype=torch.long, device=device),
        scale=1.0,
        n_instances_total=n_instances_total,
    )


def effect_draws(program: nn.Module, batch: Batch, num_draws: int, seed: int) -> EffectDraws:
    """Draw the effect sites of ``program`` (model effects or guide factors) on ``batch``.

    Parameters
    ----------
    program : nn.Module
        Samples ``fixed_effects`` / ``random_effects`` (and maybe hyper-parameters) given a batch.
    batch : Batch
        Gives the instances whose random effects are drawn (all seen in training for a guide).
    num_draws : int
        S.
    seed : int
        Seed of the draws; the caller's global RNG state is restored.

    Returns
    -------
    EffectDraws
    """
    n_latent = program.latent_dim
    device = batch.instances.device
    cuda = [device.index or 0] if device.type == "cuda" else []
    sites = [s for s, n in ((FIXED_SITE, program.n_fixed), (RANDOM_SITE, program.n_random)) if n]
    with torch.random.fork_rng(devices=cuda), local_params(), torch.no_grad():
        hyper_sites = hyperparameter_sites(program, batch)
        trace = poutine.trace(program).get_trace(batch) if hyper_sites else None
        torch.manual_seed(seed)
        # one vectorized run, or one run per draw for a program written for a single draw
        predictive = Predictive(
            program,
            num_samples=num_draws,
            parallel=not hyper_sites,
            return_sites=sites + hyper_sites,
        )
        samples = {name: value.detach().cpu() for name, value in predictive(batch).items()}
    fixed = random = None
    if program.n_fixed:
        fixed = samples[FIXED_SITE].reshape(num_draws, n_latent, program.n_fixed)
    if program.n_random:
        shape = (num_draws, len(batch.instances), n_latent, program.n_random)
        random = samples[RANDOM_SITE].reshape(shape)
    hyper = {}
    for name in hyper_sites:
        site = trace.nodes[name]
        values = samples[name].reshape(num_draws, *site["value"].shape)
        plates = {frame.dim: frame.name for frame in site["cond_indep_stack"]}
        ndim = values.dim() - 1
        hyper[name] = (values, [plates.get(i - ndim, f"{name}_dim_{i}") for i in range(ndim)])
    return EffectDraws(fixed, random, hyper, bool(hyper_sites))


def point_draws(estimates: nn.Module, groups: torch.Tensor, num_draws: int) -> EffectDraws:
    """Point estimates of A_f and of the u_p of ``groups`` repeated ``num_draws`` times."""
    fixed = random = None
    with torch.no_grad():
        if estimates.n_fixed:
            loc = estimates.fixed_loc.detach().cpu()
            fixed = loc.expand(num_draws, *loc.shape)
        if estimates.n_random:
            loc = estimates.random_moments(groups)[0].detach().cpu()
            random = loc.expand(num_draws, *loc.shape)
    return EffectDraws(fixed, random, {}, False)
