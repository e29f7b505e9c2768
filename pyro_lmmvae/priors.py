"""Swappable priors on the effect matrices.

A prior is a :class:`EffectPrior`, a small :class:`~pyro.nn.PyroModule` that returns the
distribution of an effect tensor of a given shape. Any Pyro distribution can be used directly:
:func:`~pyro_lmmvae.prior_specs.as_prior` wraps it in :class:`DistributionPrior`, which stores its
parameters as buffers so that the prior follows the model to the GPU and into checkpoints.
:class:`LearnedScaleNormal` learns its scale as a point estimate on the ELBO (the spec's
``learn_sigma_u``). The spectral priors of Fourier bases build on :class:`EffectPrior` in
:mod:`pyro_lmmvae.gp` (this module imports nothing from there).

With the mean-field Normal guide, :class:`~pyro.infer.TraceMeanField_ELBO` uses the analytic KL
whenever torch registers one for the pair (Normal, Laplace, Gumbel priors); otherwise (StudentT,
Cauchy, ...) it falls back to a Monte Carlo estimate of ``log q - log p``. Priors that sample
global hyper-parameters train too: the guide gets an ``AutoNormal`` factor for those sites
(:class:`~pyro_lmmvae.guides.HyperparameterGuide`).

Examples
--------
>>> import pyro.distributions as dist
>>> prior = DistributionPrior(dist.Laplace(0.0, 0.5))
>>> prior((2, 3)).batch_shape
torch.Size([2, 3])
"""

from __future__ import annotations

import inspect

import pyro.distributions as dist
import torch
from pyro import poutine
from pyro.distributions import constraints
from pyro.distributions.torch_distribution import TorchDistributionMixin
from pyro.nn import PyroParam
from pyro.poutine.util import site_is_subsample

from .pyro_module import LocalPyroModule, local_params


class EffectPrior(LocalPyroModule):
    """Base class: ``prior(shape)`` returns a distribution with ``batch_shape == shape``.

    :meth:`forward` is called inside the model, within the plates of the effect site.
    Subclasses may sample hyper-parameters of their own (hierarchical priors): the guide then
    gets a factor for those sites (:class:`~pyro_lmmvae.guides.HyperparameterGuide`), and
    ``effects()`` and prior draws handle them.
    """

    def forward(self, shape: tuple[int, ...]) -> dist.TorchDistribution:  # pragma: no cover
        raise NotImplementedError

    def describe(self) -> str:
        """Short human-readable description used in ``effects()`` attributes."""
        return type(self).__name__

    def config(self) -> dict | None:
        """Plain values that rebuild this prior when a saved model is loaded, or None.

        Learned values (parameters, buffers) come from the saved state dict; the config gives
        the structure. None (the default for subclasses) records the prior by class name, and
        :meth:`~pyro_lmmvae.LMMVAE.load` then needs it passed again.
        """
        return None

    def bind_layout(self, latent_dim: int, blocks: tuple[tuple[int, ...], ...]) -> None:
        """Learn L and the blocks of correlated random terms (``Design.random_blocks``).

        Called by the model when a random-effect prior is attached. Priors of independent
        entries ignore it; :class:`RandomEffectCovariance` creates its parameters here.
        """

    def bind(self, columns) -> None:
        """Learn which columns the effect matrix has (``Design.fixed_bases`` or ``random_bases``).

        Called by the model when the prior is attached. Priors that treat every column alike
        ignore it; :class:`~pyro_lmmvae.gp.prior.SpectralPrior` reads the basis columns.
        """


