"""Parts the verbs share: the help formatter, argument types, the model file and library errors.

Imports nothing heavy: the library is imported inside :func:`load_model`.
"""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Callable, Iterator
from typing import Any

from pyro_lmmvae.cli.readers import existing


class DefaultsFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Show ``(default: X)`` except for options that default to None (said in their help)."""

    def __init__(self, prog: str) -> None:
        super().__init__(prog, max_help_position=32)

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None:
            return action.help
        return super()._get_help_string(action)


def optional(kind: type) -> Callable[[str], Any]:
    """An argparse type: ``kind`` or None (spelled ``none``)."""

    def parse(text: str) -> Any:
        return None if text.strip().lower() == "none" else kind(text)

    parse.__name__ = kind.__name__
    return parse


def fraction_or_none(text: str) -> float | None:
    """An argparse type: a fraction in (0, 1), or None (``none``, ``0`` or empty)."""
    if text.strip().lower() in ("none", "0", "0.0", ""):
        return None
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a fraction or 'none': {text!r}") from None
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"the validation fraction must be in (0, 1), got {value}")
    return value


def add_model_argument(parser: argparse.ArgumentParser) -> None:
    """The positional ``MODEL.pt`` of the verbs that use a fitted model."""
    parser.add_argument(
        "model",
        metavar="MODEL.pt",
        help="model file written by 'pyro-lmmvae fit' (or LMMVAE.save, or a fit checkpoint)",
    )


def load_model(path: str) -> Any:
    """The :class:`~pyro_lmmvae.LMMVAE` saved in ``path`` (imports the library)."""
    from pyro_lmmvae import LMMVAE

    # LMMVAE.load gives one-line errors naming the file and the cause (ModelFileError)
    return LMMVAE.load(existing(path, "model file"))


@contextlib.contextmanager
def library_errors() -> Iterator[None]:
    """Give the library's KeyErrors (missing columns) as ValueErrors, with CLI names."""
    try:
        yield
    except KeyError as err:
        message = err.args[0] if err.args and isinstance(err.args[0], str) else repr(err)
        raise ValueError(message) from err
    except ValueError as err:
        message = str(err)
        for api, cli in (
            ("pass unseen='prior'", "pass --unseen prior"),
            (
                "pass data= with one row per row of y",
                "pass --covariates (one row per row of --observations)",
            ),
        ):
            message = message.replace(api, cli)
        raise ValueError(message) from err
