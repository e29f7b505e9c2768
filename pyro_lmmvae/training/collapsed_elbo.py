"""Pyro's mean-field ELBO with the latent site's KL averaged over the effects' q, read from traces.

:class:`~pyro.infer.TraceMeanField_ELBO` draws the effects A once per step and takes
``KL(q(z_i) || p(z_i | A))`` at that draw. When the latent site's prior is
``Normal(eta(A), sigma)`` with ``eta`` affine in the effect sites (the latent LMM), the average
over q(A) has a closed form::

    E_q(A) KL_i = ½ Σ_l [log σ² − log s² + (s² + (μ − E η)² + Var η) / σ² − 1]

:class:`CollapsedLatentELBO` computes it from the model and the guide themselves, never from a
second copy of the model in torch: ``E η`` and ``Var η`` come from one extra run of the guide's
effect sites and of the model up to the latent site, vectorized over ``1 + Σ columns`` probes.
Probe 0 sets every effect site to its mean; probe ``1 + j`` moves column j of one effect site by
one unit of the guide's noise (``loc + scale_tril e_j``), for every row of the site at once.
Because ``eta`` is affine, ``eta(probe) − eta(mean)`` is that column's share of each entry's
standard deviation, and ``Var η = Σ_j (eta(probe_j) − eta(mean))²`` exactly, provided each
entry of ``eta`` depends on one entry per column of each site (a latent dimension on its own
row of A_f, a row on its own instance's u_p: the plates' meaning). :func:`check_collapsible`
verifies the affine structure on a batch. Everything else (the likelihood, the effect-prior KLs,
hyper-parameter sites, sLMM offsets) is Pyro's ``TraceMeanField_ELBO`` on the same traces, so
editing or subclassing the model or a prior changes this loss too.
"""

from __future__ import annotations

import warnings
import weakref

import pyro
import torch
from pyro import poutine
from pyro.distributions.util import scale_and_mask
from pyro.infer import TraceMeanField_ELBO
from pyro.poutine.messenger import Messenger
from pyro.poutine.runtime import NonlocalExit
from pyro.poutine.util import site_is_subsample
from torch.distributions import kl_divergence

from pyro_lmmvae.objectives import as_multivariate_normal

__all__ = ["CollapsedLatentELBO", "check_collapsible", "predictor_moments"]

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