class DistributionPrior(EffectPrior):
    """Wraps any Pyro distribution with scalar or broadcastable parameters.

    Parameters
    ----------
    distribution : pyro.distributions.TorchDistribution
        A distribution whose batch shape broadcasts to the effect shape, e.g.
        ``dist.Normal(0., 1.)`` or ``dist.StudentT(3., 0., torch.ones(Q))``. Its event shape must
        be empty (the effect entries are scalars).
    """

    def __init__(self, distribution: dist.TorchDistribution) -> None:
        super().__init__()
        if not isinstance(distribution, torch.distributions.Distribution):
            raise TypeError(
                f"a prior must be a Pyro distribution, got {type(distribution).__name__}"
            )
        if distribution.event_shape != torch.Size():
            raise ValueError(
                "a prior on effect entries must have an empty event shape, got "
                f"{tuple(distribution.event_shape)} for {type(distribution).__name__}"
            )
        if isinstance(distribution, TorchDistributionMixin):
            self.distribution_type = type(distribution)
        else:  # a plain torch distribution: use its Pyro counterpart (which has .to_event)
            pyro_type = getattr(dist, type(distribution).__name__, None)
            if pyro_type is None:
                raise TypeError(
                    f"{type(distribution).__name__} has no Pyro counterpart; "
                    "use a distribution from pyro.distributions"
                )
            self.distribution_type = pyro_type
        accepted = inspect.signature(self.distribution_type.__init__).parameters
        self._param_names = []
        for name in distribution.arg_constraints:
            if name in accepted and name in distribution.__dict__:
                value = torch.as_tensor(
                    getattr(distribution, name), dtype=torch.get_default_dtype()
                )
                self.register_buffer(f"param_{name}", value.detach().clone())
                self._param_names.append(name)
        if not self._param_names:
            raise ValueError(f"cannot read the parameters of {type(distribution).__name__}")

    def forward(self, shape: tuple[int, ...]) -> dist.TorchDistribution:
        params = {name: getattr(self, f"param_{name}") for name in self._param_names}
        return self.distribution_type(**params).expand(torch.Size(shape))

    def config(self) -> dict | None:
        """The distribution by its name in :mod:`pyro.distributions`, and its parameters."""
        name = self.distribution_type.__name__
        if getattr(dist, name, None) is not self.distribution_type:
            return None  # a distribution defined elsewhere: recorded by class name
        params = {n: getattr(self, f"param_{n}").detach().cpu().clone() for n in self._param_names}
        return {"type": "distribution", "name": name, "params": params}

    def describe(self) -> str:
        args = ", ".join(
            f"{name}={_short(getattr(self, f'param_{name}'))}" for name in self._param_names
        )
        return f"{self.distribution_type.__name__}({args})"


class LearnedScaleNormal(EffectPrior):
    """``Normal(0, sigma)`` with ``sigma`` a point estimate learned on the ELBO.

    Parameters
    ----------
    init_scale : float, default 1.0
        Initial value of ``sigma``, parameterised through a softplus.
    """

    def __init__(self, init_scale: float = 1.0) -> None:
        super().__init__()
        if not init_scale > 0:
            raise ValueError(f"init_scale must be positive, got {init_scale}")
        self.scale = PyroParam(
            torch.tensor(float(init_scale)), constraint=constraints.softplus_positive
        )

    def forward(self, shape: tuple[int, ...]) -> dist.TorchDistribution:
        scale = self.scale
        return dist.Normal(torch.zeros((), device=scale.device), scale).expand(torch.Size(shape))

    def config(self) -> dict:
        """The type; the learned scale itself is in the state dict."""
        return {"type": "learned_scale_normal", "init_scale": 1.0}

    def describe(self) -> str:
        return f"Normal(0, learned scale={float(self.scale.detach()):.4g})"


