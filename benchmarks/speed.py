"""Per-step training time of the library's Pyro path against a hand-written pure-torch step.

Three paths train the same oLMM-VAE (same data, networks, initialisation; each its own copy):

* ``pyro``: the library's default estimator, Pyro's ``TraceMeanField_ELBO``
  (``loss_module(kl="trace_mean_field")``), run exactly as :func:`pyro_lmmvae.training.loop.train`
  runs it: :class:`~pyro_lmmvae.training.optim.FitOptimizer`, the instance tables gathered under
  :func:`~pyro_lmmvae.training.optim.sparse_instance_gradients`, distribution validation on the
  first step only, :func:`~pyro_lmmvae.training.loop.optimisation_step`, batches from
  :class:`~pyro_lmmvae.data.InstanceBatcher`;
* ``closed``: the same machinery with ``kl="closed_form"`` (pure torch, no draw of A);
* ``ref``: :mod:`benchmarks.reference`, the objective written by hand in torch with one dense
  Adam and batches cut from in-memory tensors.

A timed step includes making its batch. Timing is paired: after a warm-up every path runs a
block of the same number of steps, in an order that rotates from round to round; per-step times
are block time / steps, and ratios are taken within a round (``pyro/ref`` of round r uses the
two blocks of round r). Reported: medians over rounds, and min–max of the per-round ratios.

``--overheads`` times, on one small config, what the library's loop removes from a naive Pyro
loop: distribution validation on every step, ``pyro.infer.SVI`` with a ``PyroOptim`` (one torch
optimizer per parameter, Pyro's global parameter store), a ``DataLoader`` that collates rows one
by one, and all three together. ``--profile`` writes a cProfile of the ``pyro`` path.

Usage::

    flock /tmp/bench.lock python -m benchmarks.speed --out benchmarks/results/speed
    python -m benchmarks.speed --P 100 --batch-sizes 8 --obs-dims 16 --threads 1 --rounds 2 \\
        --no-health-mnist --out /tmp/speed   # a quick check
"""

from __future__ import annotations

import argparse
import cProfile
import csv
import functools
import gc
import hashlib
import io
import json
import os
import platform
import pstats
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pyro
import pyro.distributions as dist
import torch
from pyro.infer import SVI, TraceMeanField_ELBO

from benchmarks.machine import cpu_model
from benchmarks.reference import (
    ReferenceData,
    ReferenceOLMM,
    reference_optimizer,
    reference_step,
)
from pyro_lmmvae import LMMVAE
from pyro_lmmvae.data import Batch
from pyro_lmmvae.datasets import make_synthetic
from pyro_lmmvae.io import write_text_atomic
from pyro_lmmvae.training.loop import optimisation_step
from pyro_lmmvae.training.optim import FitOptimizer, sparse_instance_gradients

FORMULA = "~ 1 + t + g + c + g:t + (1 + t | id)"
LR = 1e-3
LR_DECAY = 0.99
TARGET = 1.25  # pyro step / reference step, for P <= 1e3
MAIN_PATHS = ("pyro", "closed", "ref")
NOISY = 1.5  # a config whose slowest round of a path took this x its fastest is marked noisy


# ---------------------------------------------------------------------------- environment
def library_state() -> dict:
    """The repository's commit and a digest of uncommitted changes to the library's code."""
    root = Path(__file__).resolve().parents[1]

    def git(*args: str) -> str:
        try:
            return subprocess.run(
                ["git", *args], cwd=root, capture_output=True, text=True, timeout=30
            ).stdout
        except (OSError, subprocess.SubprocessError):
            return ""

    paths = ["pyro_lmmvae", "models", "guides"]
    diff = git("diff", "HEAD", "--", *paths)
    return {
        "git_commit": git("rev-parse", "HEAD").strip(),
        "uncommitted_library_files": git("diff", "HEAD", "--name-only", "--", *paths).split(),
        "uncommitted_library_diff_sha256": hashlib.sha256(diff.encode()).hexdigest()[:16]
        if diff
        else None,
    }


