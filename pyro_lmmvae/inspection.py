"""What the latent prior implies: basis-term kernels and prior vs posterior trajectories.

Two views of the latent linear mixed model ``eta = A_f x + u_p w`` (spec §1, §6):

* :func:`prior_kernel` integrates out one basis term's coefficients. With coefficients
  ``a ~ N(0, Λ)`` on the columns ``φ(t)`` of ``fourier(t, M)`` or ``rff(t, M)``, each latent
  dimension gets the prior covariance ``φ(t)ᵀ Λ φ(t')``: with a
  :class:`~pyro_lmmvae.spectral_priors.SpectralPrior` this is the reduced-rank GP kernel (without
  its ``ω_0`` term ``q_0²``, which the intercept absorbs); with the default ``N(0, 1)`` prior it is
  ``φ(t)ᵀ φ(t')``.
* :func:`latent_trajectories` evaluates ``eta`` along a grid of covariates under the prior
  p(A_f) p(u_p) and under the variational posterior q(A_f) q(u_p) (or the point estimates), as
  an :class:`xarray.Dataset` ready for plotting (:func:`pyro_lmmvae.plots.plot_trajectories`).

Both read the model's own prior objects, so learned kernel hyper-parameters and custom priors
are taken into account.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

import numpy as np
import pandas as pd
import torch
import xarray as xr
from pyro import poutine
from pyro.infer import Predictive
from pyro.poutine.util import site_is_subsample

from pyro_lmmvae.models import MixedEffects
from pyro_lmmvae.models.effects import FIXED_SITE, RANDOM_SITE
from pyro_lmmvae.priors import is_hierarchical
from pyro_lmmvae.pyro_module import local_params

if TYPE_CHECKING:
    from pyro_lmmvae.api import LMMVAE
    from pyro_lmmvae.design import Design
    from pyro_lmmvae.priors import EffectPrior

__all__ = ["latent_trajectories", "prior_kernel"]

Effect = Literal["fixed", "random"]
_RESERVED = (
    "point",
    "latent",
    "draw",
    "posterior_mean",
    "posterior_sd",
    "posterior_draws",
    "prior_mean",
    "prior_sd",
    "prior_draws",
)
_TRIG = re.compile(r"\[(cos|sin)(\d+)\]$")


def _no_prior_message(model: LMMVAE) -> str:
    return (
        f"the effects of this {model.variant} model are point estimates (the sLMM-VAE default, "
        "or bayesian_effects=False): they have no prior, so there is no prior to inspect; "
        "build the model with bayesian_effects=True for a prior on A"
    )


# ------------------------------------------------------------------------------------------
# prior kernel
# ------------------------------------------------------------------------------------------


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


def _cuda_devices(device: torch.device) -> list[int]:
    """Devices whose RNG state :func:`torch.random.fork_rng` must save and restore."""
    return [device.index or 0] if device.type == "cuda" else []


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
    model: LMMVAE,
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
    :class:`~pyro_lmmvae.spectral_priors.SpectralPrior` this is the reduced-rank GP kernel of
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
    >>> from pyro_lmmvae.spectral_priors import SpectralPrior
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


# ------------------------------------------------------------------------------------------
# latent trajectories
# ------------------------------------------------------------------------------------------


def _with_instances(design: Design, grid: pd.DataFrame) -> pd.DataFrame:
    """The grid with a placeholder unseen instance for rows with no (or a missing) instance.

    All such rows form one new instance: the population curve under the posterior, one draw of
    the random effects per prior draw.
    """
    name = design.instance
    if name is None:
        return grid
    labels = grid[name] if name in grid.columns else pd.Series([np.nan] * len(grid))
    labels = labels.reset_index(drop=True)
    missing = labels.isna().to_numpy()
    if not missing.any():
        return grid
    taken = set(design.groups.tolist()) | set(labels[~missing].tolist())
    if np.issubdtype(np.asarray(design.groups).dtype, np.number):
        numbers = [float(v) for v in taken if isinstance(v, (int, float, np.number))]
        placeholder = max(numbers, default=0.0) + 1.0
    else:
        placeholder = "<population>"
        while placeholder in taken:
            placeholder = f"<{placeholder}>"
    frame = grid.reset_index(drop=True).copy()
    frame[name] = labels.astype(object).where(~missing, placeholder)
    if isinstance(placeholder, float):
        frame[name] = pd.to_numeric(frame[name])
    return frame


def _eta(
    fixed: torch.Tensor | None,
    random: torch.Tensor | None,
    x: torch.Tensor,
    w: torch.Tensor,
    local: torch.Tensor,
    n_latent: int,
) -> torch.Tensor:
    """``A x + u[local] w`` for draws ``fixed`` (S, L, Q) and ``random`` (S, B, L, k): (S, n, L)."""
    leading = (fixed if fixed is not None else random).shape[0]
    eta = x.new_zeros(leading, x.shape[0], n_latent)
    if fixed is not None:
        eta = eta + torch.einsum("slq,nq->snl", fixed, x)
    if random is not None:
        eta = eta + torch.einsum("snlk,nk->snl", random[:, local], w)
    return eta


def _moments(
    fixed: tuple[torch.Tensor, torch.Tensor] | None,
    random: tuple[torch.Tensor, torch.Tensor] | None,
    x: torch.Tensor,
    w: torch.Tensor,
    local: torch.Tensor,
    n_latent: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and variance of ``A x + u[local] w``, each (n, L): entries of A independent, u's
    terms independent or (given covariances) jointly Normal."""
    mean = x.new_zeros(x.shape[0], n_latent)
    var = x.new_zeros(x.shape[0], n_latent)
    if fixed is not None:
        mean = mean + x @ fixed[0].T
        var = var + x.square() @ fixed[1].T
    if random is not None:
        mean = mean + torch.einsum("nlk,nk->nl", random[0][local], w)
        if random[1].dim() == 4:  # covariances (P, L, k, k) of a joint prior: w' Σ w
            var = var + torch.einsum("nk,nlkj,nj->nl", w, random[1][local], w)
        else:
            var = var + torch.einsum("nlk,nk->nl", random[1][local], w.square())
    return mean, var


