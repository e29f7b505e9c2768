"""Probes of the effects' q: the mean and variance of the latent site's location under q(A).

The latent site's prior is ``Normal(eta(A), sigma)`` with ``eta`` affine in the effect sites (the
latent LMM). ``E η`` and ``Var η`` under the guide's q(A) come from one extra run of the guide's
effect sites and of the model up to the latent site, vectorized over ``1 + Σ columns`` probes
along a plate of their own. Probe 0 sets every effect site to its mean; probe ``1 + j`` moves
column j of one effect site by one unit of the guide's noise (``loc + scale_tril e_j``), for every
row of the site at once. Because ``eta`` is affine, ``eta(probe) − eta(mean)`` is that column's
share of each entry's standard deviation, and ``Var η = Σ_j (eta(probe_j) − eta(mean))²``
exactly, provided each entry of ``eta`` depends on one entry per column of each site (a latent
dimension on its own row of A_f, a row on its own instance's u_p: the plates' meaning).
:func:`predictor_moments` returns them; :func:`check_collapsible` verifies the affine structure
on a batch. :class:`~pyro_lmmvae.training.collapsed_elbo.CollapsedLatentELBO` reads them.
"""

from __future__ import annotations

import pyro
import torch
from pyro import poutine
from pyro.poutine.messenger import Messenger
from pyro.poutine.runtime import NonlocalExit

__all__ = ["check_collapsible", "predictor_moments"]

EFFECT_SITES = ("fixed_effects", "random_effects")
LATENT_SITE = "z"
PROBE_PLATE = "_effect_probes"
MAX_PLATE_NESTING = 2  # the instance and latent plates; the probes use the next dim left


class _ProbesDone(Exception):
    """Raised once the guide has sampled every effect site: the rest of the guide is not needed."""


def _base(fn):
    """The distribution under Independent / expanded wrappers."""
    while hasattr(fn, "base_dist"):
        fn = fn.base_dist
    return fn


def _shifted(fn, noise: torch.Tensor) -> torch.Tensor:
    """``mean + scale_tril @ noise`` (``mean + sd * noise`` for a diagonal Normal)."""
    tril = getattr(_base(fn), "scale_tril", None)
    if tril is not None:
        return fn.mean + (tril @ noise.unsqueeze(-1)).squeeze(-1)
    return fn.mean + fn.stddev * noise


class _SetEffects(Messenger):
    """Set the effect sites of a run: probes of the guide's q, or given values.

    Without ``values`` (a guide run) each effect site gets, along the probe plate, its mean
    (probe 0) and its mean moved by one unit of noise in one column (probe ``1 + offset + j``
    moves column j), and the run stops once every site is set. With ``values`` (a model run,
    or a guide run in :func:`check_collapsible`) the sites take those values.
    """

    def __init__(
        self, offsets: dict[str, int], values: dict | None = None, noise=None, stop: bool = True
    ) -> None:
        super().__init__()
        self.stop = stop
        self.offsets = offsets  # site name -> offset of its first column among the probes
        self.values = {} if values is None else dict(values)
        self.fixed_values = values is not None
        self.noise = noise  # site name -> noise of every probe (check_collapsible)
        self.fns: dict[str, object] = {}

    def _pyro_sample(self, msg) -> None:
        name = msg["name"]
        if name not in self.offsets:
            return
        fn = msg["fn"]
        self.fns[name] = fn
        if self.noise is not None:
            msg["value"] = _shifted(fn, self.noise[name](fn.mean))
        elif self.fixed_values:
            msg["value"] = self.values[name]
        else:
            msg["value"] = _shifted(fn, self._unit_noise(fn, self.offsets[name]))
        self.values[name] = msg["value"]
        msg["done"] = True

    def _pyro_post_sample(self, msg) -> None:
        if self.stop and not self.fixed_values and set(self.values) == set(self.offsets):
            raise _ProbesDone

    @staticmethod
    def _unit_noise(fn, offset: int) -> torch.Tensor:
        mean = fn.mean
        axis = mean.dim() - len(fn.event_shape) - (MAX_PLATE_NESTING + 1)  # the probe plate
        noise = torch.zeros_like(mean)
        for j in range(fn.event_shape[-1]):
            index = [slice(None)] * mean.dim()
            index[axis], index[-1] = 1 + offset + j, j
            noise[tuple(index)] = 1.0
        return noise