class RandomEffectCovariance(EffectPrior):
    """``u_{p,l} ~ N(0, Σ_l)``: random effects with estimated variance components, as in lme4.

    For each latent dimension l the k random terms of an instance are jointly Normal with
    covariance ``Σ_l``, block-diagonal over the design's blocks: the terms of ``(1 + t | id)``
    are correlated, those of ``(1 + t || id)`` or ``(1 | id) + (0 + t | id)`` are not. Within a
    block ``Σ = diag(sd) R diag(sd)`` with a correlation matrix R. The standard deviations and
    correlations are point estimates learned on the ELBO (type-II maximum likelihood, like
    lme4's ML fit; put a prior on them with a hierarchical prior of your own instead). They start
    at ``init_sd`` and no correlation. This is the default random-effect prior of Bayesian
    effects.

    Parameters
    ----------
    init_sd : float, default 1.0
        Initial standard deviation of every random term.

    Attributes
    ----------
    sd : torch.Tensor
        Standard deviations, (L, k).
    """

    def __init__(self, init_sd: float = 1.0) -> None:
        super().__init__()
        if not init_sd > 0:
            raise ValueError(f"init_sd must be positive, got {init_sd}")
        self.init_sd = float(init_sd)
        self.blocks: tuple[tuple[int, ...], ...] | None = None
        self.latent_dim: int | None = None

    def config(self) -> dict:
        """The type and initial sd; the learned values are in the state dict."""
        return {"type": "random_effect_covariance", "init_sd": self.init_sd}

    def bind_layout(self, latent_dim: int, blocks: tuple[tuple[int, ...], ...]) -> None:
        blocks = tuple(tuple(int(i) for i in block) for block in blocks)
        if (latent_dim, blocks) == (self.latent_dim, self.blocks):
            return
        k = sum(len(block) for block in blocks)
        if sorted(i for block in blocks for i in block) != list(range(k)):
            raise ValueError(f"blocks {blocks} do not partition the {k} random terms")
        self.latent_dim, self.blocks = latent_dim, blocks
        with local_params():
            self.sd = PyroParam(
                torch.full((latent_dim, k), self.init_sd), constraint=constraints.softplus_positive
            )
            for j, block in enumerate(blocks):
                if len(block) > 1:
                    eye = torch.eye(len(block)).expand(latent_dim, -1, -1).clone()
                    setattr(self, f"corr_cholesky_{j}", PyroParam(eye, constraints.corr_cholesky))

    def scale_tril(self) -> torch.Tensor:
        """``S_l``, (L, k, k), lower triangular with ``Σ_l = S_l S_lᵀ``."""
        sd = self.sd
        tril = torch.diag_embed(sd)
        for j, block in enumerate(self.blocks):
            if len(block) > 1:
                # A block's factor diag(sd) chol(R), scattered at its (sorted) indices: the
                # result stays lower triangular.
                idx = torch.tensor(block, device=sd.device)
                part = sd[:, idx].unsqueeze(-1) * getattr(self, f"corr_cholesky_{j}")
                tril = _scatter_block(tril, idx, part)
        return tril

    def covariance(self) -> torch.Tensor:
        """``Σ_l``, (L, k, k)."""
        tril = self.scale_tril()
        return tril @ tril.transpose(-1, -2)

    def components(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The variance components: standard deviations (L, k) and correlations (L, k, k)."""
        cov = self.covariance()
        sd = cov.diagonal(dim1=-2, dim2=-1).sqrt()
        return sd, cov / (sd.unsqueeze(-1) * sd.unsqueeze(-2))

    def correlation(self) -> torch.Tensor:
        """The correlation matrices of ``Σ_l``, (L, k, k)."""
        return self.components()[1]

    def forward(self, shape: tuple[int, ...]) -> dist.TorchDistribution:
        """``MultivariateNormal(0, Σ_l)`` with batch shape ``shape[:-1]`` and event (k,)."""
        if self.blocks is None:  # not attached to a design: every term its own block
            self.bind_layout(shape[-2], tuple((j,) for j in range(shape[-1])))
        tril = self.scale_tril()
        if tuple(shape[-2:]) != tuple(tril.shape[:2]):
            raise ValueError(
                f"this prior was bound to (L, k) = {tuple(tril.shape[:2])}, not {shape[-2:]}"
            )
        loc = tril.new_zeros(tril.shape[:2])
        return dist.MultivariateNormal(loc, scale_tril=tril).expand(torch.Size(shape[:-1]))

    def describe(self) -> str:
        kind = "correlated" if any(len(b) > 1 for b in self.blocks or ()) else "independent"
        return f"MultivariateNormal(0, Σ): {kind} random terms, learned sd and correlation"


def _scatter_block(tril: torch.Tensor, idx: torch.Tensor, part: torch.Tensor) -> torch.Tensor:
    """``tril`` with ``tril[:, idx[a], idx[b]] = part[:, a, b]`` (out of place)."""
    tril = tril.clone()
    tril[:, idx[:, None], idx[None, :]] = part
    return tril


def _prior_sites(prior: EffectPrior, shape: tuple[int, ...]) -> list[dict]:
    """The sample sites (observed ones, e.g. ``pyro.factor``, included) that ``prior(shape)``
    records, run once under a forked RNG so that the random state is left alone."""
    cuda = [torch.cuda.current_device()] if torch.cuda.is_initialized() else []
    with torch.random.fork_rng(devices=cuda), torch.no_grad():
        trace = poutine.trace(prior).get_trace(tuple(shape))
    return [
        site
        for site in trace.nodes.values()
        if site["type"] == "sample" and not site_is_subsample(site)
    ]


def is_hierarchical(prior: EffectPrior, shape: tuple[int, ...]) -> bool:
    """Whether ``prior(shape)`` samples Pyro sites of its own (hyper-parameters).

    The marginal of such a prior is a mixture: draws need one hyper-parameter draw each, and its
    moments are not those of the conditional distribution it returns. The check runs the prior
    once under a forked RNG, so it leaves the random state alone.
    """
    return any(not site["is_observed"] for site in _prior_sites(prior, shape))


def has_pyro_statements(prior: EffectPrior, shape: tuple[int, ...]) -> bool:
    """Whether ``prior(shape)`` records any sample site: latent hyper-parameters or factors.

    A torch loss that calls the prior outside a Pyro trace would silently drop such terms.
    """
    return bool(_prior_sites(prior, shape))


def _short(value: torch.Tensor) -> str:
    return f"{float(value):.4g}" if value.numel() == 1 else f"tensor{tuple(value.shape)}"
