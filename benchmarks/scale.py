"""Step time and memory of the library's training step as the number of instances P grows.

Each (P, update mode, loss) runs in a fresh subprocess, so that its peak RSS is its own. The
data are built directly with numpy (``id``, ``t`` with a few rows per instance, random ``y`` with
~20% of entries missing): the point is the cost of a step, not the data. The model is the
oLMM-VAE ``~ 1 + t + (1 + t | id)`` (k = 2 random-effect columns, so the per-instance tables
``random_loc`` and ``random_rho`` are (P, L, 2) each), trained on batches of B whole instances
with the steps :func:`~pyro_lmmvae.training.loop.train` runs
(:func:`~pyro_lmmvae.training.loop.optimisation_step`, validation on the first step only):

* ``sparse``: the library default, rows gathered under
  :func:`~pyro_lmmvae.training.optim.sparse_instance_gradients` and stepped by SparseAdam;
* ``dense``: ``FitOptimizer(..., sparse=False)``, one dense Adam over the whole tables.

Reported per run: median (and 10%/90%) step time over ``--steps`` steps after a warm-up, the
table size L·k·P floats, the RSS after set-up (model, data, optimizer state after warm-up), the
process peak RSS (``getrusage`` maxrss), and the peak growth during the timed steps (the kernel's
VmHWM reset through ``/proc/self/clear_refs`` just before them).

Usage::

    flock /tmp/bench.lock python -m benchmarks.scale --out benchmarks/results/scale
    python -m benchmarks.scale --P 1e3,1e4 --steps 20 --out /tmp/scale   # a quick check
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyro
import torch

from benchmarks.speed import csv_text, environment, write_atomic

FORMULA = "~ 1 + t + (1 + t | id)"
N_RANDOM = 2  # k of (1 + t | id)
ROOT = Path(__file__).resolve().parents[1]


def _status_kib(field: str) -> int | None:
    try:
        text = Path("/proc/self/status").read_text()
    except OSError:
        return None
    match = re.search(rf"^{field}:\s+(\d+) kB", text, re.MULTILINE)
    return int(match.group(1)) if match else None


def _reset_peak() -> bool:
    """Reset the kernel's peak-RSS mark (VmHWM) of this process to its current RSS."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _mib(kib: int | None) -> float | None:
    return None if kib is None else round(kib / 1024, 1)


def make_data(n_instances: int, rows: int, obs_dim: int, seed: int = 0):
    """Covariates (id, t), random observations and a mask with ~20% of entries missing."""
    rng = np.random.default_rng(seed)
    n = n_instances * rows
    data = pd.DataFrame(
        {
            "id": np.repeat(np.arange(n_instances), rows),
            "t": np.tile(np.linspace(0.0, 1.0, rows), n_instances),
        }
    )
    y = rng.standard_normal((n, obs_dim), dtype=np.float32)
    mask = rng.random((n, obs_dim), dtype=np.float32) < 0.8
    mask[:, 0] = True  # every row has an observed entry
    return data, y, mask


