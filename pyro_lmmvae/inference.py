"""What a fitted model computes, for every variant × objective (spec §5).

:class:`VariationalPair` holds a Pyro model and its guide and derives from them:

=================  ==============================  =====================================
model              impute training row i           predict at x*, w* of instance p
=================  ==============================  =====================================
oLMM (ELBO)        g(mu_phi(y~_i))                 g(M_f x* + E[u_p] w*)
sLMM (ELBO)        g(eta_i + m_p)                  g(A_f x* + u_p w* + m_p)
GSNN (either)      g(M x̄_i)  (covariate fill-in)   g(M_f x* + E[u_p] w*)   (eps = 0)
VAE (``~ 0``)      g(mu_phi(y~_i))                 g(0)  (the prior mean)
CVAE               g(mu_phi(y~_i, x_i), x_i)       g(0, x*)
=================  ==============================  =====================================

It also gives the per-variant validation objective used for early stopping, and adaptation to
new instances from a few context rows.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from pyro_lmmvae.data import Batch
from pyro_lmmvae.guides import HyperparameterGuide, hyperparameter_sites
from pyro_lmmvae.models import LatentLMMModel, SLMMModel
from pyro_lmmvae.objectives import expected_latent_kl, normal_kl
from pyro_lmmvae.pyro_module import local_params
from pyro_lmmvae.training.collapsed_elbo import CollapsedLatentELBO
from pyro_lmmvae.training.loss import (
    KL_ESTIMATORS,
    ELBOLoss,
    closed_form_loss,
    is_library_model,
    local_reparam_loss,
)
from pyro_lmmvae.training.optim import instance_tables

#: What the GSNN objective does not give, said once for every error that needs it.
GSNN_LIMITS = (
    "a GSNN-trained model has no encoder (q(z | y, x) is the prior), so it gives no posterior "
    "latents, no imputation from a row's observed entries and no MCC; it gives conditional "
    "generation g(M x̄), the effects and predictions at new covariates"
)


class GSNNUnavailableError(ValueError):
    """Raised when a GSNN-trained model is asked for something only an encoder can give."""


class VariationalPair(nn.Module):
    """A model, its guide, and the computations of spec §5 made from them.

    Parameters
    ----------
    model : LatentLMMModel
        :class:`~pyro_lmmvae.models.OLMMModel` or :class:`~pyro_lmmvae.models.SLMMModel`.
    guide : torch.nn.Module
        The matching guide (:class:`~pyro_lmmvae.guides.OLMMGuide`,
        :class:`~pyro_lmmvae.guides.SLMMGuide` or :class:`~pyro_lmmvae.guides.GSNNGuide`).
    local_reparam : bool, default False
        GSNN-oLMM only: train with the local reparameterisation (spec §4).
    """

    def __init__(self, model: LatentLMMModel, guide: nn.Module, local_reparam: bool = False):
        super().__init__()
        if local_reparam and (not model.gsnn or isinstance(model, SLMMModel)):
            raise ValueError("local_reparam applies to the GSNN objective of the oLMM-VAE only")
        self.model = model
        self.guide = guide
        self.local_reparam = local_reparam

    # ------------------------------------------------------------------ structure
    @property
    def per_instance_noise(self) -> bool:
        """True for the sLMM-VAE (one latent offset per instance)."""
        return isinstance(self.model, SLMMModel)

    @property
    def gsnn(self) -> bool:
        """True when trained with the GSNN objective."""
        return self.model.gsnn

    @property
    def effect_estimates(self):
        """q(A) (mean-field factors) or the point estimates of A: means and variances of A."""
        return self.guide.effects if self.guide.effects is not None else self.model.effects

    def attach_hyperparameter_guide(self, batch: Batch) -> None:
        """Give q(A) a factor for every hyper-parameter site the priors sample (idempotent).

        Called when the estimator is built, when a fit starts (a prior may have been swapped)
        and on load; ``batch`` is a prototype to trace the effects once. See
        :class:`~pyro_lmmvae.guides.HyperparameterGuide`.
        """
        q = self.guide.effects
        if q is None or not hasattr(q, "hyper"):
            return
        sites = tuple(hyperparameter_sites(self.model.effects, batch))
        current = q.hyper.sites if q.hyper is not None else ()
        if sites != current:
            q.hyper = HyperparameterGuide(self.model.effects, batch) if sites else None

    @property
    def closed_form_applies(self) -> bool:
        """Whether ``kl="closed_form"`` applies: oLMM/CVAE ELBO, no hierarchical effect priors."""
        try:
            closed_form_loss(self.model, self.guide)
        except ValueError:
            return False
        return True

    def loss_module(
        self,
        num_particles: int = 1,
        vectorize_particles: bool = False,
        kl: str = "trace_mean_field",
    ) -> nn.Module:
        """The training loss as a torch module (negative ELBO or negative GSNN objective).

        Parameters
        ----------
        num_particles : int, default 1
            Monte Carlo particles per estimate (``kl="trace_mean_field"`` only).
        vectorize_particles : bool, default False
        kl : {"trace_mean_field", "closed_form"}
            :class:`~pyro_lmmvae.training.loss.ELBOLoss` (Pyro's
            :class:`~pyro.infer.TraceMeanField_ELBO`, one draw of A per step) or
            :func:`~pyro_lmmvae.training.loss.closed_form_loss` (oLMM ELBO: the expected
            latent KL over q(A) in closed form; computed from the model's traces unless model,
            guide and priors are the library's own classes).
        """
        if kl not in KL_ESTIMATORS:
            raise ValueError(f"kl must be one of {KL_ESTIMATORS}, got {kl!r}")
        if kl == "closed_form":
            if num_particles != 1:
                raise ValueError("kl='closed_form' draws one z per row: num_particles must be 1")
            return closed_form_loss(self.model, self.guide)
        if self.local_reparam:
            return local_reparam_loss(self.model, self.guide)
        return ELBOLoss(self.model, self.guide, num_particles, vectorize_particles)

    def with_instances(self, n_groups: int) -> VariationalPair:
        """A pair sharing every network and A_f, with fresh random effects for new instances."""
        estimates = self.effect_estimates.for_instances(n_groups)
        if self.guide.effects is not None:  # Bayesian effects: new priors in the model
            model = self.model.with_effects(self.model.effects.for_instances(n_groups))
            guide = self.guide.with_effects(estimates, estimates)
        else:
            model = self.model.with_effects(estimates)
            guide = self.guide.with_effects(None, estimates)
        return VariationalPair(model, guide, self.local_reparam)

    def _require_encoder(self, what: str) -> None:
        if self.gsnn:
            raise GSNNUnavailableError(f"{what} is not available: {GSNN_LIMITS}")

    # ------------------------------------------------------------------ building blocks
    def decode_mean(self, z: torch.Tensor, batch: Batch) -> torch.Tensor:
        """Expected observation ``E[y | z]`` under the likelihood, (n, D)."""
        with local_params():
            return self.model.likelihood.mean(self.model.decode(z, batch))

    def prior_latent_mean(self, batch: Batch) -> torch.Tensor:
        """``M_f x + E[u_p] w``: the latent mean at the rows' covariates, (n, L)."""
        with local_params():
            return self.effect_estimates.predictor_moments(batch)[0]

    def instance_offsets(self, batch: Batch) -> torch.Tensor:
        """``m_p`` of the batch's instances (sLMM ELBO), zeros otherwise, (B, L)."""
        if self.per_instance_noise and not self.gsnn:
            with local_params():
                return self.guide.offsets(batch)[0]
        return batch.y.new_zeros(len(batch.instances), self.model.latent_dim)

    def _log_likelihood(self, z: torch.Tensor, batch: Batch) -> torch.Tensor:
        log_p = self.model.likelihood.log_density(self.model.decode(z, batch), batch.y)
        return (log_p * batch.mask).sum(-1)

    # ------------------------------------------------------------------ spec §5
    def latent_mean(self, batch: Batch) -> torch.Tensor:
        """Posterior means of the latents, (n, L): ``mu_phi(y~_i)`` (oLMM), ``eta_i + m_p`` (sLMM).

        Raises
        ------
        GSNNUnavailableError
            For GSNN-trained models, which have no posterior over z.
        """
        self._require_encoder("posterior latents")
        if self.per_instance_noise:
            return self.prior_latent_mean(batch) + self.instance_offsets(batch)[batch.local]
        with local_params():
            return self.guide.encoder.encode(batch)[0]

    def impute(self, batch: Batch) -> torch.Tensor:
        """Reconstruction of every entry of the batch's rows (table above), (n, D)."""
        if self.gsnn:
            return self.decode_mean(self.prior_latent_mean(batch), batch)
        return self.decode_mean(self.latent_mean(batch), batch)

    def predict(self, batch: Batch, offsets: torch.Tensor | None = None) -> torch.Tensor:
        """Conditional generation at the batch's covariates (table above), (n, D).

        Parameters
        ----------
        batch : Batch
            Rows to predict; rows of unseen instances (-1) get the prior mean of their effects.
        offsets : torch.Tensor, optional
            ``m_p`` of each row's instance, (n, L) (sLMM ELBO; computed from training rows).
        """
        z = self.prior_latent_mean(batch)
        if offsets is not None:
            z = z + offsets
        return self.decode_mean(z, batch)

    # ------------------------------------------------------------------ validation
    def validation_objective(
        self, batch: Batch, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """The variant's objective per row on held-out rows (lower is better), a scalar.

        * oLMM ELBO: ``−E log p(y_i|z_i) + E_q(A) KL_i`` with the closed-form KL (spec §2);
        * sLMM ELBO: the instance's held-out rows are pooled into q(eps_p):
          ``−sum_i log p(y_i | eta_i + eps_p) + KL(q(eps_p) || p(eps_p))``;
        * GSNN: ``−log p(y_i | z_i)`` with z drawn from the prior (per row for oLMM, per
          instance for sLMM).

        Effect-prior KLs are left out, so the value compares across data sets of any size. The
        Monte Carlo draws come from ``generator`` (common random numbers across epochs).

        For a model, guide, likelihood or prior that is not the library's own class (any
        variant and objective), the value is read from the model's traces
        (``CollapsedLatentELBO(effect_kl=False)``: Pyro's per-site terms of the rows and
        instances, the oLMM's latent KL averaged over q(A); seeded from ``generator``), so what
        the model adds (a factor, another likelihood) counts; rows of instances unseen in
        training (no q(u_p)) keep the torch form.
        """
        traced = not is_library_model(self.model, self.guide) and bool((batch.instances >= 0).all())
        if traced:
            seed = generator.initial_seed() if generator is not None else 0
            devices = [batch.y.device.index or 0] if batch.y.device.type == "cuda" else []
            with torch.random.fork_rng(devices=devices), local_params():
                torch.manual_seed(seed)
                elbo = CollapsedLatentELBO(effect_kl=False)
                value = elbo.differentiable_loss(self.model, self.guide, batch)
            return value / (batch.scale * batch.n_rows)

        def noise(*shape: int) -> torch.Tensor:
            draw = torch.randn(shape, generator=generator, dtype=batch.y.dtype)
            return draw.to(batch.y.device)

        n, latent = batch.n_rows, self.model.latent_dim
        with local_params():
            sigma_z = self.model.latent_scale()
            mean, var = self.effect_estimates.predictor_moments(batch)
            kl = batch.y.new_zeros(())
            if self.gsnn and self.per_instance_noise:
                z = mean + (sigma_z * noise(len(batch.instances), latent))[batch.local]
            elif self.gsnn:
                z = mean + (var + sigma_z.square()).sqrt() * noise(n, latent)
            elif self.per_instance_noise:
                m, s = self.guide.offsets(batch)
                kl = normal_kl(m, s.square(), sigma_z.square()).sum()
                z = mean + (m + s * noise(*m.shape))[batch.local]
            else:
                loc, scale = self.guide.encoder.encode(batch)
                kl = expected_latent_kl(loc, scale, mean, var, sigma_z).sum()
                z = loc + scale * noise(n, latent)
            return (kl - self._log_likelihood(z, batch).sum()) / n

    # ------------------------------------------------------------------ new instances
    def context_objective(self, particles: int = 16) -> Callable[[Batch], torch.Tensor]:
        """The objective that adapting new instances minimises over their random effects.

        oLMM ELBO: the closed-form loss (:func:`~pyro_lmmvae.training.loss.closed_form_loss`:
        the ELBO with the latent KL averaged over q(A)). With
        the encoder frozen only ``sum_i E_q(A) KL_i`` and the random effects' KL depend on
        q(u_p), and both are exact for Gaussian priors, so the gradients are deterministic.
        Otherwise (GSNN): the variant's loss with ``particles`` vectorized particles.
        """
        if self.gsnn:
            return self.loss_module(particles, vectorize_particles=True)
        return closed_form_loss(self.model, self.guide)

    def adapt(self, batch: Batch, steps: int = 200, lr: float = 1e-2) -> torch.Tensor:
        """Fit the effects of new instances to their context rows, everything else frozen.

        ``self`` must come from :meth:`with_instances`, and ``batch`` index its instances
        ``0 .. n-1``. The sLMM ELBO runs the group encoder (``u_p = 0``); every other model
        fits only the new instances' random effects on its :meth:`context_objective`
        (``steps`` Adam steps at ``lr``; spec §5).

        Returns
        -------
        torch.Tensor
            Per-instance offsets ``m_p`` (zeros except for the sLMM ELBO), (B, L).
        """
        if self.per_instance_noise and not self.gsnn:
            with torch.no_grad():
                return self.instance_offsets(batch)
        estimates = self.effect_estimates
        if estimates.n_random:
            params = instance_tables(estimates)
            objective = self.context_objective()
            optimizer = torch.optim.Adam(params, lr=lr)
            for _ in range(steps):
                grads = torch.autograd.grad(objective(batch), params, allow_unused=True)
                for p, g in zip(params, grads, strict=True):
                    p.grad = g
                optimizer.step()
        return batch.y.new_zeros(len(batch.instances), self.model.latent_dim)
