"""The kernel a basis term's prior implies: :func:`prior_kernel` (spec §6).

Integrating out the coefficients ``a ~ N(0, Λ)`` of the columns ``φ(t)`` of ``fourier(t, M)`` or
``rff(t, M)`` gives each latent dimension the prior covariance ``φ(t)ᵀ Λ φ(t')``: with a
:class:`~pyro_lmmvae.gp.prior.SpectralPrior` this is the reduced-rank GP kernel (without its
``ω_0`` term ``q_0²``, which the intercept absorbs); with the default ``N(0, 1)`` prior it is
``φ(t)ᵀ φ(t')``. It reads the model's own prior objects, so learned kernel hyper-parameters and
custom priors are taken into account. Prior and posterior trajectories of the latent predictor
are :func:`pyro_lmmvae.inspection.latent_trajectories`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal, Protocol

import numpy as np
import torch

from pyro_lmmvae.models import MixedEffects
from pyro_lmmvae.priors import is_hierarchical
from pyro_lmmvae.pyro_module import local_params

if TYPE_CHECKING:
    from pyro_lmmvae.design import Design
    from pyro_lmmvae.priors import EffectPrior


class Estimator(Protocol):
    """What :func:`prior_kernel` reads of an estimator (:class:`~pyro_lmmvae.LMMVAE`)."""

    design: Design
    variant: str
    device: torch.device

    @property
    def model(self) -> torch.nn.Module: ...


__all__ = ["prior_kernel"]

Effect = Literal["fixed", "random"]
_TRIG = re.compile(r"\[(cos|sin)(\d+)\]$")


def _no_prior_message(model: Estimator) -> str:
    return (
        f"the effects of this {model.variant} model are point estimates (the sLMM-VAE default, "
        "or bayesian_effects=False): they have no prior, so there is no prior kernel; build the "
        "model with bayesian_effects=True for a prior on A"
    )


def _term_columns(design: Design, term: str, effect: Effect | None) -> tuple[Effect, list[int]]:
    """``(part, column indices)`` of a basis term, optionally restricted to one effect matrix."""
    if effect is None:
        return design.basis_columns(term)
    if effect not in ("fixed", "random"):
        raise ValueError(f"effect must be 'fixed', 'random' or None, got {effect!r}")
    columns = design.fixed_bases if effect == "fixed" else design.random_bases
    wanted = term.replace(" ", "")
    index = [
        j
        for j, col in enumerate(columns)
        if col is not None and col.term.replace(" ", "") == wanted
    ]
    if not index:
        terms = sorted({c.term for c in columns if c is not None})
        raise KeyError(
            f"{term!r} is not a basis term of the {effect} effects of formula "
            f"{design.formula!r}; {effect} basis terms: {terms}"
        )
    return effect, index


def _column_variance(
    prior: EffectPrior, shape: tuple[int, ...], what: str, device: torch.device
) -> np.ndarray:
    """Per-entry prior variance of an effect matrix, (L, columns), float64 on the CPU."""
    if is_hierarchical(prior, shape):
        raise ValueError(
            f"the {what} {prior.describe()} samples hyper-parameters of its own (a hierarchical "
            "prior): its marginal variance has no closed form here, so no prior kernel"
        )
    with local_params(), torch.no_grad():
        variance = prior(shape).variance
    variance = variance.detach().cpu().double().numpy()
    return variance.reshape(-1, *shape[-2:])[0] if len(shape) == 3 else variance


def _basis_blocks(labels: Sequence[str], index: Sequence[int], basis: str, n_columns: int):
    """Group a term's columns by the non-basis part of their label (the factor level).

    Returns ``{key: [column index at basis position 0 .. 2M-1]}``.
    """
    blocks: dict[str, list[int | None]] = {}
    for j in index:
        pieces = labels[j].split(":")
        position = None
        for i, piece in enumerate(pieces):
            match = _TRIG.search(piece)
            if match and piece.replace(" ", "").startswith(basis.replace(" ", "")):
                trig, harmonic = match.group(1), int(match.group(2))
                position = 2 * (harmonic - 1) + (trig == "sin")
                key = ":".join(pieces[:i] + pieces[i + 1 :])
                break
        if position is None:  # pragma: no cover - labels are built by the design
            raise RuntimeError(f"cannot locate the basis column in label {labels[j]!r}")
        blocks.setdefault(key, [None] * n_columns)[position] = j
    for key, block in blocks.items():
        if any(j is None for j in block):  # pragma: no cover - labels are built by the design
            raise RuntimeError(f"term columns of {key!r} do not cover the basis {basis!r}")
    return blocks


def prior_kernel(
    model: Estimator,
    term: str,
    t: np.ndarray | Sequence[float] | float,
    t_prime: np.ndarray | Sequence[float] | float | None = None,
    *,
    effect: Effect | None = None,
    latent: int | None = None,
) -> np.ndarray:
    """Prior covariance ``φ(t)ᵀ Λ φ(t')`` that one basis term implies for each latent dimension.

    The coefficients of the term's basis columns ``φ`` (``fourier`` or ``rff``, evaluated at raw
    covariate values) are integrated out under the model's prior on them, ``N(·, Λ)`` entry-wise
    (only the prior variance enters). With a
    :class:`~pyro_lmmvae.gp.prior.SpectralPrior` this is the reduced-rank GP kernel of
    spec §6 without its ``ω_0`` weight ``q_0²`` (the intercept's); with the default ``N(0, 1)``
    prior it is ``φ(t)ᵀ φ(t')``. For an interaction such as ``sex:fourier(age, 2)`` it is the
    kernel of the basis part, which each level (or continuous multiplier) scales.

    Parameters
    ----------
    model : LMMVAE
        A model with Bayesian effects (a prior on A); it need not be trained.
    term : str
        A formula term holding a basis, e.g. ``"fourier(age, 4)"``, ``"sex:fourier(age, 2)"``
        or ``"fourier(age, 2)"`` from a random term ``(1 + fourier(age, 2) | id)``; spaces are
        ignored.
    t : array_like, (n,)
        Covariate values in raw units.
    t_prime : array_like, (n',), optional
        Second set of values; ``t`` by default.
    effect : {"fixed", "random"}, optional
        Which effect matrix to look in, for a term that is both a fixed and a random term
        (``"~ fourier(t, 2) + (fourier(t, 2) | id)"``). By default the fixed one if it exists.
    latent : int, optional
        Latent dimension whose prior to read. Needed only when the prior differs between
        latent dimensions.

    Returns
    -------
    numpy.ndarray, (n, n'), float64
        The kernel matrix; identical for every latent dimension unless the prior differs.

    Raises
    ------
    KeyError
        If ``term`` is not a basis term of the formula.
    ValueError
        If the effects are point estimates (the sLMM-VAE default, ``bayesian_effects=False``) or
        the term's columns have no prior (the CVAE feeds them to its networks); if the prior's
        variance is not finite or it is hierarchical; if the prior differs between latent
        dimensions and ``latent`` is not given, or between the levels of an interaction.

    Examples
    --------
    >>> from pyro_lmmvae import LMMVAE, SpectralPrior
    >>> m = LMMVAE("~ 1 + fourier(t, 8, period=4)", data=df, y=y,  # doctest: +SKIP
    ...            fixed_prior=SpectralPrior("se", lengthscale=0.5))
    >>> K = prior_kernel(m, "fourier(t, 8, period=4)", np.linspace(0, 1, 50))  # doctest: +SKIP
    """
    design = model.design
    part, index = _term_columns(design, term, effect)
    effects = model.model.effects
    if not isinstance(effects, MixedEffects):
        raise ValueError(_no_prior_message(model))
    if part == "fixed" and not effects.n_fixed:
        raise ValueError(
            f"the fixed columns of {term!r} have no prior in this {model.variant} model: the "
            "CVAE feeds its covariates to the networks, not to a latent prior"
        )
    n_latent = effects.latent_dim
    if part == "fixed":
        variance = _column_variance(
            effects.fixed_prior, (n_latent, effects.n_fixed), "fixed-effect prior", model.device
        )
        columns, labels = design.fixed_bases, design.fixed_terms
    else:
        variance = _column_variance(
            effects.random_prior,
            (1, n_latent, effects.n_random),
            "random-effect prior",
            model.device,
        )
        columns, labels = design.random_bases, design.random_terms
    if latent is None:
        if not np.array_equal(variance, np.broadcast_to(variance[:1], variance.shape)):
            raise ValueError(
                f"the prior on {term!r} differs between latent dimensions: pass latent= "
                f"(0 .. {n_latent - 1})"
            )
        variance = variance[0]
    else:
        if isinstance(latent, bool) or not isinstance(latent, (int, np.integer)):
            raise TypeError(f"latent must be an integer, got {latent!r}")
        if not 0 <= latent < n_latent:
            raise ValueError(f"latent must be in 0 .. {n_latent - 1}, got {latent}")
        variance = variance[int(latent)]
    basis = columns[index[0]].basis
    n_basis = 2 * columns[index[0]].n_frequencies
    blocks = _basis_blocks(labels, index, basis, n_basis)
    lam = [variance[block] for block in blocks.values()]
    if not np.isfinite(np.concatenate(lam)).all():
        raise ValueError(
            f"the prior on {term!r} has an infinite or undefined variance: no prior kernel"
        )
    if any(not np.array_equal(other, lam[0]) for other in lam[1:]):
        raise ValueError(
            f"the prior gives the levels {sorted(blocks)} of {term!r} different variances, so "
            "the term has no single basis kernel"
        )
    t = np.atleast_1d(np.asarray(t, dtype=np.float64))
    t_prime = t if t_prime is None else np.atleast_1d(np.asarray(t_prime, dtype=np.float64))
    phi = design.basis_features(basis, t)
    phi_prime = phi if t_prime is t else design.basis_features(basis, t_prime)
    return (phi * lam[0]) @ phi_prime.T
