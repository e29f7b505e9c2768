"""The default demo on an idle CPU and beside one CPU-bound process: wall and CPU seconds.

Runs ``pyro-lmmvae demo --out <tmp>`` (the README's demo command, default options) twice in a
child process: alone, then while another process spins one core (a pure-Python busy loop).
Reports wall seconds and the child's CPU seconds (user + system) of each run, and their ratios.
``fit()`` picks torch's intra-op threads itself (one thread for the demo's small networks), so
no environment variable is set here; ``--threads-env N`` sets ``OMP_NUM_THREADS`` for the demo
to compare with a fixed setting.

Run ``python -m benchmarks.shared_cpu [--markdown]`` (about 3 minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time


def _spin(stop: multiprocessing.Event) -> None:  # pragma: no cover - runs in a child
    x = 0
    while not stop.is_set():
        for _ in range(100_000):
            x += 1


def run_demo(contended: bool, env: dict[str, str], command: list[str]) -> dict:
    """One demo run: wall and CPU seconds of the child, with or without a spinning process."""
    out = tempfile.mkdtemp(prefix="demo_")
    stop = multiprocessing.Event()
    spinner = multiprocessing.Process(target=_spin, args=(stop,)) if contended else None
    if spinner is not None:
        spinner.start()
        time.sleep(1.0)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    try:
        subprocess.run([*command, "--out", out], env=env, check=True, capture_output=True)
    finally:
        wall = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if spinner is not None:
            stop.set()
            spinner.join()
        shutil.rmtree(out, ignore_errors=True)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"contended": contended, "wall_s": wall, "cpu_s": cpu}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads-env", type=int, help="OMP_NUM_THREADS for the demo")
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args(argv)
    env = dict(os.environ)
    env.pop("OMP_NUM_THREADS", None)
    if args.threads_env is not None:
        env["OMP_NUM_THREADS"] = str(args.threads_env)
    command = [sys.executable, "-m", "pyro_lmmvae.cli", "demo"]
    runs = [run_demo(False, env, command), run_demo(True, env, command)]
    idle, busy = runs
    result = {
        "runs": runs,
        "cpu_ratio": busy["cpu_s"] / idle["cpu_s"],
        "wall_ratio": busy["wall_s"] / idle["wall_s"],
        "cpus": os.cpu_count(),
        "threads_env": args.threads_env,
    }
    if args.markdown:
        print("| run | wall s | CPU s |")
        print("|---|---|---|")
        for r in runs:
            label = "beside one CPU-bound process" if r["contended"] else "idle"
            print(f"| {label} | {r['wall_s']:.0f} | {r['cpu_s']:.0f} |")
        print(f"| ratio | {result['wall_ratio']:.2f} | {result['cpu_ratio']:.2f} |")
    else:
        print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
