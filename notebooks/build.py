"""Execute the notebooks' sources at full size and write the paired ``.ipynb`` with outputs.

Each notebook's source is a jupytext percent script, ``NN_name.py`` (reviewable, diffable); its
pair ``NN_name.ipynb`` holds the same cells with their outputs and figures, and is written only
by this script (or by ``jupytext --sync`` after an edit in Jupyter, which keeps both in step).

    python notebooks/build.py                      # every notebook in this folder
    python notebooks/build.py 01_quickstart 03     # by name or name prefix
    python notebooks/build.py 02 --small           # a quick CI-size run; writes nothing
    python notebooks/build.py --threads 1          # torch threads of the kernel (OMP_NUM_THREADS)

Each notebook runs in a fresh ``python3`` kernel whose working directory is this folder (so that
the default ``DATA_ROOT``, ``../../shared/data``, is the shared data folder next to the
checkout), with ``PYRO_LMMVAE_NOTEBOOK_SMALL`` unset, and is written back atomically only if
every cell ran. Needs the ``notebooks`` extra: ``pip install -e ".[notebooks]"``.
``tests/docs/test_notebooks.py`` runs every source at CI size and checks that each pair is in step.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import jupytext
import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

HERE = Path(__file__).resolve().parent
SMALL_FLAG = "PYRO_LMMVAE_NOTEBOOK_SMALL"


def sources(folder: Path = HERE) -> list[Path]:
    """The notebooks' percent-script sources of a folder, ``NN_name.py``, in order."""
    return sorted(p for p in folder.glob("[0-9][0-9]_*.py"))


def find(names: list[str]) -> list[Path]:
    """Notebook sources of this folder matching the names or name prefixes (all without names)."""
    notebooks = sources()
    if not names:
        return notebooks
    chosen = []
    for name in names:
        stem = Path(name).stem
        hits = [p for p in notebooks if p.stem == stem] or [
            p for p in notebooks if p.stem.startswith(stem)
        ]
        if len(hits) != 1:
            found = ", ".join(p.stem for p in hits) or "none"
            raise SystemExit(f"{name!r} matches {found}; notebooks: {[p.stem for p in notebooks]}")
        chosen += hits
    return chosen


def execute(path: Path, small: bool, timeout: int) -> nbformat.NotebookNode:
    """Run the source in a fresh kernel (cwd: this folder); raise on the first failing cell."""
    nb = jupytext.read(path)
    client = NotebookClient(
        nb,
        timeout=timeout,
        kernel_name="python3",
        record_timing=False,  # no per-cell timestamps: stable diffs
        resources={"metadata": {"path": str(HERE)}},
    )
    if small:
        os.environ[SMALL_FLAG] = "1"
    else:
        os.environ.pop(SMALL_FLAG, None)
    client.execute()
    return nb


def write_atomic(nb: nbformat.NotebookNode, path: Path) -> None:
    """Write ``nb`` to ``path`` through a temporary file in the same folder."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".ipynb")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            nbformat.write(nb, handle)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates the file private (0600)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help="notebook names or prefixes (default: all)")
    parser.add_argument(
        "--small", action="store_true", help=f"run at CI size ({SMALL_FLAG}=1); write nothing"
    )
    parser.add_argument("--timeout", type=int, default=1200, help="seconds per cell")
    parser.add_argument(
        "--threads", type=int, help="torch threads of the kernel (sets OMP_NUM_THREADS)"
    )
    args = parser.parse_args(argv)
    if args.threads is not None:
        os.environ["OMP_NUM_THREADS"] = str(args.threads)
        os.environ["MKL_NUM_THREADS"] = str(args.threads)
    failed = 0
    for path in find(args.names):
        started = time.perf_counter()
        try:
            nb = execute(path, args.small, args.timeout)
        except CellExecutionError as err:
            failed += 1
            print(f"{path.name}: FAILED after {time.perf_counter() - started:.0f} s\n{err}")
            continue
        seconds = time.perf_counter() - started
        if args.small:
            print(f"{path.name}: ran at CI size in {seconds:.0f} s (not written)")
        else:
            write_atomic(nb, path.with_suffix(".ipynb"))
            print(f"{path.stem}.ipynb: executed in {seconds:.0f} s, written")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
