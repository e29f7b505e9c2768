"""A PyroModule base that keeps its parameters local to the module.

Pyro's global parameter store makes two models in one notebook silently share parameters that
have the same name. Library code therefore runs models and guides under
:func:`local_params` (``pyro.settings.context(module_local_params=True)``), where every parameter
lives in its module and is found through ``module.parameters()``. For that mode to work a
PyroModule must also be *constructed* in it, which :class:`LocalPyroModule` does; the same
objects still run in Pyro's default global mode, so ``pyro.infer.SVI`` with a ``PyroOptim``
drives them as usual from a notebook.
"""

from __future__ import annotations

from contextlib import AbstractContextManager

import pyro
from pyro.nn import PyroModule


def local_params() -> AbstractContextManager:
    """Context in which PyroModules keep their parameters to themselves (no global store)."""
    return pyro.settings.context(module_local_params=True)


class LocalPyroModule(PyroModule):
    """A :class:`~pyro.nn.PyroModule` that can run both with and without the global store."""

    def __init__(self, name: str = "") -> None:
        with local_params():
            super().__init__(name)