def environment() -> dict:
    """Versions, CPU, command line and library state of this run."""
    return library_state() | {
        "command": " ".join(
            [Path(sys.executable).name, "-m", "benchmarks." + Path(sys.argv[0]).stem] + sys.argv[1:]
        ),
        "torch": torch.__version__,
        "pyro": pyro.__version__,
        "python": platform.python_version(),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads_at_start": torch.get_num_threads(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }


def csv_text(rows: list[dict]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


# ---------------------------------------------------------------------------- data and paths
class Case:
    """The data of one (P, D): every path of a config builds its own estimator from it."""

    def __init__(self, n_instances: int, n_times: int, obs_dim: int, seed: int = 0) -> None:
        ds = make_synthetic(
            n_instances=n_instances,
            n_times=n_times,
            obs_dim=obs_dim,
            n_test_times=1,
            seed=seed,
        )
        # every row (the split column is ignored): P is exactly n_instances
        self.data, self.y, self.mask = ds.data, ds.y, ds.mask

    def estimator(self, latent_dim: int, network: str, seed: int = 0) -> LMMVAE:
        return LMMVAE(
            FORMULA,
            data=self.data,
            y=self.y,
            mask=self.mask,
            latent_dim=latent_dim,
            network=network,
            standardize=False,
            random_prior=dist.Normal(0.0, 1.0),  # the reference implements a unit Normal prior on u
            seed=seed,
        )


def endless(iterable_factory: Callable[[], Iterator]) -> Iterator:
    """Epoch after epoch of a re-iterable."""
    while True:
        yield from iterable_factory()


class _Rows(torch.utils.data.Dataset):
    """One training row per item: the per-item access a DataLoader collates."""

    def __init__(self, tensors) -> None:
        self.t = tensors

    def __len__(self) -> int:
        return len(self.t)

    def __getitem__(self, i: int) -> dict:
        t = self.t
        return {"x": t.x[i], "w": t.w[i], "y": t.y[i], "mask": t.mask[i], "instance": t.instance[i]}


class _WholeInstances(torch.utils.data.Sampler):
    """Row indices of B whole instances per batch, instances shuffled each epoch."""

    def __init__(self, instance: torch.Tensor, batch_size: int, seed: int) -> None:
        self.batch_size = batch_size
        self.generator = torch.Generator().manual_seed(seed)
        order = torch.argsort(instance, stable=True)
        counts = torch.bincount(instance).tolist()
        self.rows = [r.tolist() for r in torch.split(order, counts)]

    def __len__(self) -> int:
        return -(-len(self.rows) // self.batch_size)

    def __iter__(self):
        perm = torch.randperm(len(self.rows), generator=self.generator).tolist()
        for start in range(0, len(perm), self.batch_size):
            yield [i for p in perm[start : start + self.batch_size] for i in self.rows[p]]


def dataloader_batches(est: LMMVAE, batch_size: int, seed: int) -> Iterator[Batch]:
    """Batches of whole instances through a DataLoader with the default (per-item) collate."""
    tensors = est.tensors()
    n_instances = int(tensors.instance.max()) + 1
    loader = torch.utils.data.DataLoader(
        _Rows(tensors), batch_sampler=_WholeInstances(tensors.instance, batch_size, seed)
    )
    for item in endless(lambda: loader):
        instances, local = torch.unique(item["instance"], return_inverse=True)
        yield Batch(
            x=item["x"],
            w=item["w"],
            y=item["y"],
            mask=item["mask"],
            instances=instances,
            local=local,
            scale=n_instances / len(instances),
            n_instances_total=n_instances,
        )


def batch_source(est: LMMVAE, batch_size: int, seed: int, loader: str):
    """Endless batches: whole-batch indexing (``"index"``) or a per-item collating DataLoader."""
    if loader == "index":
        return endless(lambda: est.batches(batch_size, seed))
    return dataloader_batches(est, batch_size, seed)


class LibraryPath:
    """The steps :func:`~pyro_lmmvae.training.loop.train` runs, one block at a time.

    Parameters
    ----------
    est : LMMVAE
    batch_size, seed : int
    kl : {"trace_mean_field", "closed_form"}
    validate_every_step : bool, default False
        Validate distribution arguments on every step instead of the first only.
    loader : {"index", "dataloader"}
        The library's whole-batch indexing, or a DataLoader with per-item collation.
    sparse : bool, default True
        Sparse instance-table gradients + SparseAdam (the library default).
    """

    def __init__(
        self,
        est: LMMVAE,
        batch_size: int,
        seed: int,
        kl: str,
        *,
        validate_every_step: bool = False,
        loader: str = "index",
        sparse: bool = True,
    ) -> None:
        self.loss = est.loss_module(kl=kl)
        self.optimizer = FitOptimizer(self.loss, LR, LR_DECAY, sparse=sparse)
        self.validate_every_step = validate_every_step
        self.validating = pyro.infer.is_validation_enabled()
        self.first = True
        self.batches = batch_source(est, batch_size, seed, loader)

    def run(self, steps: int) -> None:
        sparse = sparse_instance_gradients(self.loss, enabled=self.optimizer.sparse)
        with sparse, pyro.validation_enabled(False):
            for _ in range(steps):
                batch = next(self.batches)
                validate = self.validating and (self.validate_every_step or self.first)
                with pyro.validation_enabled(validate):
                    optimisation_step(self.loss, self.optimizer, batch)
                self.first = False


class SVIPath:
    """``pyro.infer.SVI`` + ``pyro.optim.Adam`` in Pyro's global parameter mode.

    Each instance keeps its own parameter store (``ParamStoreDict.scope``), so several can be
    interleaved. Validation and the batches are chosen as in :class:`LibraryPath`.
    """

    def __init__(
        self,
        est: LMMVAE,
        batch_size: int,
        seed: int,
        *,
        validate_every_step: bool = False,
        loader: str = "index",
    ) -> None:
        self.svi = SVI(
            est.model,
            est.guide,
            pyro.optim.Adam({"lr": LR}),
            TraceMeanField_ELBO(max_plate_nesting=2),
        )
        self.scope: dict | None = None
        self.validate_every_step = validate_every_step
        self.validating = pyro.infer.is_validation_enabled()
        self.first = True
        self.batches = batch_source(est, batch_size, seed, loader)

    def run(self, steps: int) -> None:
        with pyro.get_param_store().scope(self.scope) as scope, pyro.validation_enabled(False):
            self.scope = scope
            for _ in range(steps):
                batch = next(self.batches)
                validate = self.validating and (self.validate_every_step or self.first)
                with pyro.validation_enabled(validate):
                    self.svi.step(batch)
                self.first = False


class ReferencePath:
    """:mod:`benchmarks.reference`: pure torch, dense Adam, indexed batches."""

    def __init__(self, est: LMMVAE, batch_size: int, seed: int) -> None:
        self.module = ReferenceOLMM.from_estimator(est)
        self.optimizer = reference_optimizer(self.module, LR)
        self.batches = ReferenceData.from_estimator(est).epochs(batch_size, seed)

    def run(self, steps: int) -> None:
        for _ in range(steps):
            reference_step(self.module, self.optimizer, next(self.batches))


# ---------------------------------------------------------------------------- timing
def paired_times(
    paths: dict[str, object],
    *,
    warmup: int,
    rounds: int,
    block_seconds: float,
    min_block: int,
    max_block: int,
) -> tuple[dict[str, list[float]], int]:
    """Per-step seconds of every path in every round, blocks interleaved with rotating order.

    Returns the per-round per-step times and the block length (steps per block).
    """
    names = list(paths)
    estimate = {}
    for name in names:  # warm-up (the first, validated step included), then a calibration
        paths[name].run(warmup)
        start = time.perf_counter()
        paths[name].run(2)
        estimate[name] = (time.perf_counter() - start) / 2
    block = int(min(max_block, max(min_block, round(block_seconds / max(estimate.values())))))
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        gc.collect()
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            start = time.perf_counter()
            paths[name].run(block)
            times[name].append((time.perf_counter() - start) / block)
    return times, block


def summarise(times: dict[str, list[float]], base: str) -> dict[str, dict]:
    """Median ms per path, and median / min / max of the per-round ratio to ``base``."""
    out = {}
    for name, values in times.items():
        ratios = [a / b for a, b in zip(values, times[base], strict=True)]
        out[name] = {
            "ms": 1e3 * statistics.median(values),
            "ms_min": 1e3 * min(values),
            "ms_max": 1e3 * max(values),
            "ratio": statistics.median(ratios),
            "ratio_min": min(ratios),
            "ratio_max": max(ratios),
        }
    return out


# ---------------------------------------------------------------------------- experiments
def main_grid(args, configs: list[dict]) -> list[dict]:
    rows = []
    cases: dict[tuple[int, int], Case] = {}
    for i, cfg in enumerate(configs):
        key = (cfg["P"], cfg["D"])
        if key not in cases:
            cases.clear()  # one dataset in memory at a time (configs are grouped by (P, D))
            cases[key] = Case(cfg["P"], args.n_times, cfg["D"], seed=0)
        case = cases[key]
        torch.set_num_threads(cfg["threads"])
        build = functools.partial(case.estimator, args.latent_dim, cfg["network"])
        paths = {
            "pyro": LibraryPath(build(), cfg["B"], 0, "trace_mean_field"),
            "closed": LibraryPath(build(), cfg["B"], 0, "closed_form"),
            "ref": ReferencePath(build(), cfg["B"], 0),
        }
        times, block = paired_times(
            paths,
            warmup=args.warmup,
            rounds=args.rounds,
            block_seconds=args.block_seconds,
            min_block=args.min_block,
            max_block=args.max_block,
        )
        summary = summarise(times, "ref")
        b_eff = min(cfg["B"], cfg["P"])
        for name in MAIN_PATHS:
            s = summary[name]
            rows.append(
                {
                    "network": cfg["network"],
                    "P": cfg["P"],
                    "B": cfg["B"],
                    "B_effective": b_eff,
                    "rows_per_batch": b_eff * args.n_times,
                    "D": cfg["D"],
                    "L": args.latent_dim,
                    "threads": torch.get_num_threads(),
                    "path": name,
                    "ms_per_step": round(s["ms"], 4),
                    "ms_min": round(s["ms_min"], 4),
                    "ms_max": round(s["ms_max"], 4),
                    "ratio_to_ref": round(s["ratio"], 4),
                    "ratio_min": round(s["ratio_min"], 4),
                    "ratio_max": round(s["ratio_max"], 4),
                    "block_steps": block,
                    "rounds": args.rounds,
                }
            )
        p, c = summary["pyro"], summary["closed"]
        print(
            f"[{i + 1}/{len(configs)}] {cfg['network']} P={cfg['P']} B={cfg['B']} D={cfg['D']} "
            f"threads={cfg['threads']}: pyro {p['ms']:.2f} ms, closed {c['ms']:.2f} ms, "
            f"ref {summary['ref']['ms']:.2f} ms; pyro/ref {p['ratio']:.2f} "
            f"[{p['ratio_min']:.2f}-{p['ratio_max']:.2f}], closed/ref {c['ratio']:.2f} "
            f"(block {block})",
            flush=True,
        )
    return rows


OVERHEAD_VARIANTS = {
    "library": "train()'s loop: validation on step 1 only, FitOptimizer (Adam + SparseAdam), "
    "whole-batch indexing",
    "validate_every_step": "the same with pyro.validation_enabled(True) on every step",
    "svi_pyro_optim": "pyro.infer.SVI + pyro.optim.Adam (global param store, dense tables)",
    "dataloader_collate": "the library step fed by a DataLoader with per-item default collate",
    "naive_all_three": "SVI + PyroOptim, validation every step, DataLoader collate",
    "ref": "pure-torch reference",
}


def overheads(args) -> list[dict]:
    P, B, D, threads = args.overhead_config
    torch.set_num_threads(threads)
    case = Case(P, args.n_times, D, seed=0)
    build = functools.partial(case.estimator, args.latent_dim, "mlp")
    paths = {
        "library": LibraryPath(build(), B, 0, "trace_mean_field"),
        "validate_every_step": LibraryPath(
            build(), B, 0, "trace_mean_field", validate_every_step=True
        ),
        "svi_pyro_optim": SVIPath(build(), B, 0),
        "dataloader_collate": LibraryPath(build(), B, 0, "trace_mean_field", loader="dataloader"),
        "naive_all_three": SVIPath(build(), B, 0, validate_every_step=True, loader="dataloader"),
        "ref": ReferencePath(build(), B, 0),
    }
    times, block = paired_times(
        paths,
        warmup=args.warmup,
        rounds=args.rounds,
        block_seconds=args.block_seconds,
        min_block=args.min_block,
        max_block=args.max_block,
    )
    summary = summarise(times, "library")
    to_ref = summarise(times, "ref")
    rows = []
    for name, s in summary.items():
        rows.append(
            {
                "variant": name,
                "P": P,
                "B": B,
                "D": D,
                "L": args.latent_dim,
                "threads": torch.get_num_threads(),
                "ms_per_step": round(s["ms"], 4),
                "ratio_to_library": round(s["ratio"], 4),
                "ratio_min": round(s["ratio_min"], 4),
                "ratio_max": round(s["ratio_max"], 4),
                "ratio_to_ref": round(to_ref[name]["ratio"], 4),
                "block_steps": block,
                "rounds": args.rounds,
                "what": OVERHEAD_VARIANTS[name],
            }
        )
        print(
            f"overheads {name}: {s['ms']:.2f} ms/step, x{s['ratio']:.2f} library "
            f"[{s['ratio_min']:.2f}-{s['ratio_max']:.2f}], x{to_ref[name]['ratio']:.2f} ref",
            flush=True,
        )
    return rows


def _package(filename: str) -> str:
    """Coarse owner of a profiled function: pyro, torch, the library, the benchmark, other."""
    for key in ("pyro_lmmvae", "benchmarks", "pyro", "torch"):
        if f"/{key}/" in filename or filename.startswith(key):
            return key
    if filename == "~":
        return "builtins (C: torch ops, etc.)"
    return "other python"


def profile(args) -> str:
    """cProfile of the pyro path (and the reference, for scale) on one config."""
    P, B, D, threads = args.overhead_config
    torch.set_num_threads(threads)
    case = Case(P, args.n_times, D, seed=0)
    report = []
    for name, path in (
        ("pyro", LibraryPath(case.estimator(args.latent_dim, "mlp"), B, 0, "trace_mean_field")),
        ("closed", LibraryPath(case.estimator(args.latent_dim, "mlp"), B, 0, "closed_form")),
        ("ref", ReferencePath(case.estimator(args.latent_dim, "mlp"), B, 0)),
    ):
        path.run(args.warmup)
        profiler = cProfile.Profile()
        start = time.perf_counter()
        profiler.enable()
        path.run(args.profile_steps)
        profiler.disable()
        wall = (time.perf_counter() - start) / args.profile_steps
        stats = pstats.Stats(profiler)
        by_package: dict[str, float] = {}
        for (filename, _, _), (_, _, tottime, _, _) in stats.stats.items():
            owner = _package(filename)
            by_package[owner] = by_package.get(owner, 0.0) + tottime
        total = sum(by_package.values())
        report.append(
            f"## {name}: P={P} B={B} D={D} threads={threads}, {args.profile_steps} steps, "
            f"{1e3 * wall:.2f} ms/step under cProfile\n"
        )
        report.append("self time by owner of the function (C functions are 'builtins'):")
        for owner, seconds in sorted(by_package.items(), key=lambda kv: -kv[1]):
            report.append(
                f"  {owner:32s} {1e3 * seconds / args.profile_steps:8.3f} ms/step "
                f"({100 * seconds / total:5.1f}%)"
            )
        for key, limit in (("tottime", 25), ("cumulative", 40)):
            buffer = io.StringIO()
            pstats.Stats(profiler, stream=buffer).sort_stats(key).print_stats(limit)
            text = buffer.getvalue()
            report.append(f"\n### top {limit} by {key}\n" + text[text.find("   ncalls") :])
        report.append("")
    return "\n".join(report)


# ---------------------------------------------------------------------------- report
def markdown(env: dict, args, grid: list[dict], over: list[dict]) -> str:
    lines = [
        "# Per-step training time: library Pyro path vs pure-torch reference",
        "",
        f"- command: `{env['command']}`",
        f"- torch {env['torch']}, pyro {env['pyro']}, Python {env['python']}; CPU: "
        f"{env['cpu']} ({env['cpu_count']} logical CPUs visible, shared); {env['date']}",
        f"- library: commit {env['git_commit'][:12]}, uncommitted changes in "
        f"{env['uncommitted_library_files'] or 'none'} (diff sha256 "
        f"{env['uncommitted_library_diff_sha256']})",
        f"- model: oLMM-VAE, formula `{FORMULA}`, L = {args.latent_dim}, "
        f"{args.n_times} rows per instance (make_synthetic, ~20% entries missing), Adam lr "
        f"{LR}; a step includes making its batch.",
        f"- timing: {args.warmup}-step warm-up per path, then {args.rounds} rounds of one block "
        "per path (same block length for every path of a config, order rotated each round); "
        "ms = median over rounds of block time / steps; ratio = median of per-round ratios "
        f"[min-max]; '(noisy)': some path's slowest round took > {NOISY}x its fastest (the "
        "machine is shared).",
        "- paths: `pyro` = loss_module(kl='trace_mean_field') + FitOptimizer + "
        "sparse_instance_gradients + validation on step 1 only + optimisation_step (what "
        "train() runs); `closed` = the same with kl='closed_form'; `ref` = "
        "benchmarks/reference.py (hand-written torch, one dense Adam (fused kernel where torch "
        "has one), indexed batches).",
        f"- target: pyro/ref <= {TARGET} for P <= 1e3.",
        "",
    ]
    if grid:
        lines += [
            "| network | P | B | D | threads | rows/batch | pyro ms | closed ms | ref ms "
            "| pyro/ref [min-max] | closed/ref [min-max] | pyro <= 1.25 ref |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        keyed: dict[tuple, dict[str, dict]] = {}
        for row in grid:
            key = (row["network"], row["P"], row["B"], row["D"], row["threads"])
            keyed.setdefault(key, {})[row["path"]] = row
        for (network, P, B, D, threads), by in keyed.items():
            p, c, r = by["pyro"], by["closed"], by["ref"]
            ok = "yes" if p["ratio_to_ref"] <= TARGET else "**no**"
            if any(row["ms_max"] > NOISY * row["ms_min"] for row in (p, c, r)):
                ok += " (noisy)"
            lines.append(
                f"| {network} | {P} | {B} | {D} | {threads} | {p['rows_per_batch']} "
                f"| {p['ms_per_step']:.2f} | {c['ms_per_step']:.2f} | {r['ms_per_step']:.2f} "
                f"| {p['ratio_to_ref']:.2f} [{p['ratio_min']:.2f}-{p['ratio_max']:.2f}] "
                f"| {c['ratio_to_ref']:.2f} [{c['ratio_min']:.2f}-{c['ratio_max']:.2f}] | {ok} |"
            )
        n_ok = sum(1 for by in keyed.values() if by["pyro"]["ratio_to_ref"] <= TARGET)
        lines += ["", f"pyro/ref <= {TARGET} in {n_ok} of {len(keyed)} configs.", ""]
    if over:
        o = over[0]
        lines += [
            f"## Overheads removed by the library's loop (P={o['P']}, B={o['B']}, D={o['D']}, "
            f"threads={o['threads']}, pyro path)",
            "",
            "| variant | ms/step | x library [min-max] | x ref | what |",
            "|---|---|---|---|---|",
        ]
        for row in over:
            lines.append(
                f"| {row['variant']} | {row['ms_per_step']:.2f} | {row['ratio_to_library']:.2f} "
                f"[{row['ratio_min']:.2f}-{row['ratio_max']:.2f}] | {row['ratio_to_ref']:.2f} "
                f"| {row['what']} |"
            )
        lines.append("")
    return "\n".join(lines)


def _ints(text: str) -> list[int]:
    return [int(float(v)) for v in text.split(",") if v]


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.speed",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--P", type=_ints, default=[100, 1000], help="instances P")
    parser.add_argument("--batch-sizes", type=_ints, default=[8, 32, 128], help="instances B")
    parser.add_argument("--obs-dims", type=_ints, default=[16, 256, 1296], help="D")
    parser.add_argument("--threads", type=_ints, default=[1, 2], help="torch threads")
    parser.add_argument("--latent-dim", type=int, default=16, help="L")
    parser.add_argument("--n-times", type=int, default=20, help="rows per instance")
    parser.add_argument(
        "--health-mnist",
        dest="health_mnist",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also time network='health_mnist' at D=1296",
    )
    parser.add_argument("--hm-P", type=_ints, default=[1000], help="P of the health_mnist runs")
    parser.add_argument("--hm-batch-sizes", type=_ints, default=[32], help="B, health_mnist")
    parser.add_argument("--hm-threads", type=_ints, default=[1, 2], help="threads, health_mnist")
    parser.add_argument("--warmup", type=int, default=5, help="warm-up steps per path")
    parser.add_argument("--rounds", type=int, default=5, help="rounds of interleaved blocks")
    parser.add_argument(
        "--block-seconds", type=float, default=0.25, help="target duration of one block"
    )
    parser.add_argument("--min-block", type=int, default=4, help="fewest steps per block")
    parser.add_argument("--max-block", type=int, default=20, help="most steps per block")
    parser.add_argument(
        "--overheads",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="time the overhead removals (validation, SVI+PyroOptim, DataLoader)",
    )
    parser.add_argument(
        "--overhead-config",
        type=_ints,
        default=[1000, 32, 16, 1],
        help="P,B,D,threads of the overheads and profile runs",
    )
    parser.add_argument("--grid", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--profile", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--profile-steps", type=int, default=200)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/speed"))
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    env = environment()
    configs = []
    if args.grid:
        for P in args.P:
            for D in args.obs_dims:
                for B in args.batch_sizes:
                    for threads in args.threads:
                        configs.append(
                            {"network": "mlp", "P": P, "B": B, "D": D, "threads": threads}
                        )
        if args.health_mnist:
            for P in args.hm_P:
                for B in args.hm_batch_sizes:
                    for threads in args.hm_threads:
                        configs.append(
                            {
                                "network": "health_mnist",
                                "P": P,
                                "B": B,
                                "D": 1296,
                                "threads": threads,
                            }
                        )
    start = time.perf_counter()
    grid = main_grid(args, configs) if configs else []
    over = overheads(args) if args.overheads else []
    profile_text = profile(args) if args.profile else ""
    env["wall_seconds"] = round(time.perf_counter() - start, 1)
    out: Path = args.out
    if grid:
        write_text_atomic(out / "results.csv", csv_text(grid))
    if over:
        write_text_atomic(out / "overheads.csv", csv_text(over))
    if profile_text:
        write_text_atomic(out / "profile.txt", profile_text)
    write_text_atomic(out / "results.md", markdown(env, args, grid, over))
    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    write_text_atomic(
        out / "run.json", json.dumps({"environment": env, "settings": settings}, indent=2)
    )
    print(f"wrote {out} in {env['wall_seconds']} s")


if __name__ == "__main__":
    main()
