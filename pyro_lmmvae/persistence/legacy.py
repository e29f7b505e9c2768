"""Reading the pickled files of pyro_lmmvae 0.1 (formats 1–2), only on explicit trust.

Version 0.1 saved the estimator's object graph with ``torch.save``. Unpickling it runs code
named by the file, so :func:`~pyro_lmmvae.persistence.files.read_model_file` does it only with
``trust_pickle=True``. The objects are then converted to the current layout (constructor
arguments, rows, state dict), so that ``LMMVAE.load(path, trust_pickle=True).save(path)`` turns an
old file into a new one. The named network is recognised by the shapes of its weights; a network
of another shape is kept as a custom module.

A pickle names the module of every object it holds, so the modules of 0.1 that have moved since
are read from their new place (:data:`MOVED_MODULES`): the GP modules ``bases``, ``spectral``
and ``spectral_priors`` now make up :mod:`pyro_lmmvae.gp`.
"""

from __future__ import annotations

import pickle
import types
from dataclasses import asdict
from pathlib import Path

import torch

from pyro_lmmvae.persistence.codecs import (
    design_record,
    encode_frame,
    encode_likelihood,
    encode_prior,
)
from pyro_lmmvae.persistence.files import LEGACY_FORMATS, ModelFileError

__all__ = ["MOVED_MODULES", "read_legacy"]

#: Modules of 0.1 whose classes live elsewhere now: ``{old module: where to look them up}``.
#: :mod:`pyro_lmmvae.gp` exports every public name of the three flat GP modules it replaced
#: (``BasisColumn``, ``Kernel``, ``SpectralPrior``, ...).
MOVED_MODULES = {
    "pyro_lmmvae.bases": "pyro_lmmvae.gp",
    "pyro_lmmvae.spectral": "pyro_lmmvae.gp",
    "pyro_lmmvae.spectral_priors": "pyro_lmmvae.gp",
}


class _Unpickler(pickle.Unpickler):
    """Reads a class of a moved module from its new place (:data:`MOVED_MODULES`)."""

    def find_class(self, module: str, name: str):
        return super().find_class(MOVED_MODULES.get(module, module), name)


def _load(file, **kwargs):
    return _Unpickler(file, **kwargs).load()


# what torch.load calls for unpickling: a module with Unpickler and load
_PICKLE = types.ModuleType("pyro_lmmvae_legacy_pickle")
_PICKLE.Unpickler = _Unpickler
_PICKLE.load = _load


def read_legacy(path: str | Path) -> dict:
    """A 0.1 file as a current payload (plus ``legacy_modules`` for unrecognised networks)."""
    path = Path(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=False, pickle_module=_PICKLE)
    except Exception as err:  # whatever unpickling an old object graph raises
        raise ModelFileError(f"{path}: cannot read this pyro_lmmvae 0.1 file ({err})") from err
    if not isinstance(state, dict) or state.get("format") not in LEGACY_FORMATS:
        raise ModelFileError(f"{path} is not a pyro_lmmvae model file")
    design, pair, options = state["design"], state["pair"], state["options"]
    model = pair.model
    effects = model.effects
    encoder = getattr(pair.guide, "encoder", None)
    mask_channel = bool(getattr(encoder, "mask_channel", False))
    conditional = options.variant == "cvae"
    network, modules = _recognise_network(
        pair, encoder, state["obs_dim"], state["latent_dim"], mask_channel, conditional, design
    )
    constructor = {
        "formula": design.formula,
        "latent_dim": state["latent_dim"],
        "variant": options.variant,
        "objective": options.objective,
        "instance": design.instance,
        "network": network,
        "encoder": {"custom": "legacy"} if "encoder" in modules else None,
        "decoder": {"custom": "legacy"} if "decoder" in modules else None,
        "likelihood": encode_likelihood(model.likelihood),
        "latent_scale": 1.0,  # the learned or fixed value is in the state dict
        "learn_latent_scale": isinstance(model.latent_scale.raw, torch.nn.Parameter),
        "fixed_prior": encode_prior(getattr(effects, "fixed_prior", None)),
        "random_prior": encode_prior(getattr(effects, "random_prior", None)),
        "bayesian_effects": options.bayesian_effects,
        "pooling": options.pooling,
        "include_prior_precision": options.include_prior_precision,
        "local_reparam": options.local_reparam,
        "instance_intercept": False,  # an added (1 | id) is already in design.formula
        "standardize": sorted(design.standardization),
        "mask_channel": mask_channel,
        "seed": 0,
    }
    history = state["history"]
    return {
        "library_version": "0.1",
        "constructor": constructor,
        "options": asdict(options),
        "data": encode_frame(state["data"], set(design._reference.columns)),
        "y": torch.from_numpy(state["y"]),
        "mask": torch.from_numpy(state["mask"]),
        "design": design_record(design),
        "state_dict": pair.state_dict(),
        "history": history.to_dict() if hasattr(history, "to_dict") else dict(history),
        "legacy_modules": modules,
    }


def _recognise_network(pair, encoder, obs_dim, latent_dim, mask_channel, conditional, design):
    """The name of the architecture whose weights have the saved shapes, else the modules."""
    from pyro_lmmvae.architectures import ARCHITECTURES, build_networks

    saved_encoder = None if encoder is None else encoder.network
    saved_decoder = pair.model.decoder
    n_covariates = design.n_fixed if conditional else 0
    for name in ARCHITECTURES:
        try:
            enc, dec = build_networks(
                name, obs_dim, latent_dim, mask_channel=mask_channel, n_covariates=n_covariates
            )
        except ValueError:  # an image network for another number of pixels
            continue
        if _same_shapes(dec, saved_decoder) and (
            saved_encoder is None or _same_shapes(enc, saved_encoder)
        ):
            return name, {}
    modules = {"decoder": saved_decoder}
    if saved_encoder is not None:
        modules["encoder"] = saved_encoder
    return "mlp", modules


def _same_shapes(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return type(a) is type(b) and {k: v.shape for k, v in sa.items()} == {
        k: v.shape for k, v in sb.items()
    }
