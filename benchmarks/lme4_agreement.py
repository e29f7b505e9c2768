"""The latent LMM against lme4: ``network="identity"`` with ``fit()`` defaults on real data.

With the identity decoder (``latent_dim = D = 1``) LMM-VAE is a linear-Gaussian linear mixed
model, so its effects can be held against lme4's maximum-likelihood fit of the same formula.
The reference numbers (``benchmarks/lme4/reference/*.json``) and the z-scored data
(``benchmarks/lme4/data/*.csv``) were made with R's lme4 by ``benchmarks/lme4/make_reference.R``
(see ``benchmarks/lme4/README.md``); nothing here needs R.

For each data set this reports, beside lme4's numbers: every fixed effect's distance from lme4's
estimate in lme4 standard errors, the correlation of the random-effect posterior means with
lme4's conditional modes (BLUPs) per term, the ratio of the learned random-effect standard
deviations to lme4's, the intercept–slope correlation, and sigma_z against lme4's residual sigma.

Run ``python -m benchmarks.lme4_agreement`` (add ``--markdown`` for the BENCHMARKS.md table).
``--calibration`` fits every data set with both effects guides, mean-field and structured
(``effects_guide="structured"``), and compares their fixed-effect posterior sds with lme4's
standard errors.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).parent / "lme4"

DATASETS = {
    # name: (response, slope covariate, formula of the latent LMM)
    "sleepstudy": ("Reaction", "Days", "~ 1 + Days + (1 + Days | Subject)"),
    "sleepstudy_uncorrelated": ("Reaction", "Days", "~ 1 + Days + (1 + Days || Subject)"),
    "Orthodont": ("distance", "age", "~ 1 + age + Sex + (1 + age | Subject)"),
    "Oxboys": ("height", "age", "~ 1 + age + (1 + age | Subject)"),
}
LME4_NAMES = {"Intercept": "(Intercept)", "Sex[Female]": "SexFemale"}


def load(name: str) -> tuple[pd.DataFrame, dict]:
    """The z-scored data (factor levels in R's order) and lme4's reference fit."""
    reference = json.loads((HERE / "reference" / f"{name}.json").read_text())
    data = pd.read_csv(HERE / "data" / f"{name}.csv", dtype={"Subject": str})
    if "Sex" in data:  # R's factor order: Male is the reference level
        data["Sex"] = pd.Categorical(data["Sex"], categories=["Male", "Female"])
    return data, reference


def compare(name: str, seed: int = 0, effects_guide: str = "mean_field") -> dict:
    """Fit LMM-VAE with ``fit()`` defaults and compare it with lme4's fit of ``name``.

    ``effects_guide`` is the one constructor option varied (``"mean_field"``, the default, or
    ``"structured"``); ``q_sd`` of each fixed effect is the sd of its marginal under q.
    """
    from pyro_lmmvae import LMMVAE

    response, slope, formula = DATASETS[name]
    data, ref = load(name)
    model = LMMVAE(
        formula,
        data=data,
        y=data[[response]].to_numpy(),
        latent_dim=1,
        network="identity",
        standardize=False,
        effects_guide=effects_guide,
        seed=seed,
    )
    start = time.perf_counter()
    model.fit(progress=False, seed=seed)
    seconds = time.perf_counter() - start
    idata = model.effects(num_draws=1)
    post = idata.posterior
    fixed = {}
    q_sd = model.guide.effects.fixed_var.detach().sqrt()[0]
    for term in model.design.fixed_terms:
        lme4 = ref["fixed_effects"][LME4_NAMES.get(term, term)]
        j = model.design.fixed_terms.index(term)
        loc = float(model.guide.effects.fixed_loc.detach()[0, j])
        fixed[term] = {
            "estimate": loc,
            "lme4": lme4["estimate"],
            "se": lme4["se"],
            "z": (loc - lme4["estimate"]) / lme4["se"],
            "q_sd": float(q_sd[j]),
        }
    terms = ["(Intercept)", slope]
    sd = np.asarray(post["random_effects_sd"].values)[0, 0, 0]
    corr = float(np.asarray(post["random_effects_corr"].values)[0, 0, 0, 0, 1])
    means = model.guide.effects.random_loc.detach().numpy()[:, 0, :]
    groups = [str(g) for g in model.design.groups]
    blups = np.array([[ref["ranef"][g][t] for t in terms] for g in groups])
    ref_corr = (ref["random_effects"]["correlation"] or {}).get(f"(Intercept),{slope}", 0.0)
    return {
        "name": name,
        "effects_guide": effects_guide,
        "formula": formula,
        "epochs": len(model.history.train_loss),
        "stop_reason": model.history.stop_reason,
        "seconds": seconds,
        "fixed": fixed,
        "sd": dict(zip(terms, sd.tolist(), strict=True)),
        "sd_lme4": {t: ref["random_effects"]["sd"][t] for t in terms},
        "corr": corr,
        "corr_lme4": ref_corr,
        "blup_corr": {
            t: float(np.corrcoef(means[:, j], blups[:, j])[0, 1]) for j, t in enumerate(terms)
        },
        "sigma_z": float(model.model.latent_scale().detach()),
        "sigma_lme4": ref["sigma"],
    }


def markdown(results: list[dict]) -> str:
    """The side-by-side table of BENCHMARKS.md."""
    lines = [
        "| data set | term | LMM-VAE (q sd) | lme4 (± SE) | z | BLUP corr. | sd (lme4) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        for term, f in r["fixed"].items():
            lines.append(
                f"| {r['name']} | {term} | {f['estimate']:.4f} ({f['q_sd']:.4f}) | "
                f"{f['lme4']:.4f} ± {f['se']:.4f} | {f['z']:+.2f} | | |"
            )
        for term in r["sd"]:
            lines.append(
                f"| {r['name']} | {term}\\|Subject | | | | {r['blup_corr'][term]:.4f} | "
                f"{r['sd'][term]:.4f} ({r['sd_lme4'][term]:.4f}) |"
            )
        lines.append(
            f"| {r['name']} | corr, sigma | {r['corr']:.3f}, {r['sigma_z']:.4f} | "
            f"{r['corr_lme4']:.3f}, {r['sigma_lme4']:.4f} | | | |"
        )
    lines.append("")
    lines.append("| data set | epochs | stop | seconds |")
    lines.append("|---|---|---|---|")
    for r in results:
        lines.append(f"| {r['name']} | {r['epochs']} | {r['stop_reason']} | {r['seconds']:.1f} |")
    return "\n".join(lines)


def calibration_markdown(pairs: list[tuple[dict, dict]]) -> str:
    """Fixed-effect posterior sd over lme4's SE, mean-field against structured q, paired."""
    lines = [
        "| data set | term | lme4 SE | mean-field q sd (ratio) | structured q sd (ratio) |",
        "|---|---|---|---|---|",
    ]
    for mf, st in pairs:
        for term, f in mf["fixed"].items():
            g = st["fixed"][term]
            lines.append(
                f"| {mf['name']} | {term} | {f['se']:.4f} | {f['q_sd']:.4f} "
                f"({f['q_sd'] / f['se']:.2f}) | {g['q_sd']:.4f} ({g['q_sd'] / g['se']:.2f}) |"
            )
    lines += ["", "| data set | mean-field s (epochs) | structured s (epochs) | time ratio |"]
    lines.append("|---|---|---|---|")
    for mf, st in pairs:
        lines.append(
            f"| {mf['name']} | {mf['seconds']:.1f} ({mf['epochs']}) | {st['seconds']:.1f} "
            f"({st['epochs']}) | {st['seconds'] / mf['seconds']:.2f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="*", default=list(DATASETS), choices=list(DATASETS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--markdown", action="store_true", help="print the BENCHMARKS.md table")
    parser.add_argument(
        "--calibration",
        action="store_true",
        help="fit each data set with both effects guides (in turn, one process) and compare the "
        "fixed-effect posterior sds with lme4's standard errors",
    )
    args = parser.parse_args(argv)
    if args.calibration:
        pairs = [
            (compare(name, args.seed, "mean_field"), compare(name, args.seed, "structured"))
            for name in args.datasets
        ]
        print(calibration_markdown(pairs) if args.markdown else json.dumps(pairs, indent=2))
        return 0
    results = [compare(name, seed=args.seed) for name in args.datasets]
    print(markdown(results) if args.markdown else json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