def worker(args) -> dict:
    """One (P, mode, kl) in this process: set up, warm up, time ``args.steps`` steps."""
    from pyro_lmmvae import LMMVAE
    from pyro_lmmvae.training.loop import optimisation_step
    from pyro_lmmvae.training.optim import FitOptimizer, sparse_instance_gradients

    torch.set_num_threads(args.threads)
    rss_start = _status_kib("VmRSS")
    start = time.perf_counter()
    data, y, mask = make_data(args.one_P, args.rows, args.obs_dim)
    est = LMMVAE(FORMULA, data=data, y=y, mask=mask, latent_dim=args.latent_dim, standardize=False)
    del data, y, mask
    (kl,) = args.kl  # the parent passes one
    loss = est.loss_module(kl=kl)
    optimizer = FitOptimizer(loss, 1e-3, 0.99, sparse=args.mode == "sparse")
    batcher = est.batches(args.batch_size, seed=0)

    def batches():
        while True:
            yield from batcher

    stream = batches()
    gc.collect()
    rss_model = _status_kib("VmRSS")  # data + model, before any optimizer state
    setup_seconds = time.perf_counter() - start
    step_times, batch_times = [], []
    validating = pyro.infer.is_validation_enabled()
    sparse = sparse_instance_gradients(loss, enabled=optimizer.sparse)
    with sparse, pyro.validation_enabled(False):
        for i in range(args.warmup):
            with pyro.validation_enabled(validating and i == 0):
                optimisation_step(loss, optimizer, next(stream))
        gc.collect()
        rss_setup = _status_kib("VmRSS")
        peak_reset = _reset_peak()
        maxrss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        for _ in range(args.steps):
            t0 = time.perf_counter()
            batch = next(stream)
            t1 = time.perf_counter()
            optimisation_step(loss, optimizer, batch)
            step_times.append(time.perf_counter() - t1)
            batch_times.append(t1 - t0)
        hwm_steps = _status_kib("VmHWM") if peak_reset else None
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    table = est.pair.guide.effects.random_loc
    floats = table.numel()
    q10, q90 = np.quantile(step_times, [0.1, 0.9])
    growth = (hwm_steps - rss_setup) if hwm_steps is not None and rss_setup is not None else None
    return {
        "P": args.one_P,
        "mode": args.mode,
        "kl": kl,
        "rows_per_instance": args.rows,
        "N": args.one_P * args.rows,
        "B": args.batch_size,
        "D": args.obs_dim,
        "L": args.latent_dim,
        "k": N_RANDOM,
        "threads": torch.get_num_threads(),
        "steps": args.steps,
        "median_ms": round(1e3 * statistics.median(step_times), 4),
        "p10_ms": round(1e3 * q10, 4),
        "p90_ms": round(1e3 * q90, 4),
        "batch_median_ms": round(1e3 * statistics.median(batch_times), 4),
        "table_floats_Lkp": floats,
        "table_MiB": round(4 * floats / 2**20, 2),
        "setup_s": round(setup_seconds, 2),
        "rss_start_MiB": _mib(rss_start),
        "rss_model_MiB": _mib(rss_model),
        "rss_setup_MiB": _mib(rss_setup),
        "warmup_growth_over_table": round((rss_setup - rss_model) * 1024 / (4 * floats), 2)
        if rss_setup is not None and rss_model is not None
        else None,
        "peak_rss_MiB": _mib(maxrss),
        "peak_rss_before_steps_MiB": _mib(maxrss_before),
        "step_peak_growth_MiB": _mib(growth),
    }