def _samples_hyper_sites(trace) -> bool:
    """Whether a trace of the effects holds sample sites besides the two effect sites."""
    return any(
        site["type"] == "sample"
        and not site["is_observed"]
        and not site_is_subsample(site)
        and name not in (FIXED_SITE, RANDOM_SITE)
        for name, site in trace.nodes.items()
    )


def _prior_trajectories(model: LMMVAE, batch, num_draws: int, seed: int) -> dict:
    """Draws of eta from p(A_f) p(u), and its prior mean and sd (analytic when possible).

    The draws run the model's own effect sites. A prior that samples hyper-parameters of its
    own (hierarchical) is run once per draw, and its moments are then the draws' moments.
    """
    effects = model.model.effects
    n_latent = effects.latent_dim
    n_instances = len(batch.instances)
    cuda = _cuda_devices(batch.x.device)
    with torch.random.fork_rng(devices=cuda), local_params(), torch.no_grad():
        torch.manual_seed(seed)
        hierarchical = _samples_hyper_sites(poutine.trace(effects).get_trace(batch))
        torch.manual_seed(seed)
        # one vectorized run, or one run per draw for a prior written for a single draw
        predictive = Predictive(
            effects,
            num_samples=num_draws,
            parallel=not hierarchical,
            return_sites=[s for s, n in ((FIXED_SITE, effects.n_fixed), (RANDOM_SITE, 1)) if n],
        )
        samples = predictive(batch)

    def stacked(site: str, shape: tuple[int, ...]) -> torch.Tensor:
        return samples[site].detach().cpu().reshape(num_draws, *shape)

    fixed = random = None
    if effects.n_fixed:
        fixed = stacked(FIXED_SITE, (n_latent, effects.n_fixed))
    if effects.n_random:
        random = stacked(RANDOM_SITE, (n_instances, n_latent, effects.n_random))
    x, w, local = batch.x.cpu(), batch.w.cpu(), batch.local.cpu()
    draws = _eta(fixed, random, x, w, local, n_latent)
    if hierarchical:
        mean = draws.mean(0)
        sd = draws.std(0) if num_draws > 1 else torch.full_like(mean, float("nan"))
        how = f"empirical over the {num_draws} draws (the prior samples hyper-parameters)"
    else:
        with local_params(), torch.no_grad():
            fixed_moments = random_moments = None
            if effects.n_fixed:
                p = effects.fixed_prior((n_latent, effects.n_fixed))
                fixed_moments = (p.mean.cpu(), p.variance.cpu())
            if effects.n_random:
                p = effects.random_prior((n_instances, n_latent, effects.n_random))
                joint = len(p.event_shape) == 1  # correlated terms: keep the covariances
                spread = p.covariance_matrix if joint else p.variance
                random_moments = (p.mean.cpu(), spread.cpu())
        mean, var = _moments(fixed_moments, random_moments, x, w, local, n_latent)
        sd = var.sqrt()
        how = "analytic (entry-wise prior means and variances)"
    return {"draws": draws, "mean": mean, "sd": sd, "how": how}