def _effect_columns(guide_trace) -> dict[str, int]:
    """Effect sites of a guide trace and the number of columns (event size) of each."""
    columns = {}
    for name in EFFECT_SITES:
        site = guide_trace.nodes.get(name)
        if site is None or site["type"] != "sample" or site["is_observed"]:
            continue
        if len(site["fn"].event_shape) != 1:
            return {}  # an entry-wise site: not the layout this estimator reads
        columns[name] = int(site["fn"].event_shape[0])
    return columns


def _probe_plate(n_probes: int) -> pyro.plate:
    return pyro.plate(PROBE_PLATE, n_probes, dim=-(MAX_PLATE_NESTING + 1))


def _run_guide(guide, setter: _SetEffects, n_probes: int, args, kwargs) -> None:
    with poutine.block(), setter, _probe_plate(n_probes):
        try:
            guide(*args, **kwargs)
        except _ProbesDone:
            pass


def _latent_location(model, guide_trace, values: dict, offsets, n_probes: int, args, kwargs):
    """The location of the model's latent site with the effect sites set to ``values``.

    Other sites before it (hyper-parameters of the priors) take their values in
    ``guide_trace``, one draw shared by the probes, so priors written for one draw still work.
    """
    escape = poutine.escape(escape_fn=lambda msg: msg["name"] == LATENT_SITE)
    replay = poutine.replay(trace=guide_trace)
    site = None
    with poutine.block(), _SetEffects(offsets, values), replay, _probe_plate(n_probes), escape:
        try:
            model(*args, **kwargs)
        except NonlocalExit as stop:
            site = stop.site
    if site is None or type(_base(site["fn"])).__name__ != "Normal":
        return None
    return site["fn"].mean


def _offsets(guide_trace) -> tuple[dict[str, int], int]:
    offsets, total = {}, 0
    for name, n in _effect_columns(guide_trace).items():
        offsets[name] = total
        total += n
    return offsets, 1 + total


def predictor_moments(model, guide, guide_trace, *args, **kwargs):
    """``(E η, Var η, fns)`` of the latent site's location under the guide's q(A), or None.

    ``guide_trace`` (any run of the guide) tells which effect sites there are; ``fns`` are the
    guide's distributions of the effect sites along the probes (a site conditioned on another,
    like the structured guide's random effects, has one location per probe). None when the
    guide samples no effect sites or the model's latent site is not Normal.
    """
    offsets, n_probes = _offsets(guide_trace)
    if not offsets:
        return None
    probes = _SetEffects(offsets)
    _run_guide(guide, probes, n_probes, args, kwargs)
    loc = _latent_location(model, guide_trace, probes.values, offsets, n_probes, args, kwargs)
    if loc is None:
        return None
    shift = loc[1:] - loc[:1]  # each column's share of each entry's standard deviation
    return loc[0], shift.square().sum(0), probes.fns


def check_collapsible(model, guide, *args, rtol: float = 1e-4, **kwargs) -> bool:
    """Whether the latent location is affine in the effect sites' noise, checked on a batch.

    Draws one standard-normal value per column of each effect site, shared by all of the
    site's rows, and compares the latent location at that draw with the probes' prediction
    ``eta(mean) + sum_j c_j (eta(probe_j) - eta(mean))``, which is exact for an affine model.
    """
    with poutine.block():
        guide_trace = poutine.trace(guide).get_trace(*args, **kwargs)
    offsets, n_probes = _offsets(guide_trace)
    if not offsets:
        return False
    probes = _SetEffects(offsets)
    _run_guide(guide, probes, n_probes, args, kwargs)
    loc = _latent_location(model, guide_trace, probes.values, offsets, n_probes, args, kwargs)
    if loc is None:
        return False
    draws = {name: torch.randn(n, dtype=loc.dtype, device=loc.device)
             for name, n in _effect_columns(guide_trace).items()}  # fmt: skip
    noise = {name: (lambda mean, c=c: c.expand_as(mean)) for name, c in draws.items()}
    drawn = _SetEffects(offsets, noise=noise)
    _run_guide(guide, drawn, n_probes, args, kwargs)
    at_draw = _latent_location(model, guide_trace, drawn.values, offsets, n_probes, args, kwargs)
    coefficients = torch.cat([draws[name] for name in offsets])
    shift = loc[1:] - loc[:1]
    predicted = loc[0] + torch.einsum("r,r...->...", coefficients, shift)
    scale = loc.abs().max().clamp(min=1.0)
    return bool(((at_draw[0] - predicted).abs() <= rtol * scale).all())