def _floats(text: str) -> list[int]:
    return [int(float(v)) for v in text.split(",") if v]


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.scale",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--P", type=_floats, default=[1000, 10_000, 100_000, 1_000_000])
    parser.add_argument("--rows", type=int, default=3, help="rows per instance")
    parser.add_argument("--obs-dim", type=int, default=16, help="D")
    parser.add_argument("--latent-dim", type=int, default=8, help="L")
    parser.add_argument("--batch-size", type=int, default=32, help="instances per batch B")
    parser.add_argument("--steps", type=int, default=200, help="timed steps")
    parser.add_argument("--warmup", type=int, default=20, help="warm-up steps")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument(
        "--kl",
        type=lambda s: s.split(","),
        default=["trace_mean_field", "closed_form"],
        help="loss(es): trace_mean_field (the Pyro path) and/or closed_form",
    )
    parser.add_argument(
        "--dense-max-P",
        type=lambda s: int(float(s)),
        default=1_000_000,
        help="largest P run with dense Adam over the tables",
    )
    parser.add_argument("--timeout", type=float, default=300, help="seconds per subprocess")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/scale"))
    # internal: one run in this process
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--one-P", type=lambda s: int(float(s)), help=argparse.SUPPRESS)
    parser.add_argument("--mode", choices=("sparse", "dense"), help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def markdown(env: dict, args, rows: list[dict]) -> str:
    lines = [
        "# Step time and memory as the number of instances P grows",
        "",
        f"- command: `{env['command']}`",
        f"- torch {env['torch']}, pyro {env['pyro']}, Python {env['python']}; CPU: {env['cpu']} "
        f"({env['cpu_count']} logical CPUs visible, shared); {env['date']}",
        f"- library: commit {env['git_commit'][:12]}, uncommitted changes in "
        f"{env['uncommitted_library_files'] or 'none'} (diff sha256 "
        f"{env['uncommitted_library_diff_sha256']})",
        f"- model: oLMM-VAE `{FORMULA}`, L = {args.latent_dim}, k = {N_RANDOM}, D = "
        f"{args.obs_dim}, {args.rows} rows per instance, B = {args.batch_size} instances, "
        f"{args.threads} thread(s); every row of the table in its own process; "
        f"{args.warmup} warm-up steps, {args.steps} timed steps. step = optimisation_step "
        "(zero grad, loss, sync, backward, update); batch = making the batch (InstanceBatcher), "
        "timed separately.",
        "- `sparse` = library default (sparse_instance_gradients + SparseAdam over the tables); "
        "`dense` = FitOptimizer(sparse=False), dense Adam over the whole tables.",
        "- table = L·k·P floats (one of `random_loc`, `random_rho`). Memory in MiB. rss setup: "
        "RSS after set-up and warm-up (data, model, optimizer state); bytes/instance: (rss setup "
        "- rss setup at the smallest P) / (P - smallest P), and the same in units of one table "
        f"row (L·k·4 = {4 * args.latent_dim * N_RANDOM} bytes); peak: getrusage maxrss of the "
        "process (set-up included); step growth: peak RSS during the timed steps - rss setup; "
        "warm-up growth: (rss setup - RSS before the first step) / table bytes (optimizer "
        "state: 4 tables for Adam moments of random_loc and random_rho).",
        "",
        "| loss | mode | P | table floats | step ms median [p10-p90] | x smallest P | batch ms "
        "| rss setup | bytes/instance (table rows) | warm-up growth (tables) | peak rss "
        "| step growth |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    done = [r for r in rows if "median_ms" in r]
    smallest = {}
    for r in done:
        key = (r["kl"], r["mode"])
        if key not in smallest or r["P"] < smallest[key]["P"]:
            smallest[key] = r
    row_bytes = 4 * args.latent_dim * N_RANDOM
    for r in rows:
        if "median_ms" not in r:
            lines.append(f"| {r['kl']} | {r['mode']} | {r['P']} | | {r['error']} |" + " |" * 7)
            continue
        base = smallest[(r["kl"], r["mode"])]
        rel = r["median_ms"] / base["median_ms"]
        if r["P"] > base["P"]:
            per = 2**20 * (r["rss_setup_MiB"] - base["rss_setup_MiB"]) / (r["P"] - base["P"])
            per_text = f"{per:.0f} ({per / row_bytes:.1f})"
        else:
            per_text = "-"
        lines.append(
            f"| {r['kl']} | {r['mode']} | {r['P']:.0e} | {r['table_floats_Lkp']:.2e} "
            f"| {r['median_ms']:.2f} [{r['p10_ms']:.2f}-{r['p90_ms']:.2f}] | {rel:.2f} "
            f"| {r['batch_median_ms']:.3f} | {r['rss_setup_MiB']:.0f} | {per_text} "
            f"| {r['warmup_growth_over_table']} "
            f"| {r['peak_rss_MiB']:.0f} | {r['step_peak_growth_MiB']} |"
        )
    lines.append("")
    return "\n".join(lines)


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args)), flush=True)
        return
    env = environment()
    start = time.perf_counter()
    rows = []
    for kl in args.kl:
        for mode in ("sparse", "dense"):
            for P in args.P:
                if mode == "dense" and P > args.dense_max_P:
                    continue
                command = [
                    sys.executable,
                    "-m",
                    "benchmarks.scale",
                    "--worker",
                    f"--one-P={P}",
                    f"--mode={mode}",
                    f"--kl={kl}",
                    f"--rows={args.rows}",
                    f"--obs-dim={args.obs_dim}",
                    f"--latent-dim={args.latent_dim}",
                    f"--batch-size={args.batch_size}",
                    f"--steps={args.steps}",
                    f"--warmup={args.warmup}",
                    f"--threads={args.threads}",
                ]
                try:
                    done = subprocess.run(
                        command,
                        capture_output=True,
                        text=True,
                        timeout=args.timeout,
                        cwd=ROOT,
                        env=os.environ | {"PYTHONPATH": str(ROOT)},
                    )
                    if done.returncode != 0:
                        raise RuntimeError(done.stderr.strip().splitlines()[-1])
                    row = json.loads(done.stdout.strip().splitlines()[-1])
                except (subprocess.TimeoutExpired, RuntimeError) as err:
                    row = {"P": P, "mode": mode, "kl": kl, "error": str(err)[:200]}
                rows.append(row)
                print(json.dumps(row), flush=True)
    env["wall_seconds"] = round(time.perf_counter() - start, 1)
    out: Path = args.out
    ok = [r for r in rows if "median_ms" in r]
    if ok:
        keys = list(ok[0])
        write_atomic(out / "results.csv", csv_text([{k: r.get(k, "") for k in keys} for r in rows]))
    write_atomic(out / "results.md", markdown(env, args, rows))
    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    write_atomic(out / "run.json", json.dumps({"environment": env, "settings": settings}, indent=2))
    print(f"wrote {out} in {env['wall_seconds']} s")


if __name__ == "__main__":
    main()
