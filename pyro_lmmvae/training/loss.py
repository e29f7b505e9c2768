"""The training objectives as :class:`torch.nn.Module` objects.

``ELBOLoss(model, guide)(batch)`` is the negative ELBO estimate of Pyro's
:class:`~pyro.infer.TraceMeanField_ELBO` for one batch (analytic KL for every Normal–Normal pair,
Monte Carlo otherwise), evaluated with module-local parameters. Because it is an ordinary module
whose ``parameters()`` are those of the model and the guide, the same object drives a plain
torch optimizer loop, a Lightning module or DDP (compare Pyro's ``examples/svi_lightning.py``).

:class:`ClosedFormELBOLoss` is the same oLMM objective with the expectation over q(A) of the
latent KL in closed form (spec §2, ``kl="closed_form"``): no draw of A, lower-variance gradients.
For the library's own classes it is computed in torch (fast); for any other model, guide,
likelihood or prior it is Pyro's ELBO on the same model and guide with the expectation read from
the traces (:class:`CollapsedELBOLoss`, :mod:`~pyro_lmmvae.training.collapsed_elbo`), so an
edited or subclassed model changes the loss. :func:`closed_form_loss` picks one; the two agree.
"""

from __future__ import annotations

import warnings

import torch
from pyro.infer import TraceMeanField_ELBO
from torch import nn

from pyro_lmmvae.data import Batch
from pyro_lmmvae.objectives import expected_latent_kl
from pyro_lmmvae.priors import has_pyro_statements
from pyro_lmmvae.pyro_module import local_params
from pyro_lmmvae.training.collapsed_elbo import CollapsedLatentELBO

KL_ESTIMATORS = ("trace_mean_field", "closed_form")
"""How the ELBO's KL terms are estimated: ``kl=`` of :meth:`~pyro_lmmvae.LMMVAE.fit`."""


class ELBOLoss(nn.Module):
    """Negative ELBO of ``(model, guide)`` for a batch, as a differentiable scalar.

    Parameters
    ----------
    model, guide : callable torch.nn.Module
        Pyro model and guide taking a :class:`~pyro_lmmvae.data.Batch`.
    num_particles : int, default 1
        Samples of all latent sites per estimate.
    vectorize_particles : bool, default False
        Draw the particles in one vectorized pass.
    """

    def __init__(
        self,
        model: nn.Module,
        guide: nn.Module,
        num_particles: int = 1,
        vectorize_particles: bool = False,
    ) -> None:
        super().__init__()
        elbo = TraceMeanField_ELBO(
            num_particles=num_particles,
            vectorize_particles=vectorize_particles,
            max_plate_nesting=2,
        )
        self.elbo = elbo(model, guide)

    @property
    def model(self) -> nn.Module:
        """The generative model."""
        return self.elbo.model

    @property
    def guide(self) -> nn.Module:
        """The guide."""
        return self.elbo.guide

    def forward(self, batch: Batch) -> torch.Tensor:
        """Negative ELBO estimate for the batch (per-instance terms scaled by P/B)."""
        with local_params():
            return self.elbo(batch)


