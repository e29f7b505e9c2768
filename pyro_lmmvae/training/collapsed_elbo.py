"""Pyro's mean-field ELBO with the latent site's KL averaged over the effects' q, read from traces.

:class:`~pyro.infer.TraceMeanField_ELBO` draws the effects A once per step and takes
``KL(q(z_i) || p(z_i | A))`` at that draw. When the latent site's prior is
``Normal(eta(A), sigma)`` with ``eta`` affine in the effect sites (the latent LMM), the average
over q(A) has a closed form::

    E_q(A) KL_i = ½ Σ_l [log σ² − log s² + (s² + (μ − E η)² + Var η) / σ² − 1]

:class:`CollapsedLatentELBO` computes it from the model and the guide themselves, never from a
second copy of the model in torch: ``E η`` and ``Var η`` come from one extra run of the guide's
effect sites and of the model up to the latent site, vectorized over probes of the effects' q
(:mod:`~pyro_lmmvae.training.effect_probes`, where :func:`check_collapsible` verifies the affine
structure on a batch). Everything else (the likelihood, the effect-prior KLs, hyper-parameter
sites, sLMM offsets) is Pyro's ``TraceMeanField_ELBO`` on the same traces, so editing or
subclassing the model or a prior changes this loss too.
"""

from __future__ import annotations

import warnings
import weakref

import torch
from pyro import poutine
from pyro.distributions.util import scale_and_mask
from pyro.infer import TraceMeanField_ELBO
from pyro.poutine.messenger import Messenger
from pyro.poutine.util import site_is_subsample
from torch.distributions import kl_divergence

from pyro_lmmvae.objectives import as_multivariate_normal
from pyro_lmmvae.training.effect_probes import (
    EFFECT_SITES,
    LATENT_SITE,
    MAX_PLATE_NESTING,
    _base,
    _offsets,
    _probe_plate,
    _SetEffects,
    check_collapsible,
    predictor_moments,
)

__all__ = ["CollapsedLatentELBO", "check_collapsible", "predictor_moments"]


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
