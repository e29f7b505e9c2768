"""Command-line interface.

- ``pyro-lmmvae demo --out DIR [--variant ...] [--objective ...]``: fit on synthetic data
  (:mod:`~pyro_lmmvae.cli.demo`).
- ``pyro-lmmvae data {health-mnist,rotating-mnist,physionet} --out FILE.npz [--root DIR]
  [generator options]``: build a dataset into an ``.npz`` cache (reused when it was built
  with the same options; :mod:`~pyro_lmmvae.cli.data`).
- ``pyro-lmmvae fit --formula F --covariates X.csv --observations Y.npy --out MODEL.pt``: train
  an LMM-VAE on files and save it (:mod:`~pyro_lmmvae.cli.fit`).
- ``pyro-lmmvae predict MODEL.pt --covariates X.csv --out PRED.npy``: prediction at covariates;
  ``pyro-lmmvae impute MODEL.pt --out IMPUTED.npy [--covariates X --observations Y]``: fill in
  the missing entries of the training rows (or of given rows) (:mod:`~pyro_lmmvae.cli.predict`).
- ``pyro-lmmvae effects MODEL.pt --out-dir DIR``: ``effects.nc``, ``summary.csv``, ``forest.png``
  (:mod:`~pyro_lmmvae.cli.effects`).

The parser is :func:`~pyro_lmmvae.cli.parser.build_parser`; the verbs read their input files
with :mod:`~pyro_lmmvae.cli.readers` and write arrays with :mod:`~pyro_lmmvae.cli.writers`.
The defaults that ``--help`` shows are the objects the library's signatures take, from
:mod:`pyro_lmmvae.defaults` (which imports nothing), so building the parser and ``--help``
import neither torch nor Pyro; each verb imports what it needs when it runs (``data``: the
dataset generators, numpy, pandas, scipy and torch, never Pyro).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pyro_lmmvae.cli.parser import build_parser
from pyro_lmmvae.cli.readers import MissingPackageError

__all__ = ["main"]


def _resume_hint(args: argparse.Namespace) -> str:
    """For an interrupted ``fit`` that writes checkpoints: how to continue it."""
    checkpoint = getattr(args, "checkpoint", None)
    if args.verb != "fit" or checkpoint is None:
        return ""
    if not Path(checkpoint).exists():
        return f"; no checkpoint was written to {checkpoint} yet"
    return (
        f"; {checkpoint} holds the last completed epoch: run the same command with --resume "
        "to continue"
    )


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``pyro-lmmvae`` command.

    Parameters
    ----------
    argv : list of str, optional
        The arguments after the program name; ``sys.argv[1:]`` if not given.

    Returns
    -------
    int
        Exit status: 0 on success; 2 for usage errors and bad or missing input files (the
        message names the file, column or shape at fault; no traceback); 1 when a needed
        package is missing, a file cannot be written, or training fails (non-finite loss); 130
        on Ctrl-C (one line; for ``fit`` with ``--checkpoint``, how to resume). argparse exits
        (:class:`SystemExit`) for ``--help`` and usage errors.
    """
    args = build_parser().parse_args(argv)
    try:
        return args._run(args)
    except KeyboardInterrupt:
        print(f"pyro-lmmvae {args.verb}: interrupted{_resume_hint(args)}", file=sys.stderr)
        return 130
    except (ValueError, OSError, MissingPackageError) as err:
        # argparse's format without the usage block: the input, not the syntax, is at fault
        print(f"pyro-lmmvae {args.verb}: error: {err}", file=sys.stderr)
        return 2 if isinstance(err, ValueError | FileNotFoundError) else 1