def latent_trajectories(
    model: LMMVAE, grid: pd.DataFrame, *, num_draws: int = 20, seed: int = 0
) -> xr.Dataset:
    """Prior and posterior trajectories of the latent linear predictor ``eta = A_f x + u_p w``.

    Each row of ``grid`` is a point (e.g. a grid over ``age`` with the other covariates fixed).
    Under the posterior, a row whose instance was seen in training uses that instance's random
    effects q(u_p); a row of an unseen instance, or with no (or a missing) instance, gets the
    population curve (random effects at their prior mean, zero). Under the prior every instance
    draws its own random effects from p(u); the rows without an instance share one such draw.
    ``eta`` excludes the latent noise ``σ_z`` and, for the sLMM-VAE, the instance offsets.

    Parameters
    ----------
    model : LMMVAE
        Any model with effect matrices (not a plain VAE or a CVAE); it need not be trained.
    grid : pandas.DataFrame
        Covariates of the points: every column the formula uses, and optionally the instance
        column.
    num_draws : int, default 20
        Draws of the trajectories from the posterior and from the prior.
    seed : int, default 0
        Seed of the draws; the caller's global RNG state is left unchanged.

    Returns
    -------
    xarray.Dataset
        Variables ``posterior_mean``, ``posterior_sd`` (point, latent) and ``posterior_draws``
        (draw, point, latent) from q(A_f) q(u_p) (point estimates: sd 0 and identical draws);
        ``prior_mean``, ``prior_sd`` (point, latent) and ``prior_draws`` (draw, point, latent)
        from p(A_f) p(u_p), absent when the effects are point estimates (the ``prior``
        attribute says why). Coordinates: ``point`` (0 .. n-1), one coordinate per column of
        ``grid`` along ``point``, ``latent`` and ``draw``. Attributes: ``formula``, ``variant``,
        ``objective``, the priors, ``num_draws`` and ``seed``.

    Raises
    ------
    ValueError
        If the model has no effect matrices, ``num_draws`` is not a positive integer, or a grid
        column is named like a dimension or variable of the result.
    """
    if isinstance(num_draws, bool) or not isinstance(num_draws, (int, np.integer)) or num_draws < 1:
        raise ValueError(f"num_draws must be a positive integer, got {num_draws!r}")
    if not isinstance(grid, pd.DataFrame):
        raise TypeError(f"grid must be a pandas DataFrame, got {type(grid).__name__}")
    if len(grid) == 0:
        raise ValueError("grid has no rows")
    clash = sorted(set(map(str, grid.columns)) & set(_RESERVED))
    if clash:
        raise ValueError(f"grid column(s) {clash} clash with the result's names: rename them")
    num_draws = int(num_draws)
    estimates = model.pair.effect_estimates
    n_latent = model.latent_dim
    if not (estimates.n_fixed or estimates.n_random):
        raise ValueError(
            "this model has no latent linear predictor: its formula is empty ('~ 0', a plain "
            "VAE) or it is a CVAE, whose covariates feed the networks, not a latent prior"
        )
    batch = model.tensors(_with_instances(model.design, grid), unseen="prior").full_batch()
    x, w, local = batch.x.cpu(), batch.w.cpu(), batch.local.cpu()
    generator = torch.Generator().manual_seed(int(seed))
    with local_params(), torch.no_grad():
        mean, var = (t.detach().cpu() for t in estimates.predictor_moments(batch))
        seen = batch.instances >= 0
        fixed, random = estimates.draw(num_draws, batch.instances.clamp(min=0), generator)
        if random is not None:  # unseen instances: the prior mean of their random effects
            random = random * seen.cpu()[:, None, None]
    posterior_draws = _eta(fixed, random, x, w, local, n_latent)

    point_dims, draw_dims = ("point", "latent"), ("draw", "point", "latent")
    data_vars = {
        "posterior_mean": (point_dims, mean.double().numpy()),
        "posterior_sd": (point_dims, var.clamp(min=0).sqrt().double().numpy()),
        "posterior_draws": (draw_dims, posterior_draws.double().numpy()),
    }
    effects = model.model.effects
    attrs = {
        "formula": model.design.formula,
        "variant": model.variant,
        "objective": model.objective,
        "num_draws": num_draws,
        "seed": int(seed),
        "quantity": "eta = A_f x + u_p w (no latent noise sigma_z, no sLMM offsets)",
        "grid_columns": ", ".join(map(str, grid.columns)),
    }
    if isinstance(effects, MixedEffects):
        prior = _prior_trajectories(model, batch, num_draws, int(seed))
        data_vars["prior_mean"] = (point_dims, prior["mean"].double().numpy())
        data_vars["prior_sd"] = (point_dims, prior["sd"].double().numpy())
        data_vars["prior_draws"] = (draw_dims, prior["draws"].double().numpy())
        attrs["posterior"] = estimates.description
        attrs["prior"] = "draws from p(A_f) p(u_p); prior_mean and prior_sd " + prior["how"]
        attrs["fixed_prior"] = effects.fixed_prior.describe() if effects.n_fixed else "none"
        attrs["random_prior"] = effects.random_prior.describe() if effects.n_random else "none"
    else:
        attrs["posterior"] = "point estimates of A_f and u_p (sd 0, identical draws)"
        attrs["prior"] = "unavailable: " + _no_prior_message(model)
    coords = {
        "point": np.arange(len(grid)),
        "latent": np.arange(n_latent),
        "draw": np.arange(num_draws),
    }
    for column in grid.columns:
        coords[str(column)] = ("point", grid[column].to_numpy())
    return xr.Dataset(data_vars, coords=coords, attrs=attrs)
