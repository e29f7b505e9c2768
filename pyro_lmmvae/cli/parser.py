"""The ``pyro-lmmvae`` argument parser: one sub-parser per verb, each from its verb's module.

Building it imports the verb modules only (argparse and :mod:`pyro_lmmvae.defaults`); what a
verb needs to run (torch, Pyro, pandas, ArviZ, the library) is imported when it runs.
"""

from __future__ import annotations

import argparse

from pyro_lmmvae.cli import data, demo, effects, fit, predict


def build_parser() -> argparse.ArgumentParser:
    """The parser of ``pyro-lmmvae``; each verb sets ``_run``, the function that runs it."""
    parser = argparse.ArgumentParser(
        prog="pyro-lmmvae", description="LMM-VAE: VAEs with a linear-mixed-model latent prior."
    )
    verbs = parser.add_subparsers(dest="verb", required=True)
    demo.add_parser(verbs)
    data.add_parser(verbs)
    fit.add_parser(verbs)
    predict.add_predict_parser(verbs)
    predict.add_impute_parser(verbs)
    effects.add_parser(verbs)
    return parser