class LocalReparamGSNNLoss(nn.Module):
    """Negative GSNN objective of the oLMM-VAE with the local reparameterisation (spec §4).

    Every likelihood term depends on A only through the marginal of ``z_i``, so instead of one
    draw of A per step it draws ``z_i = M x̄_i + sqrt(V (x̄_i ⊙ x̄_i) + sigma_z^2) ⊙ xi_i``
    directly: same objective, lower variance. The effect KLs come from
    :class:`~pyro.infer.TraceMeanField_ELBO` over the effect sites alone (analytic for Normal
    priors)::

        loss = KL(q(A_f) || p(A_f)) + (P/B) sum_p KL(q(u_p) || p(u_p))
               - (P/B) sum_i log p(y_i | z_i)

    Parameters
    ----------
    model : OLMMModel
        A GSNN oLMM model.
    guide : GSNNGuide
        Its guide; with point effects (no q(A)) only the likelihood term remains.
    """

    def __init__(self, model: nn.Module, guide: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.guide = guide
        self.effects_kl = (
            TraceMeanField_ELBO(max_plate_nesting=2)(model.effects, guide.effects)
            if guide.effects is not None
            else None
        )

    def forward(self, batch: Batch) -> torch.Tensor:
        """Negative objective estimate for the batch (per-instance terms scaled by P/B)."""
        with local_params():
            estimates = self.guide.effects if self.guide.effects is not None else self.model.effects
            mean, var = estimates.predictor_moments(batch)
            sigma_z = self.model.latent_scale()
            z = mean + (var + sigma_z.square()).sqrt() * torch.randn_like(mean)
            log_p = self.model.likelihood.log_density(self.model.decode(z, batch), batch.y)
            log_lik = (log_p * batch.mask).sum()
            loss = -batch.scale * log_lik
            if self.effects_kl is not None:
                loss = loss + self.effects_kl(batch)
            return loss


def require_olmm_elbo(model: nn.Module, guide: nn.Module) -> None:
    """Raise unless ``(model, guide)`` is an oLMM (or CVAE / VAE) trained with the ELBO.

    The closed form averages the latent KL over q(A): the GSNN objective has no latent KL, and
    in the sLMM-VAE the effects enter the likelihood instead.
    """
    if getattr(model, "gsnn", False) or getattr(guide, "encoder", None) is None:
        raise ValueError(
            "kl='closed_form' is the oLMM ELBO's expected latent KL; the GSNN objective has "
            "no latent KL (use local_reparam=True for its low-variance loss)"
        )
    if hasattr(guide, "offsets"):
        raise ValueError(
            "kl='closed_form' applies to the oLMM-VAE: in the sLMM-VAE the effects enter "
            "the likelihood through z_i = eta_i + eps_p, so E_q(A) has no closed form; its "
            "default loss already takes KL(q(eps_p) || p(eps_p)) analytically"
        )


class ClosedFormELBOLoss(nn.Module):
    """Negative oLMM ELBO with the expected latent KL in closed form (spec §2).

    With one reparameterised ``z_i ~ q_phi(z_i | y_i)`` per row and no draw of A::

        loss = (P/B) sum_i [ E_q(A) KL(q(z_i) || N(eta_i, sigma_z^2 I)) - log p(y_i | z_i) ]
               + KL(q(A_f) || p(A_f)) + (P/B) sum_p KL(q(u_p) || p(u_p))

    where ``E_q(A) KL_i = ½ Σ_l [log σ_z² − log σ²_il + (σ²_il + (μ_il − (M x̄_i)_l)² +
    (V(x̄_i ⊙ x̄_i))_l)/σ_z² − 1]``. Its expectation equals that of
    :class:`~pyro.infer.TraceMeanField_ELBO` (which draws A once per step and takes the KL given
    the draw); only the Monte Carlo noise of A is gone. Effect-prior KLs are analytic for
    priors with a registered KL (Normal, the learned-scale and spectral priors) and one-draw
    estimates otherwise.

    Pure torch, no Pyro trace: the fast path for the library's own model, guide, likelihoods and
    priors, which :func:`closed_form_loss` picks only for them. Its value equals
    :class:`CollapsedELBOLoss` (the same objective derived from the model's traces) exactly in
    its KL terms and in expectation overall (``tests/math/test_collapsed_elbo.py``), so the model
    stays the source of truth: any other model, guide or prior gets :class:`CollapsedELBOLoss`.

    Parameters
    ----------
    model : OLMMModel
        An oLMM (or CVAE / plain VAE) model trained with the ELBO.
    guide : OLMMGuide
        Its guide: the amortized encoder and q(A) (or no q(A) with point-estimate effects).

    Raises
    ------
    ValueError
        For the sLMM-VAE (A enters its likelihood, so E_q(A) has no closed form there), the
        GSNN objective (no latent KL) and priors that sample hyper-parameters of their own.
    """

    def __init__(self, model: nn.Module, guide: nn.Module) -> None:
        super().__init__()
        require_olmm_elbo(model, guide)
        effects = model.effects
        if guide.effects is not None:
            for name, shape in (
                ("fixed_prior", (effects.latent_dim, effects.n_fixed)),
                ("random_prior", (1, effects.latent_dim, effects.n_random)),
            ):
                with local_params():
                    traced = shape[-1] and has_pyro_statements(getattr(effects, name), shape)
                if traced:
                    raise ValueError(
                        f"kl='closed_form' needs a {name} without Pyro statements of its own; "
                        "this one samples hyper-parameters or adds a factor (which a torch "
                        "loss would drop): use kl='trace_mean_field'"
                    )
        self.model = model
        self.guide = guide

    def effects_kl(self, batch: Batch) -> torch.Tensor:
        """``KL(q(A_f) || p(A_f)) + (P/B) sum_p E_q KL(q(u_p | .) || p(u_p))`` of the batch."""
        priors, q = self.model.effects, self.guide.effects
        total = batch.y.new_zeros(())
        if q.n_fixed:
            total = total + q.fixed_kl(priors.fixed_prior((q.latent_dim, q.n_fixed)))
        if q.n_random:
            shape = (len(batch.instances), q.latent_dim, q.n_random)
            total = total + batch.scale * q.random_kl(priors.random_prior(shape), batch.instances)
        return total

    def forward(self, batch: Batch) -> torch.Tensor:
        """Negative ELBO estimate for the batch (per-instance terms scaled by P/B)."""
        model, guide = self.model, self.guide
        with local_params():
            estimates = guide.effects if guide.effects is not None else model.effects
            mean, var = estimates.predictor_moments(batch)
            loc, scale = guide.encoder.encode(batch)
            z = loc + scale * torch.randn_like(loc)
            latent_kl = expected_latent_kl(loc, scale, mean, var, model.latent_scale()).sum()
            log_p = model.likelihood.log_density(model.decode(z, batch), batch.y)
            loss = batch.scale * (latent_kl - (log_p * batch.mask).sum())
            if guide.effects is not None:
                loss = loss + self.effects_kl(batch)
            return loss


LIBRARY_PACKAGES = ("pyro_lmmvae.",)


def is_library_pair(model: nn.Module, guide: nn.Module) -> bool:
    """Whether model, guide, likelihood and priors are exactly the library's own classes.

    Subclasses and user classes are not: for them only a loss derived from the model's
    traces reflects what they do. The guide may be the oLMM's or the GSNN's.
    """
    from pyro_lmmvae.guides import (  # noqa: PLC0415
        GSNNGuide,
        MeanFieldEffects,
        OLMMGuide,
        StructuredEffects,
    )
    from pyro_lmmvae.models import MixedEffects, OLMMModel, PointEffects  # noqa: PLC0415

    q = getattr(guide, "effects", None)
    effects = getattr(model, "effects", None)
    parts = [model.likelihood]
    if isinstance(guide, OLMMGuide):
        parts.append(guide.encoder)
    if isinstance(effects, MixedEffects):
        parts += [effects.fixed_prior, effects.random_prior]
    return (
        type(model) is OLMMModel
        and type(guide) in (OLMMGuide, GSNNGuide)
        and type(effects) in (MixedEffects, PointEffects)
        and (q is None or (type(q) in (MeanFieldEffects, StructuredEffects) and q.hyper is None))
        and all(type(part).__module__.startswith(LIBRARY_PACKAGES) for part in parts)
    )


def is_library_model(model: nn.Module, guide: nn.Module) -> bool:
    """Whether model, guide, likelihood, effects and priors of any variant (oLMM, sLMM, GSNN,
    CVAE) are the library's own classes, so that the torch objectives of
    :class:`~pyro_lmmvae.inference.VariationalPair` compute what the model's traces would.
    Networks may be anything: those objectives run them."""
    q = getattr(guide, "effects", None)
    effects = getattr(model, "effects", None)
    parts = [model, guide, model.likelihood, effects]
    parts += [getattr(effects, "fixed_prior", None), getattr(effects, "random_prior", None), q]
    return (q is None or getattr(q, "hyper", None) is None) and all(
        type(part).__module__.startswith(LIBRARY_PACKAGES) for part in parts if part is not None
    )


def local_reparam_loss(model: nn.Module, guide: nn.Module) -> nn.Module:
    """The GSNN loss with the local reparameterisation (:class:`LocalReparamGSNNLoss`) for the
    library's own classes; for a subclassed or user model, guide, likelihood or prior, Pyro's
    GSNN objective on the model's traces (:class:`ELBOLoss`, one draw of A per step), with a
    warning: the torch fast path would not run what they change.
    """
    if is_library_pair(model, guide):
        return LocalReparamGSNNLoss(model, guide)
    warnings.warn(
        "local_reparam=True uses the library's own oLMM-VAE GSNN loss, which does not run a "
        "subclassed or user model, guide, likelihood or prior: training with Pyro's GSNN "
        "objective on the model's traces instead (one draw of A per step)",
        UserWarning,
        stacklevel=3,
    )
    return ELBOLoss(model, guide)


def closed_form_loss(model: nn.Module, guide: nn.Module) -> nn.Module:
    """The oLMM ELBO with the latent KL averaged over q(A): the torch fast path for the library's
    own classes (:class:`ClosedFormELBOLoss`), else the loss derived from the model's traces
    (:class:`CollapsedELBOLoss`). Both raise ``ValueError`` for the sLMM-VAE and the GSNN.
    """
    if is_library_pair(model, guide):
        with local_params():
            try:
                return ClosedFormELBOLoss(model, guide)
            except ValueError:
                pass  # e.g. a prior with Pyro statements: only the traced loss keeps them
    return CollapsedELBOLoss(model, guide)


class CollapsedELBOLoss(ELBOLoss):
    """Negative oLMM ELBO with the latent KL averaged over q(A), derived from the model (spec §2).

    :class:`~pyro_lmmvae.training.collapsed_elbo.CollapsedLatentELBO` on the model and guide: the
    same traces as Pyro's ``TraceMeanField_ELBO``, with ``E_q(A) KL(q(z_i) || N(eta_i, σ_z² I))``
    at the latent site and ``E_q(A_f) KL(q(u_p | A_f) || p(u_p))`` at the random effects, both
    read from the traced distributions. With one reparameterised ``z_i`` per row::

        loss = (P/B) sum_i [ E_q(A) KL_i - log p(y_i | z_i) ]
               + KL(q(A_f) || p(A_f)) + (P/B) sum_p E KL(q(u_p | .) || p(u_p))

    Its expectation equals ``TraceMeanField_ELBO``'s; only the Monte Carlo noise of A is gone.
    Every term comes from the model, so an edited or subclassed model, likelihood or prior
    changes this loss as it changes Pyro's.

    Parameters
    ----------
    model : OLMMModel
        An oLMM (or CVAE / plain VAE) model trained with the ELBO.
    guide : OLMMGuide
        Its guide: the amortized encoder and q(A) (or no q(A) with point-estimate effects).
    effect_kl : bool, default True
        Include the global sites' KL terms (False: the per-row objective of held-out rows).

    Raises
    ------
    ValueError
        For the sLMM-VAE (A enters its likelihood through z_i = eta_i + eps_p, so there is no
        latent KL to average) and the GSNN objective (no latent KL).
    """

    def __init__(self, model: nn.Module, guide: nn.Module, effect_kl: bool = True) -> None:
        require_olmm_elbo(model, guide)
        nn.Module.__init__(self)
        self.elbo = CollapsedLatentELBO(effect_kl=effect_kl)(model, guide)
