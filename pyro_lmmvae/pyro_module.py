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
from typing import Any

import pyro
from pyro.nn import PyroModule
from pyro.nn import module as pyro_module
from torch import nn


def _local_mode() -> bool:
    """``pyro.settings.get("module_local_params")`` without its per-call module import."""
    flag = getattr(pyro_module, "_MODULE_LOCAL_PARAMS", None)
    return pyro_module._is_module_local_param_enabled() if flag is None else bool(flag)


def local_params() -> AbstractContextManager:
    """Context in which PyroModules keep their parameters to themselves (no global store)."""
    return pyro.settings.context(module_local_params=True)


class LocalPyroModule(PyroModule):
    """A :class:`~pyro.nn.PyroModule` that can run both with and without the global store."""

    def __init__(self, name: str = "") -> None:
        with local_params():
            super().__init__(name)

    def __getattr__(self, name: str) -> Any:
        # In module-local mode PyroModule turns every access to a parameter or plain nn.Module
        # into Pyro "param" messages (one per parameter of the submodule) that nothing here
        # reads: parameters are found through ``module.parameters()``. That bookkeeping was
        # the largest Python cost of a training step, so it is skipped; PyroParams and
        # PyroSamples (e.g. a learned prior scale) keep Pyro's handling, and so does the
        # global-store mode that ``pyro.infer.SVI`` with a ``PyroOptim`` relies on.
        pyro_attributes = (
            self.__dict__.get("_pyro_params", ()),
            self.__dict__.get("_pyro_samples", ()),
        )
        if name in pyro_attributes[0] and not _local_mode():
            # A PyroParam read in Pyro's global mode would be synchronised with the global
            # param store, where a parameter of the same name from another model replaces this
            # one. Read it module-locally: Pyro still sees a param statement (SVI and PyroOptim
            # find it), but the value is always this module's own.
            with local_params():
                return super().__getattr__(name)
        if any(name in a for a in pyro_attributes) or not _local_mode():
            return super().__getattr__(name)
        result = nn.Module.__getattr__(self, name)
        if isinstance(result, PyroModule) and not result._pyro_name:
            super().__getattr__(name)  # Pyro names the submodule on first access
        return result
