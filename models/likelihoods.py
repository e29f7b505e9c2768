"""Observation models p(y | decoder output), masked to the observed entries."""

from __future__ import annotations

import math

import pyro.distributions as dist
import torch
from torch import nn
from torch.nn import functional as F

from pyro_lmmvae.pyro_module import LocalPyroModule

_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


class Likelihood(LocalPyroModule):
    """Base class: maps the decoder output to a distribution over y with batch shape (..., D).

    ``support`` is the interval the observed entries of y must lie in (None: the real line),
    checked before training.
    """

    support: tuple[float, float] | None = None

    def forward(self, decoded: torch.Tensor) -> dist.TorchDistribution:  # pragma: no cover
        raise NotImplementedError

    def mean(self, decoded: torch.Tensor) -> torch.Tensor:
        """The expected observation given the decoder output (used for imputation, prediction)."""
        raise NotImplementedError  # pragma: no cover

    def log_density(self, decoded: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Entry-wise ``log p(y | decoded)``, (..., D): the torch losses' fast path."""
        return self(decoded).log_prob(y)


class GaussianLikelihood(Likelihood):
    """``y_d ~ Normal(g(z)_d, sigma_d)`` with fixed or learned per-feature noise.

    Parameters
    ----------
    obs_dim : int
        Number of features D.
    scale : float, optional
        A fixed noise standard deviation (e.g. 0.1 for images in [0, 1]). If omitted the noise is
        learned per feature as ``floor + softplus(raw)``.
    init_scale : float, default 1.0
        Initial learned noise standard deviation.
    floor : float, default 0.01
        Lower bound of the learned noise standard deviation.
    """

    def __init__(
        self, obs_dim: int, scale: float | None = None, init_scale: float = 1.0, floor: float = 0.01
    ) -> None:
        super().__init__()
        self.obs_dim = obs_dim
        self.learned = scale is None
        self.floor = float(floor)
        if self.learned:
            if not init_scale > floor:
                raise ValueError(f"init_scale ({init_scale}) must exceed floor ({floor})")
            raw = math.log(math.expm1(init_scale - floor))
            self.raw_scale = nn.Parameter(torch.full((obs_dim,), raw))
        else:
            if not scale > 0:
                raise ValueError(f"scale must be positive, got {scale}")
            self.register_buffer("fixed_scale", torch.full((obs_dim,), float(scale)))

    @property
    def scale(self) -> torch.Tensor:
        """Per-feature noise standard deviation, shape (D,)."""
        if self.learned:
            return self.floor + F.softplus(self.raw_scale)
        return self.fixed_scale

    def forward(self, decoded: torch.Tensor) -> dist.TorchDistribution:
        return dist.Normal(decoded, self.scale)

    def mean(self, decoded: torch.Tensor) -> torch.Tensor:
        return decoded

    def log_density(self, decoded: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Entry-wise Normal log-density; ``log sigma`` on the D features only, not n × D."""
        scale = self.scale
        return -0.5 * ((y - decoded) / scale).square() - (scale.log() + _HALF_LOG_2PI)


class BernoulliLikelihood(Likelihood):
    """``y_d ~ Bernoulli(sigmoid(g(z)_d))``: the decoder outputs logits; y in [0, 1].

    Pyro's Bernoulli accepts fractional targets (a continuous relaxation commonly used for
    grey-scale images), so validation of the support is switched off for y.
    """

    support = (0.0, 1.0)

    def __init__(self, obs_dim: int) -> None:
        super().__init__()
        self.obs_dim = obs_dim

    def forward(self, decoded: torch.Tensor) -> dist.TorchDistribution:
        return dist.Bernoulli(logits=decoded, validate_args=False)

    def mean(self, decoded: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(decoded)


LIKELIHOOD_CLASSES = {"gaussian": GaussianLikelihood, "bernoulli": BernoulliLikelihood}


def likelihood_support(spec: str | Likelihood) -> tuple[float, float] | None:
    """The ``support`` of a likelihood or of a likelihood's name (None for an unknown name:
    :func:`make_likelihood` rejects it)."""
    if isinstance(spec, Likelihood):
        return spec.support
    kind = LIKELIHOOD_CLASSES.get(spec) if isinstance(spec, str) else None
    return None if kind is None else kind.support


def make_likelihood(
    spec: str | Likelihood, obs_dim: int, noise_scale: float | None = None
) -> Likelihood:
    """Build a likelihood from a name (``"gaussian"``, ``"bernoulli"``) or pass one through."""
    if isinstance(spec, Likelihood):
        return spec
    if spec == "gaussian":
        return GaussianLikelihood(obs_dim, scale=noise_scale)
    if spec == "bernoulli":
        if noise_scale is not None:
            raise ValueError("noise_scale applies to the Gaussian likelihood only")
        return BernoulliLikelihood(obs_dim)
    raise ValueError(f"unknown likelihood {spec!r}; use 'gaussian', 'bernoulli' or a Likelihood")
