"""Per-step time of the three oLMM ELBO estimators, paired in one process.

* ``trace_mean_field``: Pyro's ``TraceMeanField_ELBO`` (one draw of A per step);
* ``traced closed form``: :class:`~pyro_lmmvae.training.loss.CollapsedELBOLoss`, the closed
  form read from the model's traces (what a subclassed model or a user's prior trains with);
* ``torch closed form``: :class:`~pyro_lmmvae.training.loss.ClosedFormELBOLoss`, the torch fast
  path that ``kl="auto"`` uses for the library's own classes.

A step is forward and backward of the loss on one batch (no optimizer), with Pyro's distribution
validation off (as the training loop runs after its first step). Each round times a block of
steps of every estimator in rotating order; reported are the median per-step times over rounds
and the median of the per-round ratios to the torch closed form.

Run ``OMP_NUM_THREADS=1 python -m benchmarks.collapsed_elbo [--markdown]``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import warnings

import pyro
import torch

from benchmarks import default_fit, lme4_agreement
from pyro_lmmvae import LMMVAE
from pyro_lmmvae.pyro_module import local_params
from pyro_lmmvae.training.loss import ClosedFormELBOLoss, CollapsedELBOLoss, ELBOLoss


def _cases():
    design = default_fit.make_design(n_instances=200, seed=0)
    train, covariates = design.rows("train"), ["id", "age", "site", "t"]
    data = design.data.loc[train, covariates].reset_index(drop=True)
    for guide in ("mean_field", "structured"):
        model = LMMVAE(
            default_fit.FORMULA,
            data,
            design.y[train],
            design.mask[train],
            latent_dim=3,
            effects_guide=guide,
            seed=0,
        )
        yield f"default-fit design, {guide}, 32 instances", model, 32
    sleep, _ = lme4_agreement.load("sleepstudy")
    model = LMMVAE(
        lme4_agreement.DATASETS["sleepstudy"][2],
        sleep,
        sleep[["Reaction"]].to_numpy(),
        latent_dim=1,
        network="identity",
        standardize=False,
    )
    yield "sleepstudy, identity, full batch", model, 18


def measure(rounds: int = 7, steps: int = 20) -> list[dict]:
    """Median per-step milliseconds of each estimator per case, and ratios to the torch path."""
    results = []
    for name, model, batch_size in _cases():
        batch = next(iter(model.batches(batch_size=batch_size)))
        losses = {
            "trace_mean_field": ELBOLoss(model.model, model.guide),
            "traced closed form": CollapsedELBOLoss(model.model, model.guide),
            "torch closed form": ClosedFormELBOLoss(model.model, model.guide),
        }
        times: dict[str, list[float]] = {key: [] for key in losses}
        order = list(losses)
        with pyro.validation_enabled(False), local_params():
            for loss in losses.values():  # warm-up (and the traced loss's one-off check)
                loss(batch).backward()
            for r in range(rounds):
                for key in order[r % 3 :] + order[: r % 3]:
                    start = time.perf_counter()
                    for _ in range(steps):
                        losses[key](batch).backward()
                    times[key].append((time.perf_counter() - start) / steps * 1e3)
        ratios = {
            key: statistics.median(
                t / b for t, b in zip(times[key], times["torch closed form"], strict=True)
            )
            for key in losses
        }
        results.append(
            {
                "case": name,
                "ms": {key: statistics.median(v) for key, v in times.items()},
                "ratio": ratios,
            }
        )
    return results


def markdown(results: list[dict]) -> str:
    lines = [
        "| case | torch closed form ms | traced closed form ms (ratio) "
        "| TraceMeanField ms (ratio) |",
        "|---|---|---|---|",
    ]
    for r in results:
        ms, ratio = r["ms"], r["ratio"]
        lines.append(
            f"| {r['case']} | {ms['torch closed form']:.2f} | {ms['traced closed form']:.2f} "
            f"({ratio['traced closed form']:.2f}) | {ms['trace_mean_field']:.2f} "
            f"({ratio['trace_mean_field']:.2f}) |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        results = measure(args.rounds, args.steps)
    print(markdown(results) if args.markdown else json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
