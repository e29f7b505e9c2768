"""``fit()`` defaults on a longitudinal design of our own, beside trivial predictors.

The evidence for item 8 of the "Defaults that fit" issue: on a synthetic design that is not
:func:`pyro_lmmvae.datasets.make_synthetic`, LMM-VAE with ``fit()`` defaults must predict
held-out future rows at less than half the population-mean MSE, for the oLMM and sLMM, each
trained with the ELBO and the GSNN objective.

The design (:func:`make_design`, numpy only, one ``numpy.random.default_rng(seed)``):

* **Instances and visits.** P instances (default 200), labelled ``"p000"``, ...; instance p has
  a number of visits drawn uniformly from 4–15, at times drawn uniformly from [0, 5] and sorted
  (irregular and instance-specific, unlike ``make_synthetic``'s common grid on [0, 1]).
* **Covariates.** ``age`` at baseline (one value per instance, N(50, 10²), years, not
  standardised), ``site`` a 3-level categorical of strings ``"north"``, ``"south"``, ``"west"``
  (uniform per instance), the visit time ``t`` and the interaction ``site:t``.
* **Latent LMM** with L* = 3 dimensions, ``z = A x + U_p w + eps``: ``x`` holds the columns of
  ``1 + age + site + t + site:t`` (age as (age - 50) / 10, treatment coding against ``north``),
  ``w = (1, t)``; the fixed effects A are drawn once (intercept N(0, 0.5²), age N(0, 0.4²), site
  N(0, 0.5²), t N(0, 0.3²) per unit of t, site:t N(0, 0.15²)); per instance and latent
  dimension a correlated random intercept and slope on t, N(0, Σ) with sds 0.6 and 0.2 per unit
  of t and correlation 0.4; a row residual eps ~ N(0, 0.1²).
* **Decoder.** A fixed random 2-layer tanh MLP ``3 -> 32 -> 20`` (D = 20), whose output is
  shifted and scaled once so that every feature of the noiseless data has mean 0 and sd 1 over
  the sample. The **noiseless target** is this ``g(z)`` (z includes eps, which no predictor can
  foresee; its share is small); the **observation** adds Gaussian noise of sd 0.1.
* **Missingness.** 20 % of the entries are missing completely at random (a row whose entries
  are all missing gets one back, so every row has an observed entry).
* **Split.** 30 % of the instances (rounded) give their last 2 visits to the **future** rows;
  their earlier visits, and every visit of the other instances, are **training** rows. There is
  no validation set: ``fit()``'s default trains on every training row and stops when the
  training objective converges.

Each model is ``LMMVAE(formula, data, y, mask, latent_dim=3, variant=..., objective=...)`` with
``fit(progress=False, seed=seed)`` (the constructor gets the same ``seed=``): no epochs,
learning rates, batch size or validation are given. The formula is
``~ 1 + age + site + t + site:t + (1 + t | id)``, except for the ELBO-trained sLMM, whose
per-instance offset is already its random intercept, so it gets ``(0 + t | id)`` (as the demo
does). The future rows are predicted with ``model.predict(future_covariates)`` (their instances
were seen in training).

Trivial predictors of the same future rows, all from the training rows' observed entries:

* ``population mean``: the per-feature mean;
* ``per-time mean``: the per-feature mean within 10 equal bins of t over [0, 5] (the population
  mean for an empty bin);
* ``last frame``: the instance's last training visit, its missing entries filled by the
  population mean;
* ``ridge``: per feature, ridge regression (penalty 1e-2, intercept unpenalised) on the
  fixed-effect columns of the formula (1, age, site, t, site:t).

MSE is over the observed entries of the future rows, against the noiseless targets ("clean")
and against the noisy observations ("noisy", whose floor is the noise variance 0.01). The ratio
is a model's MSE over the population mean's.

Run ``python -m benchmarks.default_fit`` (JSON) or with ``--markdown`` (the BENCHMARKS.md
tables); ``--seeds 0 1`` sets both the data and the model seed of each run.
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from pyro_lmmvae.io import write_text_atomic

SITES = ("north", "south", "west")
FIXED_TERMS = (
    "Intercept",
    "age",
    "site[south]",
    "site[west]",
    "t",
    "site[south]:t",
    "site[west]:t",
)
FORMULA = "~ 1 + age + site + t + site:t + (1 + t | id)"
#: The ELBO-trained sLMM's per-instance offset is its random intercept (as in the demo).
SLMM_ELBO_FORMULA = FORMULA.replace("(1 + t | id)", "(0 + t | id)")
MODELS = {
    # name: (variant, objective)
    "olmm-elbo": ("olmm", "elbo"),
    "olmm-gsnn": ("olmm", "gsnn"),
    "slmm-elbo": ("slmm", "elbo"),
    "slmm-gsnn": ("slmm", "gsnn"),
}
VARIATIONS = {
    # name: (a key of MODELS, the one constructor option changed); run only when asked for
    "olmm-elbo-structured": ("olmm-elbo", {"effects_guide": "structured"}),
    "olmm-gsnn-structured": ("olmm-gsnn", {"effects_guide": "structured"}),
}
BASELINES = ("population mean", "per-time mean", "last frame", "ridge")
T_MAX = 5.0
TIME_BINS = 10
RIDGE_PENALTY = 1e-2


@dataclass(frozen=True)
class DesignData:
    """One draw of the design.

    Attributes
    ----------
    data : pandas.DataFrame
        Covariates, one row per visit, ordered by instance then time: ``id``, ``age``, ``site``,
        ``t``, ``visit`` (0-based within the instance) and ``split`` (``"train"`` or
        ``"future"``).
    y : numpy.ndarray, (N, D)
        Noisy observations, 0 where missing.
    y_clean : numpy.ndarray, (N, D)
        Noiseless targets g(z) (every entry, missing or not).
    mask : numpy.ndarray of bool, (N, D)
        Observed entries.
    z : numpy.ndarray, (N, L*)
        True latents.
    noise_std : float
        Standard deviation of the observation noise.
    """

    data: pd.DataFrame
    y: np.ndarray
    y_clean: np.ndarray
    mask: np.ndarray
    z: np.ndarray
    noise_std: float

    def rows(self, split: str) -> np.ndarray:
        """Boolean row selector of ``"train"`` or ``"future"``."""
        return (self.data["split"] == split).to_numpy()


def fixed_columns(data: pd.DataFrame) -> np.ndarray:
    """The generator's fixed-effect columns, in the order of :data:`FIXED_TERMS`.

    Parameters
    ----------
    data : pandas.DataFrame
        With ``age``, ``site`` and ``t``.

    Returns
    -------
    numpy.ndarray, (N, 7)
    """
    t = data["t"].to_numpy(dtype=float)
    south = (data["site"] == "south").to_numpy(dtype=float)
    west = (data["site"] == "west").to_numpy(dtype=float)
    age = (data["age"].to_numpy(dtype=float) - 50.0) / 10.0
    return np.column_stack([np.ones_like(t), age, south, west, t, south * t, west * t])


def make_design(
    n_instances: int = 200,
    obs_dim: int = 20,
    latent_dim: int = 3,
    min_visits: int = 4,
    max_visits: int = 15,
    missing_rate: float = 0.2,
    noise_std: float = 0.1,
    future_fraction: float = 0.3,
    n_future: int = 2,
    hidden: int = 32,
    seed: int = 0,
) -> DesignData:
    """Draw the longitudinal design described in the module docstring.

    Parameters
    ----------
    n_instances : int, default 200
        Instances P.
    obs_dim : int, default 20
        Observed features D.
    latent_dim : int, default 3
        True latent dimension L*.
    min_visits, max_visits : int, default 4, 15
        Visits per instance, uniform on ``[min_visits, max_visits]``.
    missing_rate : float, default 0.2
        Probability that an entry is missing (MCAR).
    noise_std : float, default 0.1
        Standard deviation of the Gaussian observation noise.
    future_fraction : float, default 0.3
        Fraction of the instances (rounded) whose last ``n_future`` visits are future rows.
    n_future : int, default 2
        Future visits per selected instance; must leave at least 2 training visits.
    hidden : int, default 32
        Hidden units of the decoder.
    seed : int, default 0

    Returns
    -------
    DesignData
    """
    if min_visits - n_future < 2 or min_visits > max_visits:
        raise ValueError("need max_visits >= min_visits >= n_future + 2")
    if not 0.0 <= missing_rate < 1.0 or not 0.0 <= future_fraction <= 1.0:
        raise ValueError("missing_rate must be in [0, 1) and future_fraction in [0, 1]")
    rng = np.random.default_rng(seed)
    n_visits = rng.integers(min_visits, max_visits + 1, size=n_instances)
    ages = rng.normal(50.0, 10.0, size=n_instances)
    sites = rng.choice(np.array(SITES), size=n_instances)
    ids = np.array([f"p{p:03d}" for p in range(n_instances)])
    instance = np.repeat(np.arange(n_instances), n_visits)
    times = np.concatenate([np.sort(rng.uniform(0.0, T_MAX, size=k)) for k in n_visits])
    visit = np.concatenate([np.arange(k) for k in n_visits])
    data = pd.DataFrame(
        {
            "id": ids[instance],
            "age": ages[instance],
            "site": sites[instance],
            "t": times,
            "visit": visit,
        }
    )

    # The latent LMM: z = A x + U_p (1, t) + eps.
    fixed_sd = np.array([0.5, 0.4, 0.5, 0.5, 0.3, 0.15, 0.15])
    effects = rng.normal(size=(latent_dim, len(FIXED_TERMS))) * fixed_sd
    sd = np.array([0.6, 0.2])
    cov = np.outer(sd, sd) * np.array([[1.0, 0.4], [0.4, 1.0]])
    random = rng.multivariate_normal(np.zeros(2), cov, size=(n_instances, latent_dim))
    x = fixed_columns(data)
    w = np.column_stack([np.ones_like(times), times])
    z = x @ effects.T + np.einsum("nlk,nk->nl", random[instance], w)
    z = z + rng.normal(0.0, 0.1, size=z.shape)

    # The decoder: a fixed random tanh MLP, its output standardised over the sample.
    w1 = rng.normal(size=(latent_dim, hidden)) * (1.5 / np.sqrt(latent_dim))
    b1 = rng.normal(0.0, 0.5, size=hidden)
    w2 = rng.normal(size=(hidden, obs_dim)) / np.sqrt(hidden)
    out = np.tanh(z @ w1 + b1) @ w2
    y_clean = (out - out.mean(axis=0)) / out.std(axis=0)
    y = y_clean + rng.normal(0.0, noise_std, size=y_clean.shape)

    mask = rng.random(y.shape) >= missing_rate
    empty = np.flatnonzero(~mask.any(axis=1))
    mask[empty, rng.integers(0, obs_dim, size=len(empty))] = True
    y = np.where(mask, y, 0.0)

    n_selected = int(round(future_fraction * n_instances))
    selected = rng.choice(n_instances, size=n_selected, replace=False)
    is_future = np.isin(instance, selected) & (visit >= n_visits[instance] - n_future)
    data["split"] = np.where(is_future, "future", "train")
    return DesignData(data=data, y=y, y_clean=y_clean, mask=mask, z=z, noise_std=noise_std)


def _feature_means(y: np.ndarray, mask: np.ndarray, fallback: np.ndarray) -> np.ndarray:
    """Per-feature mean over observed entries; ``fallback`` where a feature has none."""
    counts = mask.sum(axis=0)
    sums = np.where(mask, y, 0.0).sum(axis=0)
    return np.where(counts > 0, sums / np.maximum(counts, 1), fallback)


def baseline_predictions(design: DesignData) -> dict[str, np.ndarray]:
    """The trivial predictors of the future rows, from the training rows' observed entries.

    Parameters
    ----------
    design : DesignData

    Returns
    -------
    dict of str to numpy.ndarray
        Keyed by :data:`BASELINES`, each (N_future, D).
    """
    train, future = design.rows("train"), design.rows("future")
    y, mask, data = design.y[train], design.mask[train], design.data[train]
    future_data = design.data[future]
    n_future, obs_dim = int(future.sum()), y.shape[1]
    population = _feature_means(y, mask, np.zeros(obs_dim))

    edges = np.linspace(0.0, T_MAX, TIME_BINS + 1)[1:-1]
    train_bin = np.digitize(data["t"].to_numpy(), edges)
    future_bin = np.digitize(future_data["t"].to_numpy(), edges)
    bin_means = np.stack(
        [
            _feature_means(y[train_bin == b], mask[train_bin == b], population)
            for b in range(TIME_BINS)
        ]
    )

    last = np.empty((n_future, obs_dim))
    ids = data["id"].to_numpy()
    order = np.lexsort((data["t"].to_numpy(), ids))  # by instance, then time
    last_row = {ids[i]: i for i in order}  # the latest training visit wins
    for k, label in enumerate(future_data["id"].to_numpy()):
        i = last_row[label]
        last[k] = np.where(mask[i], y[i], population)

    x, x_future = fixed_columns(data), fixed_columns(future_data)
    penalty = RIDGE_PENALTY * np.eye(x.shape[1])
    penalty[0, 0] = 0.0
    ridge = np.empty((n_future, obs_dim))
    for d in range(obs_dim):
        xd, yd = x[mask[:, d]], y[mask[:, d], d]
        beta = np.linalg.solve(xd.T @ xd + penalty, xd.T @ yd)
        ridge[:, d] = x_future @ beta
    return {
        "population mean": np.broadcast_to(population, (n_future, obs_dim)).copy(),
        "per-time mean": bin_means[future_bin],
        "last frame": last,
        "ridge": ridge,
    }


def masked_mse(pred: np.ndarray, target: np.ndarray, mask: np.ndarray) -> float:
    """Mean squared error over the entries where ``mask`` is true.

    Parameters
    ----------
    pred, target : numpy.ndarray, (N, D)
    mask : numpy.ndarray of bool, (N, D)

    Returns
    -------
    float
    """
    return float(((pred - target)[mask] ** 2).mean())


def fit_model(
    name: str, design: DesignData, seed: int = 0, max_epochs: int | None = None
) -> tuple[np.ndarray, dict]:
    """Fit one model with ``fit()`` defaults on the training rows and predict the future rows.

    Parameters
    ----------
    name : str
        A key of :data:`MODELS` or :data:`VARIATIONS` (a model with one option changed, e.g.
        ``effects_guide="structured"``).
    design : DesignData
    seed : int, default 0
        Seed of the constructor (initial weights) and of ``fit``.
    max_epochs : int, optional
        Only for quick tests: the benchmark leaves it at None (``fit()``'s default, until the
        objective converges).

    Returns
    -------
    prediction : numpy.ndarray, (N_future, D)
    info : dict
        ``formula``, ``epochs``, ``stop_reason``, ``seconds`` (wall time of construction and
        fit), ``cpu_seconds`` (this process's CPU time for the same, which other jobs on a
        shared machine do not inflate) and ``warnings`` (messages of warnings raised during the
        fit).
    """
    from pyro_lmmvae import LMMVAE

    base, options = VARIATIONS.get(name, (name, {}))
    variant, objective = MODELS[base]
    formula = SLMM_ELBO_FORMULA if (variant, objective) == ("slmm", "elbo") else FORMULA
    train, future = design.rows("train"), design.rows("future")
    covariates = ["id", "age", "site", "t"]
    start, cpu_start = time.perf_counter(), time.process_time()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = LMMVAE(
            formula,
            design.data.loc[train, covariates].reset_index(drop=True),
            design.y[train],
            design.mask[train],
            latent_dim=3,
            variant=variant,
            objective=objective,
            seed=seed,
            **options,
        )
        if max_epochs is None:
            model.fit(progress=False, seed=seed)
        else:
            model.fit(max_epochs=max_epochs, progress=False, seed=seed)
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    prediction = model.predict(design.data.loc[future, covariates].reset_index(drop=True))
    messages = sorted(
        {f"{w.category.__name__}: {w.message}" for w in caught if "formulae" not in w.filename}
    )
    return prediction, {
        "formula": model.design.formula,
        "epochs": len(model.history.train_loss),
        "stop_reason": model.history.stop_reason,
        "seconds": seconds,
        "cpu_seconds": cpu_seconds,
        "warnings": messages,
    }


def run(
    seed: int = 0,
    n_instances: int = 200,
    models: list[str] | None = None,
    max_epochs: int | None = None,
    **design_options: int | float,
) -> dict:
    """One seed: draw the design, score the baselines and fit the models.

    Parameters
    ----------
    seed : int, default 0
        Seed of the design and of the models.
    n_instances : int, default 200
    models : list of str, optional
        Keys of :data:`MODELS` (default: all four).
    max_epochs : int, optional
        Only for quick tests (see :func:`fit_model`).
    **design_options
        Further arguments of :func:`make_design`.

    Returns
    -------
    dict
        ``seed``, ``design`` (counts), ``scores`` (one entry per model and baseline: ``mse_clean``,
        ``mse_noisy``, ``ratio_clean``, ``ratio_noisy`` and, for models, the fit's ``info``).
    """
    design = make_design(n_instances=n_instances, seed=seed, **design_options)
    train, future = design.rows("train"), design.rows("future")
    mask = design.mask[future]
    clean, noisy = design.y_clean[future], design.y[future]
    predictions = {name: (pred, None) for name, pred in baseline_predictions(design).items()}
    for name in models or list(MODELS):
        predictions[name] = fit_model(name, design, seed=seed, max_epochs=max_epochs)
    reference = predictions["population mean"][0]
    ref_clean, ref_noisy = masked_mse(reference, clean, mask), masked_mse(reference, noisy, mask)
    scores = {}
    for name, (pred, info) in predictions.items():
        mse_clean, mse_noisy = masked_mse(pred, clean, mask), masked_mse(pred, noisy, mask)
        scores[name] = {
            "mse_clean": mse_clean,
            "mse_noisy": mse_noisy,
            "ratio_clean": mse_clean / ref_clean,
            "ratio_noisy": mse_noisy / ref_noisy,
        } | ({"info": info} if info is not None else {})
    return {
        "seed": seed,
        "design": {
            "instances": n_instances,
            "train_rows": int(train.sum()),
            "future_rows": int(future.sum()),
            "future_instances": int(design.data.loc[future, "id"].nunique()),
            "obs_dim": int(design.y.shape[1]),
            "missing_fraction": float(1.0 - design.mask.mean()),
            "noise_var": design.noise_std**2,
        },
        "scores": scores,
    }


def markdown(results: list[dict]) -> str:
    """The BENCHMARKS.md tables: per seed, then the mean over seeds."""
    names = list(results[0]["scores"])
    lines = [
        "| seed | predictor | MSE clean | MSE noisy | ratio clean | ratio noisy | epochs | stop "
        "| wall s | CPU s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        for name in names:
            s = r["scores"][name]
            info = s.get("info")
            fit = (
                f"{info['epochs']} | {info['stop_reason']} | {info['seconds']:.0f} | "
                f"{info['cpu_seconds']:.0f}"
                if info
                else " | | | "
            )
            lines.append(
                f"| {r['seed']} | {name} | {s['mse_clean']:.4f} | {s['mse_noisy']:.4f} | "
                f"{s['ratio_clean']:.3f} | {s['ratio_noisy']:.3f} | {fit} |"
            )
    lines += [
        "",
        f"Mean over {len(results)} seed(s) (the worst seed's ratio in brackets; \"beats the "
        "baselines\": seeds whose clean MSE is below every trivial predictor's):",
        "",
        "| predictor | MSE clean | MSE noisy | ratio clean (worst) | ratio noisy (worst) "
        "| beats the baselines | epochs | wall s | CPU s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name in names:
        rows = [r["scores"][name] for r in results]
        mean = {k: float(np.mean([s[k] for s in rows])) for k in rows[0] if k != "info"}
        worst = {k: float(np.max([s[k] for s in rows])) for k in ("ratio_clean", "ratio_noisy")}
        fit = " | | | "
        if "info" in rows[0]:
            wins = sum(
                r["scores"][name]["mse_clean"]
                < min(r["scores"][b]["mse_clean"] for b in BASELINES if b in r["scores"])
                for r in results
            )
            epochs = [s["info"]["epochs"] for s in rows]
            fit = (
                f"{wins}/{len(results)} | {min(epochs)}–{max(epochs)} | "
                f"{np.mean([s['info']['seconds'] for s in rows]):.0f} | "
                f"{np.mean([s['info']['cpu_seconds'] for s in rows]):.0f}"
            )
        lines.append(
            f"| {name} | {mean['mse_clean']:.4f} | {mean['mse_noisy']:.4f} | "
            f"{mean['ratio_clean']:.3f} ({worst['ratio_clean']:.3f}) | "
            f"{mean['ratio_noisy']:.3f} ({worst['ratio_noisy']:.3f}) | {fit} |"
        )
    d = results[0]["design"]
    lines += [
        "",
        f"Design per seed: {d['instances']} instances, about {d['train_rows']} training rows, "
        f"about {d['future_rows']} future rows of {d['future_instances']} instances, "
        f"D = {d['obs_dim']}, {100 * d['missing_fraction']:.0f} % missing, noise variance "
        f"{d['noise_var']:.2g} (the floor of the noisy MSE).",
    ]
    raised = sorted(
        {
            f"{name} (seed {r['seed']}): {message}"
            for r in results
            for name, s in r["scores"].items()
            for message in s.get("info", {}).get("warnings", [])
        }
    )
    lines.append("Warnings raised by the fits: " + ("; ".join(raised) if raised else "none."))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Command line: ``python -m benchmarks.default_fit [--seeds 0 1] [--markdown]``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--instances", type=int, default=200, help="instances P per seed")
    parser.add_argument("--obs-dim", type=int, default=20, help="observed features D")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=[*MODELS, *VARIATIONS])
    parser.add_argument("--markdown", action="store_true", help="print the BENCHMARKS.md tables")
    parser.add_argument("--out", type=Path, help="also write the JSON results to this file")
    parser.add_argument(
        "--max-epochs",
        type=int,
        default=None,
        help="only for quick checks: the benchmark leaves it unset (fit() until converged)",
    )
    args = parser.parse_args(argv)
    results = [
        run(
            seed,
            n_instances=args.instances,
            models=args.models,
            max_epochs=args.max_epochs,
            obs_dim=args.obs_dim,
        )
        for seed in args.seeds
    ]
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(args.out, json.dumps(results, indent=2))
    print(markdown(results) if args.markdown else json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
