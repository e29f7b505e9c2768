r"""A genuine GP-prior VAE baseline (LVAE-style additive sparse-GP prior), for the harness.

Model
-----
Each of the L latent channels has an independent Gaussian-process prior over the covariates
``x = (t, c, p)`` (time, optional other covariates ``c``, instance ``p``) with the additive kernel
of the longitudinal VAE (LVAE, Ramchandran et al., AISTATS 2021)

.. math::

    k_l(x, x') = \underbrace{k_t(t, t') [+ k_{tc}((t, c), (t, c'))]}_{\text{shared}, k_s}
        + \underbrace{\delta_{pp'} \big(s_{b,l}^2 + k_{\mathrm{id}}(t, t')\big)}_{\text{instance}}
        + \sigma_{z,l}^2 \delta_{ii'},

RBF kernels (:mod:`pyro.contrib.gp.kernels`), an instance intercept and an instance × RBF(time)
trajectory, and latent white noise. The shared part is a sparse GP with M inducing inputs
``Z_l`` and whitened inducing values ``u_l ~ N(0, I)``, ``f_s = A u + f̃``, ``A = K_xZ L_ZZ^{-T}``,
``cov f̃ = K̃ = K_xx - A Aᵀ`` (:func:`pyro.contrib.gp.util.conditional` with ``whiten=True``);
the instance part is block-diagonal over instances and kept exact. Given ``f_s``, the latents of
instance p are ``z_p ~ N(f_s(x_p), C_p)``, ``C_p = s_b² 11ᵀ + K_id(t_p) + σ_z² I``, independent
across instances. Observations ``y_i ~ N(g(z_i), diag σ_y²)`` on observed entries only (mask).

Bound (LVAE-style: Ramchandran et al. 2021, built on Hensman et al. 2013's SVGP bound)
-------------------------------------------------------------------------------------
The LVAE bounds the KL term of an additive GP prior with the shared components through
inducing points and the instance-specific block-diagonal part exact; in our notation:
With the amortised encoder ``q(z_i) = N(μ_φ(y_i), diag v_φ(y_i))`` the ELBO is
``Σ_i E_q log p(y_i | z_i) + H[q] + E_q log p(Z | X)``, and the cross-entropy is bounded per
channel with a free ``q(u) = N(m, S S^T)`` by two Jensen steps, ``log p(z) ≥ E_q(u) log p(z|u) -
KL(q(u) || N(0, I))`` and ``log p(z | u) ≥ E_{p(f̃)} log p(z | f_s)`` (the second drops the shared
residual's cross-instance correlation into a trace, as in Hensman et al.):

.. math::

    E_q \log p(Z_l | X) \ge \sum_p \Big[\log N(μ_p | A_p m, C_p)
        - \tfrac12 \operatorname{tr} C_p^{-1}\big(\operatorname{diag} v_p + A_p S S^T A_p^T
        + K̃_p\big)\Big] - \mathrm{KL}(q(u) \| N(0, I)),

using ``E_{N(z|μ,V)} log N(z|a, C) = log N(μ|a, C) - ½ tr C^{-1}V`` and ``E_q(u) A u = A m``,
``cov_q(u) A u = A S Sᵀ Aᵀ``. It is a sum over instances, so minibatches of whole instances give
unbiased estimates (scaled by P / B); all parameters (networks, kernels, Z, m, S, σ_y) are
trained by Adam on it (minibatch SVI). Maximising it over q(u) in closed form gives the
collapsed (Titsias-type) value ``log N(μ | 0, blockdiag C + A Aᵀ) - ½ Σ_p tr C_p^{-1}(diag v_p +
K̃_p)`` with ``S Sᵀ = (I + Λ)^{-1}``, ``m = S Sᵀ b``, ``Λ = Σ_p A_pᵀ C_p^{-1} A_p``,
``b = Σ_p A_pᵀ C_p^{-1} μ_p`` (Woodbury): after SVI, :meth:`GPPriorVAE.fit` maximises it over
the kernel hyperparameters (encoder fixed, L-BFGS; by default on small data only) and sets q(u)
to its optimum, and
:meth:`GPPriorVAE.lengthscale_uncertainty` takes its curvature (a Laplace approximation over
all hyperparameters, i.e. the profile curvature in log ℓ).

Prediction at new covariates of instance p is ``g(E[z*])``, with the GP posterior mean given the
encoder means as pseudo-observations and the encoder variances as noise,
``E[z*] = A_* m + (K̃_{*p} + K_id,*p)(K̃_p + C_p + diag v_p)^{-1}(μ_p - A_p m)``; an instance
unseen in training gets the population curve ``A_* m``. Imputation is ``g(μ_φ(m ⊙ y))``.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
from torch import nn

from pyro_lmmvae.architectures import build_networks
from pyro_lmmvae.datasets import LongitudinalDataset
from pyro_lmmvae.networks import GaussianEncoder
from pyro_lmmvae.validation import validate_observations

from .gp_prior import LOG_2PI, GPPrior, chunks, layout

__all__ = ["GPPriorVAE", "History"]

POLISH_ROWS = 2000
"""Up to this many training rows :meth:`GPPriorVAE.fit` runs the L-BFGS step by default."""
ENCODE_ROWS = 1024
"""Rows per encoder/decoder call outside training."""


@dataclass
class History:
    """Per-epoch training loss (negative ELBO per row) and why training stopped."""

    train_loss: list[float] = field(default_factory=list)
    val_mse: list[float] = field(default_factory=list)
    stop_reason: str = ""


class GPPriorVAE:
    """VAE with an additive sparse-GP prior per latent channel, trained by minibatch SVI.

    Offers what the benchmark harness calls on an :class:`~pyro_lmmvae.LMMVAE`: :meth:`fit`,
    :meth:`predict` (new times of seen instances, unseen instances), :meth:`impute`,
    :meth:`latents` and ``history.train_loss``.

    Parameters
    ----------
    data : pandas.DataFrame
        Covariates of the training rows, with the ``time`` and ``instance`` columns.
    y : array-like, (N, D)
        Observations (NaN where missing when ``mask`` is omitted).
    mask : array-like of bool, (N, D), optional
        True where observed; unobserved entries are never read.
    latent_dim : int, default 2
    time : str, default "t"
        The continuous time (or age) column.
    instance : str, default "id"
        The instance column.
    covariates : sequence of str, default ()
        Further columns (a non-numeric one as its level codes) entering the shared kernel
        jointly with time (an ARD RBF). All inputs are z-scored with their training mean and sd.
    n_inducing : int, default 24
        M, inducing inputs per channel (initialised at time quantiles of the training rows).
    network : str, default "mlp"
        Encoder/decoder architecture of :func:`pyro_lmmvae.architectures.build_networks`.
    noise_scale : float, optional
        Fixed Gaussian noise sd; learned per feature by default.
    mask_channel : bool, default False
        Give the encoder the mask as extra input features.
    seed : int, default 0
        Seed of the initialisation.
    """

    def __init__(
        self,
        data: pd.DataFrame,
        y,
        mask=None,
        *,
        latent_dim: int = 2,
        time: str = "t",
        instance: str = "id",
        covariates: tuple[str, ...] | list[str] = (),
        n_inducing: int = 24,
        network: str = "mlp",
        noise_scale: float | None = None,
        mask_channel: bool = False,
        seed: int = 0,
    ) -> None:
        y, mask = validate_observations(y, mask, n_rows=len(data))
        self.time, self.instance, self.covariates = time, instance, list(covariates)
        self.latent_dim, self.obs_dim = latent_dim, y.shape[1]
        self._levels = {
            c: pd.Index(pd.unique(data[c]))
            for c in [time, *self.covariates]
            if not pd.api.types.is_numeric_dtype(data[c])
        }
        raw = self._raw(data)
        self._centre, self._spread = raw.mean(0), np.where(raw.std(0) > 0, raw.std(0), 1.0)
        self.levels = pd.Index(pd.unique(data[instance]))
        self.data, self.y, self.mask = data.reset_index(drop=True), y, mask
        self.device = torch.device("cpu")
        self.fixed_noise = noise_scale
        self.history = History()
        x = self._inputs(self.data)
        distinct = np.unique(x.numpy(), axis=0)  # sorted by time; no duplicate inducing inputs
        picks = np.linspace(0, len(distinct) - 1, min(n_inducing, len(distinct))).astype(int)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            encoder, decoder = build_networks(
                network, self.obs_dim, latent_dim, mask_channel=mask_channel
            )
        self.net = nn.Module()
        self.net.encoder = GaussianEncoder(encoder, latent_dim, mask_channel=mask_channel)
        self.net.decoder = decoder
        self.net.prior = GPPrior(latent_dim, torch.as_tensor(distinct[picks]))
        self.net.log_noise = nn.Parameter(torch.zeros(self.obs_dim))

    @classmethod
    def from_dataset(cls, dataset: LongitudinalDataset, **kwargs) -> GPPriorVAE:
        """Build on the rows of a :class:`~pyro_lmmvae.datasets.LongitudinalDataset`."""
        kwargs.setdefault("instance", dataset.instance_column)
        return cls(dataset.data, dataset.y, dataset.mask, **kwargs)

    @property
    def prior(self) -> GPPrior:
        """The GP prior module (kernels, inducing inputs, q(u))."""
        return self.net.prior

    # ------------------------------------------------------------------ helpers
    def _raw(self, data: pd.DataFrame) -> np.ndarray:
        """Time and covariates as floats; a non-numeric column as its training level codes."""
        names = [self.time, *self.covariates]
        columns = [
            self._levels[c].get_indexer(pd.Index(data[c])) if c in self._levels else data[c]
            for c in names
        ]
        raw = np.stack([np.asarray(c, np.float64) for c in columns], 1)
        bad = [c for c, ok in zip(names, np.isfinite(raw).all(0), strict=True) if not ok]
        if bad:
            raise ValueError(f"GP inputs must be finite; missing or infinite values in {bad}")
        return raw

    def _inputs(self, data: pd.DataFrame) -> torch.Tensor:
        scaled = (self._raw(data) - self._centre) / self._spread
        return torch.as_tensor(scaled, dtype=torch.float32, device=self.device)

    def _codes(self, data: pd.DataFrame) -> np.ndarray:
        return self.levels.get_indexer(pd.Index(data[self.instance]))

    def _layout(self, codes: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        _, index, valid = layout(codes)
        return index.to(self.device), valid.to(self.device)

    def _encode(self, y: np.ndarray, mask: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """Encoder means and variances (N, L) of rows, in chunks, without gradients."""
        out = []
        with torch.no_grad():
            for start in range(0, len(y), ENCODE_ROWS):
                y_t = torch.as_tensor(y[start : start + ENCODE_ROWS], device=self.device)
                m_t = torch.as_tensor(mask[start : start + ENCODE_ROWS], device=self.device)
                mu, sigma = self.net.encoder(y_t * m_t, m_t)
                out.append((mu, sigma.pow(2)))
        return torch.cat([o[0] for o in out]), torch.cat([o[1] for o in out])

    def _decode(self, z: torch.Tensor) -> np.ndarray:
        with torch.no_grad():
            parts = [
                self.net.decoder(z[s : s + ENCODE_ROWS]) for s in range(0, len(z), ENCODE_ROWS)
            ]
        return torch.cat(parts).cpu().numpy()

    def _loss(self, rows: np.ndarray, scale: float) -> torch.Tensor:
        """Negative ELBO estimate of the whole training set from a batch of whole instances."""
        y = torch.as_tensor(self.y[rows], device=self.device)
        mask = torch.as_tensor(self.mask[rows], device=self.device)
        mu, sigma = self.net.encoder(y * mask, mask)
        z = mu + sigma * torch.randn_like(mu)
        noise = self.net.log_noise.exp() if self.fixed_noise is None else self.fixed_noise
        log_lik = torch.distributions.Normal(self.net.decoder(z), noise).log_prob(y)
        entropy = (sigma.log() + 0.5 * (1 + LOG_2PI)).sum()
        index, valid = self._layout(self._codes_train[rows])
        prior = self.prior.bound(self._x[rows], index, valid, mu, sigma.pow(2))
        elbo = scale * ((log_lik * mask).sum() + entropy + prior) - self.prior.kl_u()
        return -elbo

    # ------------------------------------------------------------------ training
    def fit(
        self,
        max_epochs: int = 200,
        batch_size: int = 16,
        lr: float = 1e-3,
        lr_decay: float = 1.0,
        *,
        gp_lr: float = 1e-2,
        validation: tuple | None = None,
        patience: int | None = None,
        polish_steps: int | None = None,
        seed: int = 0,
        device: str | torch.device = "cpu",
        progress: bool = False,
        **ignored,
    ) -> GPPriorVAE:
        """Minibatch SVI on the bound, then the collapsed hyperparameter and q(u) step.

        Parameters
        ----------
        max_epochs : int, default 200
        batch_size : int, default 16
            Instances per batch (all of their rows).
        lr, gp_lr : float
            Adam learning rates of the networks and σ_y, and of the GP prior.
        lr_decay : float, default 1.0
            Per-epoch multiplicative decay of both rates.
        validation : tuple, optional
            ``(data, y, mask)``; with ``patience``, stop when the prediction MSE of these rows
            has not improved for ``patience`` epochs and keep the best epoch's weights.
        patience : int, optional
        polish_steps : int, optional
            L-BFGS iterations of :meth:`polish` (0: only set q(u) to its optimum). Default 50 up
            to :data:`POLISH_ROWS` training rows, else 0 (each iteration costs a full-data pass
            with its graph: about 6 s for 3,000 Health MNIST rows at L = 16 on one CPU core).
        seed : int, default 0
            Seed of the batches and Monte Carlo draws.
        device : str or torch.device, default "cpu"
            Where to train (the model stays there).
        progress : bool
            Accepted for call compatibility with :meth:`pyro_lmmvae.LMMVAE.fit` (no bar).
        **ignored
            Other :meth:`~pyro_lmmvae.LMMVAE.fit` options (``kl``, ``local_lr``,
            ``sparse_updates``), which do not apply here.
        """
        self.device = torch.device(device)
        self.net.to(self.device)
        torch.manual_seed(seed)
        rng = np.random.default_rng(seed)
        self._x, self._codes_train = self._inputs(self.data), self._codes(self.data)
        per_instance = [np.flatnonzero(self._codes_train == p) for p in range(len(self.levels))]
        gp_params = {id(p) for p in self.prior.parameters()}
        networks = [p for p in self.net.parameters() if id(p) not in gp_params]
        groups = [{"params": networks, "lr": lr}]
        groups.append({"params": list(self.prior.parameters()), "lr": gp_lr})
        optim = torch.optim.Adam(groups)
        sched = torch.optim.lr_scheduler.ExponentialLR(optim, lr_decay)
        best, waited, best_state = np.inf, 0, None
        self.history.stop_reason = "max_epochs"
        for _ in range(max_epochs):
            total, order = 0.0, rng.permutation(len(per_instance))
            for start in range(0, len(order), batch_size):
                chosen = order[start : start + batch_size]
                rows = np.concatenate([per_instance[p] for p in chosen])
                loss = self._loss(rows, len(order) / len(chosen))
                optim.zero_grad()
                loss.backward()
                optim.step()
                total += loss.item() * len(chosen) / len(order)
            sched.step()
            self.history.train_loss.append(total / len(self.y))
            if validation is not None and patience is not None:
                data, y, mask = validation
                mse = float(np.mean((self.predict(data) - y)[np.asarray(mask, bool)] ** 2))
                self.history.val_mse.append(mse)
                best, waited = (mse, 0) if mse < best else (best, waited + 1)
                if waited == 0:
                    best_state = copy.deepcopy(self.net.state_dict())
                if waited >= patience:
                    self.history.stop_reason = "patience"
                    break
        if best_state is not None:  # the weights of the best validation epoch
            self.net.load_state_dict(best_state)
        if polish_steps is None:
            polish_steps = 50 if len(self.y) <= POLISH_ROWS else 0
        self.polish(steps=polish_steps)
        return self

    def _pseudo_observations(self) -> tuple[torch.Tensor, np.ndarray, torch.Tensor, torch.Tensor]:
        """Inputs, instance codes and encoder means and variances of all training rows."""
        return self._inputs(self.data), self._codes(self.data), *self._encode(self.y, self.mask)

    def collapsed_bound(self) -> tuple[torch.Tensor, tuple]:
        """Σ_l collapsed bound at the encoder outputs of the training rows, and the optimal q(u)
        (see :meth:`~benchmarks.paper.gp_prior.GPPrior.collapsed_bound`)."""
        return self.prior.collapsed_bound(*self._pseudo_observations())

    def polish(self, steps: int = 50) -> None:
        """Maximise the collapsed bound over the kernel hyperparameters, then set q(u) to its
        optimum, the encoder fixed (:meth:`~benchmarks.paper.gp_prior.GPPrior.polish`)."""
        self.prior.polish(*self._pseudo_observations(), steps=steps)

    def lengthscale_uncertainty(self) -> tuple[np.ndarray, np.ndarray]:
        """Each channel's time lengthscale in raw time units and the Laplace sd of its log
        (:meth:`~benchmarks.paper.gp_prior.GPPrior.lengthscale_laplace`, encoder fixed). Call it
        after :meth:`fit`, which maximises the collapsed bound."""
        log_scales, sds = self.prior.lengthscale_laplace(*self._pseudo_observations())
        return np.exp(log_scales) * self._spread[0], sds

    # ------------------------------------------------------------------ inference
    def _given(self, y, mask) -> tuple[np.ndarray, np.ndarray]:
        return (self.y, self.mask) if y is None else validate_observations(y, mask)

    def latents(self, y=None, mask=None, data: pd.DataFrame | None = None) -> np.ndarray:
        """Encoder means μ_φ(m ⊙ y), (N, L) (the training rows by default; ``data`` unused)."""
        return self._encode(*self._given(y, mask))[0].cpu().numpy()

    def impute(self, y=None, mask=None, data=None, *, keep_observed: bool = True) -> np.ndarray:
        """``g(μ_φ(m ⊙ y))``, (N, D), with the observed entries kept unless
        ``keep_observed=False`` (the training rows by default; ``data`` unused)."""
        y, mask = self._given(y, mask)
        recon = self._decode(self._encode(y, mask)[0])
        return np.where(mask, y, recon) if keep_observed else recon

    @torch.no_grad()
    def prior_latents(self, data: pd.DataFrame) -> np.ndarray:
        """GP posterior mean of the latents at new covariates, (N*, L), given the encoder
        outputs of the instance's training rows (module docstring)."""
        codes_train = self._codes(self.data)
        codes_new = self._codes(data)
        unseen = codes_new < 0  # each unseen label: an instance without training rows
        codes_new[unseen] = len(self.levels) + pd.factorize(data[self.instance][unseen])[0]
        mu, var = self._encode(self.y, self.mask)
        x_train, x_new = self._inputs(self.data), self._inputs(data)
        out = torch.zeros(len(data), self.latent_dim, device=self.device)
        for rows_n in chunks(codes_new):
            rows_t = np.flatnonzero(np.isin(codes_train, codes_new[rows_n]))
            x = torch.cat([x_train[rows_t], x_new[rows_n]])
            codes = np.concatenate([codes_train[rows_t], codes_new[rows_n]])
            known = torch.arange(len(codes), device=self.device) < len(rows_t)
            pad = torch.zeros(len(rows_n), self.latent_dim, device=self.device)
            mean = self.prior.posterior_mean(
                x,
                *self._layout(codes),
                known,
                torch.cat([mu[rows_t], pad]),
                torch.cat([var[rows_t], pad]),
            )
            out[torch.as_tensor(rows_n, device=self.device)] = mean[len(rows_t) :]
        return out.cpu().numpy()

    def predict(self, data: pd.DataFrame, *, unseen: str = "prior", **ignored) -> np.ndarray:
        """Conditional generation ``g(E[z*])`` at new covariates, (N*, D).

        Parameters
        ----------
        data : pandas.DataFrame
            Covariates with the time, covariate and instance columns.
        unseen : {"prior", "error"}, default "prior"
            Instances not seen in training get the population curve ``g(A_* m)``, or raise.
        **ignored
            Other :meth:`pyro_lmmvae.LMMVAE.predict` options, which do not apply.
        """
        if unseen == "error" and (self._codes(data) < 0).any():
            raise ValueError("data has instances not seen in training (use unseen='prior')")
        z = torch.as_tensor(self.prior_latents(data), device=self.device)
        return self._decode(z)