class CollapsedLatentELBO(TraceMeanField_ELBO):
    """``TraceMeanField_ELBO`` with ``E_q(A) KL(q(z) || p(z | A))`` at the latent site.

    Parameters
    ----------
    effect_kl : bool, default True
        Include the KL terms of the global sites (effects and their hyper-parameters); False
        gives the per-row objective of held-out rows (validation).

    Notes
    -----
    One particle (one draw of z per row). Where the latent site's prior is not Normal, or the
    guide samples no effect sites, the latent KL is Pyro's usual one at the drawn effects.
    """

    def __init__(self, effect_kl: bool = True) -> None:
        super().__init__(num_particles=1, max_plate_nesting=MAX_PLATE_NESTING)
        self.effect_kl = effect_kl
        # per guide (weakly: a guide that is gone takes its entry along)
        self._layouts: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    def differentiable_loss(self, model, guide, *args, **kwargs) -> torch.Tensor:
        layout = self._layouts.get(guide)
        if layout is not None and layout[0]:
            loss = self._one_pass(model, guide, layout, args, kwargs)
            if loss is not None:
                return loss
        if layout is None:  # first call with this guide: is the latent location affine?
            layout = self._layout(guide, args, kwargs)
            if layout[0] and not check_collapsible(model, guide, *args, **kwargs):
                warnings.warn(
                    "the model's latent location is not affine in its effect sites, so its KL "
                    "cannot be averaged over q(A) in closed form: it is taken at one draw of A "
                    "(Pyro's TraceMeanField_ELBO)",
                    UserWarning,
                    stacklevel=2,
                )
                layout = ({}, 0)
            self._layouts[guide] = layout
            if layout[0]:
                loss = self._one_pass(model, guide, layout, args, kwargs)
                if loss is not None:
                    return loss
        model_trace, guide_trace = next(self._get_traces(model, guide, args, kwargs))
        moments = None
        if layout[0]:
            moments = predictor_moments(model, guide, guide_trace, *args, **kwargs)
        return -self._elbo(model_trace, guide_trace, moments)

    @staticmethod
    def _layout(guide, args, kwargs) -> tuple[dict[str, int], int]:
        with poutine.block():
            guide_trace = poutine.trace(guide).get_trace(*args, **kwargs)
        return _offsets(guide_trace)

    def _one_pass(self, model, guide, layout, args, kwargs) -> torch.Tensor | None:
        """The same loss from one run of the guide and one of the model, along the probes.

        The guide sets its effect sites to the probes and draws every other site once (one z
        per row, shared by the probes); the model runs on those values, so the decoder sees one
        z and its likelihood is the same on every probe. None (use the general path) when an
        observed site depends on the probes (the effects enter the likelihood, as in the
        sLMM-VAE) or an effect prior has no Gaussian form.
        """
        offsets, n_probes = layout
        with poutine.trace() as guide_tape:
            with _SetEffects(offsets, stop=False), _probe_plate(n_probes), _OneDraw(offsets):
                guide(*args, **kwargs)
        guide_trace = guide_tape.trace
        with poutine.trace() as model_tape:
            with poutine.replay(trace=guide_trace), _probe_plate(n_probes):
                model(*args, **kwargs)
        model_trace = model_tape.trace
        elbo = 0.0
        for name, site in model_trace.nodes.items():
            if site["type"] != "sample" or site_is_subsample(site):
                continue
            fn = site["fn"]
            if site["is_observed"]:
                log_p = scale_and_mask(fn.log_prob(site["value"]), site["scale"], site["mask"])
                if _probed(fn, n_probes):
                    if bool((log_p != log_p[..., :1, :, :]).any()):
                        return None  # the likelihood depends on the effects
                    log_p = log_p[..., 0, :, :]
                elbo = elbo + log_p.sum()
                continue
            if not self.effect_kl and not _local_site(site):
                continue
            guide_site = guide_trace.nodes[name]
            q = guide_site["fn"]
            if name == LATENT_SITE:
                loc = fn.mean
                moments = (loc[0], (loc[1:] - loc[:1]).square().sum(0))
                kl = _expected_normal_kl(q, fn, *moments)
            elif name in offsets:
                kl = _expected_effect_kl(q, fn)
                if kl is None:
                    return None
            else:
                kl = _site_kl(q, fn, guide_site["value"])
            kl = scale_and_mask(kl, guide_site["scale"], guide_site["mask"])
            if name not in offsets and name != LATENT_SITE and _probed(q, n_probes):
                kl = kl[..., 0, :, :]
            elbo = elbo - kl.sum()
        return -elbo

    def loss(self, model, guide, *args, **kwargs) -> float:
        with torch.no_grad():
            return float(self.differentiable_loss(model, guide, *args, **kwargs))

    def _elbo(self, model_trace, guide_trace, moments) -> torch.Tensor:
        elbo = 0.0
        for name, model_site in model_trace.nodes.items():
            if model_site["type"] != "sample":
                continue
            if model_site["is_observed"]:
                elbo = elbo + model_site["log_prob_sum"]
                continue
            if not self.effect_kl and not _local_site(model_site):
                continue
            guide_site = guide_trace.nodes[name]
            kl = None
            if name == LATENT_SITE and moments is not None:
                kl = _expected_normal_kl(guide_site["fn"], model_site["fn"], *moments[:2])
            elif moments is not None and name in moments[2]:
                kl = _expected_effect_kl(moments[2][name], model_site["fn"])
            if kl is None:
                try:
                    kl = kl_divergence(guide_site["fn"], model_site["fn"])
                except NotImplementedError:
                    entropy = guide_site["score_parts"].entropy_term
                    elbo = elbo + model_site["log_prob_sum"] - entropy.sum()
                    continue
            elbo = elbo - scale_and_mask(kl, guide_site["scale"], guide_site["mask"]).sum()
        return elbo


