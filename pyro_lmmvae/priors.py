"""Swappable priors on the effect matrices.

A prior is a :class:`EffectPrior`, a small :class:`~pyro.nn.PyroModule` that returns the
distribution of an effect tensor of a given shape. Any Pyro distribution can be used directly:
:func:`as_prior` wraps it in :class:`DistributionPrior`, which stores its parameters as buffers so
that the prior follows the model to the GPU and into checkpoints. :class:`LearnedScaleNormal`
learns its scale as a point estimate on the ELBO (the spec's ``learn_sigma_u``).

With the mean-field Normal guide, :class:`~pyro.infer.TraceMeanField_ELBO` uses the analytic KL
whenever torch registers one for the pair (Normal, Laplace, Gumbel priors); otherwise (StudentT,
Cauchy, ...) it falls back to a Monte Carlo estimate of ``log q - log p``. Priors that sample
hyper-parameters cannot be trained yet (the guide has no factor for those sites).

Examples
--------
>>> import pyro.distributions as dist
>>> prior = as_prior(dist.Laplace(0.0, 0.5))
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

from .pyro_module import LocalPyroModule
from .spectral import KERNEL_NAMES


class EffectPrior(LocalPyroModule):
    """Base class: ``prior(shape)`` returns a distribution with ``batch_shape == shape``.

    :meth:`forward` is called inside the model, within the plates of the effect site.
    Subclasses may sample hyper-parameters of their own (hierarchical priors): ``effects()``
    and prior draws handle them, but training does not yet (the guide has no factor for them);
    learn such scales as :class:`~pyro.nn.PyroParam` point estimates instead.
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

    def bind(self, columns) -> None:
        """Learn which columns the effect matrix has (``Design.fixed_bases`` or ``random_bases``).

        Called by the model when the prior is attached. Priors that treat every column alike
        ignore it; :class:`~pyro_lmmvae.spectral_priors.SpectralPrior` reads the basis columns.
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


def as_prior(
    prior: EffectPrior | dist.TorchDistribution | str | None, default_scale: float = 1.0
) -> EffectPrior:
    """Turn a user's prior specification into an :class:`EffectPrior`.

    Parameters
    ----------
    prior : EffectPrior, pyro distribution, str or None
        ``None`` gives ``Normal(0, default_scale)``; a distribution is wrapped in
        :class:`DistributionPrior`; ``"learned_scale"`` gives :class:`LearnedScaleNormal`; a
        kernel name (``"se"``, ``"matern12"``, ``"matern32"``, ``"matern52"``, ``"periodic"``)
        gives a :class:`~pyro_lmmvae.spectral_priors.SpectralPrior` with default settings.
    default_scale : float, default 1.0
        Scale of the default Normal prior.
    """
    if prior is None:
        return DistributionPrior(dist.Normal(0.0, default_scale))
    if isinstance(prior, EffectPrior):
        return prior
    if isinstance(prior, str):
        if prior == "learned_scale":
            return LearnedScaleNormal(default_scale)
        if prior in KERNEL_NAMES:
            from .spectral_priors import SpectralPrior  # noqa: PLC0415 (it builds on this module)

            return SpectralPrior(prior, scale=default_scale)
        raise ValueError(
            f"unknown prior name {prior!r}; use 'learned_scale', a kernel name {KERNEL_NAMES} "
            "or a distribution"
        )
    return DistributionPrior(prior)
