"""Figures: the demo's effects and trajectories, and the prior-inspection plots.

Every figure is a :class:`matplotlib.figure.Figure` built without pyplot, so importing this
module never changes a notebook's backend, no figure is left open in pyplot's registry, and files
are written headless (Agg canvas) and atomically.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from pyro_lmmvae.io import write_atomic


def _save(fig: Figure, path: str | Path) -> Path:
    return write_atomic(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110))


def fixed_effects_forest(
    draws: np.ndarray, truth: np.ndarray, terms: list[str], path: str | Path
) -> Path:
    """Forest plot of fixed effects (mean ± 2 sd of the draws) with the true values.

    Parameters
    ----------
    draws : numpy.ndarray
        Draws aligned to the true latent coordinates, (S, L*, Q).
    truth : numpy.ndarray
        True fixed effects, (L*, Q).
    terms : list of str
        Names of the Q columns.
    path : str or Path
        PNG file to write.
    """
    n_latent, n_terms = truth.shape
    mean, sd = draws.mean(0), draws.std(0)
    fig = Figure(figsize=(3.2 * n_latent, 0.45 * n_terms + 1.5))
    axes = fig.subplots(1, n_latent, sharey=True)
    axes = np.atleast_1d(axes)
    ypos = np.arange(n_terms)[::-1]
    for latent, ax in enumerate(axes):
        ax.errorbar(
            mean[latent], ypos, xerr=2 * sd[latent], fmt="o", color="C0", label="estimate ± 2 sd"
        )
        ax.scatter(truth[latent], ypos, marker="x", color="C3", zorder=3, label="truth")
        ax.axvline(0, color="grey", lw=0.5)
        ax.set_title(f"latent {latent}")
    axes[0].set_yticks(ypos, terms)
    axes[-1].legend(loc="lower right", fontsize=8)
    fig.suptitle("Fixed effects, mapped to the true latent coordinates")
    fig.tight_layout()
    return _save(fig, path)


def trajectories(
    time: np.ndarray,
    observed: np.ndarray,
    observed_mask: np.ndarray,
    predicted: np.ndarray,
    truth: np.ndarray,
    is_test: np.ndarray,
    instances: np.ndarray,
    path: str | Path,
    features: tuple[int, ...] = (0, 1),
    baseline: np.ndarray | None = None,
) -> Path:
    """Observed values and predictions over time for a few instances and features.

    All arrays are row-aligned: ``time`` (N,), ``observed``/``observed_mask``/``predicted``/
    ``truth``/``baseline`` (N, D), ``is_test`` (N,) bool, ``instances`` (N,) labels. One panel per
    (instance, feature).
    """
    labels = list(dict.fromkeys(instances.tolist()))
    fig = Figure(figsize=(4 * len(features), 2.6 * len(labels)))
    axes = fig.subplots(len(labels), len(features), squeeze=False)
    for i, label in enumerate(labels):
        rows = np.flatnonzero(instances == label)
        rows = rows[np.argsort(time[rows])]
        for j, d in enumerate(features):
            ax = axes[i, j]
            train = rows[~is_test[rows] & observed_mask[rows, d]]
            test = rows[is_test[rows]]
            ax.plot(time[rows], truth[rows, d], color="grey", lw=1, label="truth")
            ax.scatter(time[train], observed[train, d], s=12, color="C0", label="observed (train)")
            ax.scatter(
                time[test],
                truth[test, d],
                s=16,
                marker="s",
                facecolors="none",
                edgecolors="C3",
                label="held out (test)",
            )
            ax.plot(time[rows], predicted[rows, d], color="C1", label="LMM-VAE prediction")
            if baseline is not None:
                ax.plot(time[rows], baseline[rows, d], color="C2", ls="--", label="VAE g(0)")
            ax.set_title(f"instance {label}, feature {d}", fontsize=9)
    axes[0, -1].legend(fontsize=7, loc="best")
    fig.tight_layout()
    return _save(fig, path)


# ------------------------------------------------------------------------------------------
# prior inspection (pyro_lmmvae.gp.inspection, pyro_lmmvae.inspection)
#
# Both functions return the Figure, also after writing ``path``.
# In a notebook, leave the figure as the cell's value (or ``IPython.display.display(fig)``).
# ------------------------------------------------------------------------------------------


def plot_kernel(
    matrix: np.ndarray,
    t: np.ndarray,
    *,
    t_prime: np.ndarray | None = None,
    title: str | None = None,
    path: str | Path | None = None,
    n_rows: int = 4,
) -> Figure:
    """A kernel matrix ``k(t, t')`` as a heatmap and as curves ``t ↦ k(t, t'_j)``.

    With at most ``n_rows`` columns (e.g. ``prior_kernel(m, term, t, [t0, t1])``) only the
    curves are drawn; otherwise a heatmap over ``(t', t)`` and the curves of ``n_rows`` evenly
    spaced columns.

    Parameters
    ----------
    matrix : numpy.ndarray, (n, n')
        Kernel values, e.g. from :func:`pyro_lmmvae.gp.inspection.prior_kernel`.
    t : numpy.ndarray, (n,)
        Covariate values of the rows.
    t_prime : numpy.ndarray, (n',), optional
        Covariate values of the columns; ``t`` by default (then ``matrix`` must be square).
    title : str, optional
        Figure title.
    path : str or Path, optional
        PNG file to write (atomically).
    n_rows : int, default 4
        Number of kernel curves ``k(·, t'_j)`` to draw.

    Returns
    -------
    matplotlib.figure.Figure
        The figure, also when it was written to ``path``.
    """
    matrix = np.asarray(matrix, dtype=float)
    t = np.asarray(t, dtype=float).reshape(-1)
    t_prime = t if t_prime is None else np.asarray(t_prime, dtype=float).reshape(-1)
    if matrix.ndim != 2 or matrix.shape != (t.size, t_prime.size):
        raise ValueError(
            f"matrix has shape {matrix.shape}; expected (len(t), len(t_prime)) = "
            f"({t.size}, {t_prime.size})"
        )
    if n_rows < 1:
        raise ValueError(f"n_rows must be at least 1, got {n_rows}")
    heatmap = t_prime.size > n_rows
    fig = Figure(figsize=(9.5 if heatmap else 5.0, 4.0), layout="constrained")
    axes = fig.subplots(1, 2 if heatmap else 1, squeeze=False)[0]
    if heatmap:
        ax = axes[0]
        order, order_prime = np.argsort(t), np.argsort(t_prime)
        image = ax.pcolormesh(
            t_prime[order_prime],
            t[order],
            matrix[np.ix_(order, order_prime)],
            shading="nearest",
            cmap="viridis",
        )
        fig.colorbar(image, ax=ax, label="k(t, t')")
        ax.set_xlabel("t'")
        ax.set_ylabel("t")
        ax.set_title("kernel matrix")
        columns = np.unique(np.linspace(0, t_prime.size - 1, n_rows).round().astype(int))
    else:
        columns = np.arange(t_prime.size)
    ax = axes[-1]
    order = np.argsort(t)
    for j in columns:
        ax.plot(t[order], matrix[order, j], lw=1.2, label=f"t' = {t_prime[j]:.4g}")
        ax.axvline(t_prime[j], color="grey", lw=0.5, ls=":")
    ax.axhline(0, color="grey", lw=0.5)
    ax.set_xlabel("t")
    ax.set_ylabel("k(t, t')")
    ax.set_title("kernel rows")
    ax.legend(fontsize=7, loc="best")
    if title:
        fig.suptitle(title)
    if path is not None:
        _save(fig, path)
    return fig


def _curves(ds, x: str) -> list[tuple[str, np.ndarray]]:
    """Points of ``ds`` split into curves: one per combination of the other grid coordinates."""
    others = [
        name
        for name, coord in ds.coords.items()
        if coord.dims == ("point",) and name not in ("point", x)
    ]
    if not others:
        return [("", np.arange(ds.sizes["point"]))]

    def shown(value) -> object:
        missing = value is None or (isinstance(value, float) and np.isnan(value))
        return "missing" if missing else value

    keys = [
        ", ".join(f"{name}={shown(ds.coords[name].values[i])}" for name in others)
        for i in range(ds.sizes["point"])
    ]
    curves: dict[str, list[int]] = {}
    for i, key in enumerate(keys):
        curves.setdefault(key, []).append(i)
    return [(key, np.asarray(points)) for key, points in curves.items()]


def plot_trajectories(
    ds,
    x: str,
    *,
    latent: int | Sequence[int] | None = None,
    path: str | Path | None = None,
    n_prior_draws: int = 5,
) -> Figure:
    """Prior and posterior trajectories of the latent linear predictor against a grid column.

    One panel per latent dimension: the posterior mean ± 2 sd as a line and a band, and the
    first ``n_prior_draws`` prior draws as thin lines (if the dataset has them). Points that
    differ in another grid coordinate (e.g. the instance) are drawn as separate curves.

    Parameters
    ----------
    ds : xarray.Dataset
        The result of :func:`pyro_lmmvae.inspection.latent_trajectories`.
    x : str
        Grid coordinate along ``point`` for the horizontal axis, e.g. ``"t"``.
    latent : int or sequence of int, optional
        Latent dimensions to draw (all by default).
    path : str or Path, optional
        PNG file to write (atomically).
    n_prior_draws : int, default 5
        Prior draws to draw per curve.

    Returns
    -------
    matplotlib.figure.Figure
        The figure, also when it was written to ``path``.
    """
    if x not in ds.coords or ds.coords[x].dims != ("point",):
        grid = [n for n, c in ds.coords.items() if c.dims == ("point",) and n != "point"]
        raise KeyError(f"{x!r} is not a grid coordinate of the dataset; grid coordinates: {grid}")
    all_latents = ds.coords["latent"].values.tolist()
    if latent is None:
        latents = all_latents
    else:
        latents = [latent] if np.ndim(latent) == 0 else list(latent)
        unknown = [lat for lat in latents if lat not in all_latents]
        if unknown:
            raise ValueError(f"latent {unknown} not in the dataset's latents {all_latents}")
    n = len(latents)
    n_cols = min(n, 3)
    n_rows = -(-n // n_cols)
    fig = Figure(figsize=(4.2 * n_cols, 3.2 * n_rows), layout="constrained")
    axes = fig.subplots(n_rows, n_cols, squeeze=False).reshape(-1)
    values = np.asarray(ds.coords[x].values, dtype=float)
    curves = _curves(ds, x)
    has_prior = "prior_draws" in ds
    for ax, lat in zip(axes, latents, strict=False):
        mean = ds["posterior_mean"].sel(latent=lat).values
        sd = ds["posterior_sd"].sel(latent=lat).values
        for c, (key, points) in enumerate(curves):
            points = points[np.argsort(values[points], kind="stable")]
            color = f"C{c % 10}"
            suffix = f" ({key})" if key else ""
            if has_prior:
                prior = ds["prior_draws"].sel(latent=lat).values
                for d in range(min(n_prior_draws, prior.shape[0])):
                    ax.plot(
                        values[points],
                        prior[d, points],
                        color=color,
                        lw=0.6,
                        alpha=0.45,
                        ls="--",
                        label=f"prior draws{suffix}" if d == 0 else None,
                    )
            ax.fill_between(
                values[points],
                mean[points] - 2 * sd[points],
                mean[points] + 2 * sd[points],
                color=color,
                alpha=0.25,
                lw=0,
            )
            ax.plot(values[points], mean[points], color=color, lw=1.8, label=f"posterior{suffix}")
        ax.set_title(f"latent {lat}")
        ax.set_xlabel(x)
        ax.set_ylabel("eta")
    for ax in axes[n:]:
        ax.set_visible(False)
    axes[0].legend(fontsize=7, loc="best")
    fig.suptitle("posterior mean ± 2 sd" + (" and prior draws" if has_prior else ""))
    if path is not None:
        _save(fig, path)
    return fig