def _probed(fn, n_probes: int) -> bool:
    """Whether a site's distribution was broadcast along the probe plate."""
    shape = fn.batch_shape
    return len(shape) > MAX_PLATE_NESTING and shape[-(MAX_PLATE_NESTING + 1)] == n_probes


def _site_kl(q, p, value) -> torch.Tensor:
    """``KL(q || p)`` where registered, else ``log q(value) - log p(value)`` (one draw)."""
    try:
        return kl_divergence(q, p)
    except NotImplementedError:
        return q.log_prob(value) - p.log_prob(value)


class _OneDraw(Messenger):
    """Draw the guide's non-effect sites once, before the probe plate broadcasts them."""

    def __init__(self, effect_sites) -> None:
        super().__init__()
        self.effect_sites = set(effect_sites)

    def _pyro_sample(self, msg) -> None:
        if msg["name"] in self.effect_sites or msg["is_observed"] or msg["value"] is not None:
            return
        fn = msg["fn"]
        msg["value"] = fn.rsample() if fn.has_rsample else fn.sample()
        msg["done"] = True


def _local_site(site) -> bool:
    """A latent of the rows or of the instances' noise (not an effect or hyper-parameter)."""
    return site["name"] not in EFFECT_SITES and any(
        frame.name in ("obs", "instances") for frame in site["cond_indep_stack"]
    )


def _expected_effect_kl(probed, prior):
    """``E KL(q(a | other effects) || p(a))`` of an effect site, or None to use Pyro's KL.

    ``probed`` is the guide's distribution of the site along the probes: its location may move
    with the other effect sites (probe 0: all at their means). For a Gaussian q and prior,
    ``E KL(N(m + d, S) || N(m0, P)) = KL(N(m, S) || N(m0, P)) + ½ tr(P⁻¹ Cov d)``, with
    ``Cov d = Σ_j d_j d_jᵀ`` over the probes' shifts ``d_j``. None when the prior is not
    Gaussian.
    """
    prior_mvn = as_multivariate_normal(prior)
    tril = getattr(_base(probed), "scale_tril", None)
    if prior_mvn is None or len(probed.event_shape) != 1:
        return None
    loc = probed.mean  # (n_probes, ..., k)
    if tril is None:
        tril = torch.diag_embed(probed.stddev)
    at_mean = torch.distributions.MultivariateNormal(loc[0], scale_tril=tril[0])
    kl = kl_divergence(at_mean, prior_mvn)
    prior_tril = prior_mvn.scale_tril
    if kl.dim() == len(probed.batch_shape):  # the prior was broadcast along the probes too
        kl, prior_tril = kl[0], prior_tril[0]
    shift = loc[1:] - loc[:1]
    if bool((shift != 0).any()):
        solved = torch.linalg.solve_triangular(
            prior_tril.expand(*shift.shape, shift.shape[-1]),
            shift.unsqueeze(-1),
            upper=False,
        )
        kl = kl + 0.5 * solved.square().sum((0, -1, -2))
    return kl.reshape(kl.shape[-len(probed.batch_shape) + 1 :]) if kl.dim() else kl


def _expected_normal_kl(q, p, eta_mean, eta_var) -> torch.Tensor:
    """``E KL(N(μ, s²) || N(η, σ²))`` over η with the given mean and variance, per row."""
    q_base, p_base = _base(q), _base(p)
    mu, s, sigma = q_base.loc, q_base.scale, p_base.scale
    if sigma.dim() == eta_mean.dim() + 1:
        sigma = sigma[0]  # broadcast along the probes with eta: the same on every probe
    var, var_z = s.square(), sigma.square()
    sq = (mu - eta_mean).square() + eta_var
    kl = 0.5 * (torch.log(var_z) - torch.log(var) + (var + sq) / var_z - 1.0)
    kl = kl.expand(torch.broadcast_shapes(kl.shape, mu.shape)).reshape(mu.shape)
    return kl.sum(-1) if q.event_shape else kl
