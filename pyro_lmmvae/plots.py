"""Figures of the demo: fixed effects against the truth, observed vs predicted trajectories."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: the demo writes files

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from pyro_lmmvae.io import write_atomic  # noqa: E402


def _save(fig, path: str | Path) -> Path:
    out = write_atomic(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110))
    plt.close(fig)
    return out


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
    fig, axes = plt.subplots(
        1, n_latent, figsize=(3.2 * n_latent, 0.45 * n_terms + 1.5), sharey=True
    )
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
    fig, axes = plt.subplots(
        len(labels), len(features), figsize=(4 * len(features), 2.6 * len(labels)), squeeze=False
    )
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
