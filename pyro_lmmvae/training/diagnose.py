"""Find where a non-finite training loss comes from: parameters, or a sample site of the traces.

When the loss of a batch is NaN or infinite, :func:`nonfinite_sources` replays the batch through
the guide and the model under :mod:`pyro.poutine` traces and names every parameter whose value is
not finite and every sample site whose value or log-density is not finite, in the order the
model runs. The training loop puts these names into its error message.
"""

from __future__ import annotations

import pyro
import torch
from pyro import poutine
from torch import nn

from pyro_lmmvae.data import Batch
from pyro_lmmvae.pyro_module import local_params

__all__ = ["nonfinite_sources"]


def _bad(value: torch.Tensor) -> bool:
    return bool(not torch.isfinite(value).all())


def nonfinite_sources(model: nn.Module, guide: nn.Module, batch: Batch) -> list[str]:
    """Names of the parameters and sample sites that are not finite on ``batch``.

    Parameters
    ----------
    model, guide : torch.nn.Module
        A Pyro model and guide taking a :class:`~pyro_lmmvae.data.Batch`.
    batch : Batch
        The batch whose loss was not finite.

    Returns
    -------
    list of str
        ``"parameter <name>"`` for each non-finite parameter of the model or the guide, then
        ``"guide site <name> (value)"`` / ``"model site <name> (log_prob)"`` for each sample site
        of the guide and the replayed model whose value or log-density has a NaN or infinity.
        Empty if everything is finite (the non-finite value arose in the loss arithmetic itself).

    Raises
    ------
    Exception
        Whatever running the guide or the model on the batch raises (e.g. a shape error).
    """
    found = []
    seen: set[int] = set()
    for owner in (model, guide):
        for name, param in owner.named_parameters():
            if id(param) not in seen and _bad(param.detach()):
                found.append(f"parameter {name}")
            seen.add(id(param))
    # Without argument validation, so that a NaN reaches the site where it arises instead of
    # stopping the trace at the first distribution it is passed to.
    with torch.no_grad(), local_params(), pyro.validation_enabled(False):
        guide_trace = poutine.trace(guide).get_trace(batch)
        model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(batch)
        for label, trace in (("guide", guide_trace), ("model", model_trace)):
            for name, site in trace.nodes.items():
                if site["type"] != "sample":
                    continue
                replayed = label == "model" and name in guide_trace.nodes
                if not replayed and _bad(site["value"]):  # (a replayed value is the guide's)
                    found.append(f"{label} site {name!r} (value)")
                    continue
                log_prob = site["fn"].log_prob(site["value"])
                if _bad(log_prob):
                    found.append(f"{label} site {name!r} (log_prob)")
    return found
