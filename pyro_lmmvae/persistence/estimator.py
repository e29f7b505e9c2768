"""Saving and loading the estimator: its payload, its rebuild, and its ``save``/``load`` methods.

A payload holds the constructor arguments, the training rows, the design's encodings, the state
dict of the variational pair and the history (layout in :mod:`pyro_lmmvae.persistence`).
Loading rebuilds the estimator through its constructor, checks that the rebuilt design equals
the saved one, and loads the state dict (the approach of scvi-tools).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from torch import nn

from pyro_lmmvae.models import Likelihood
from pyro_lmmvae.persistence.codecs import (
    decode_frame,
    decode_likelihood,
    decode_prior,
    design_record,
    encode_frame,
    encode_likelihood,
    encode_prior,
)
from pyro_lmmvae.persistence.files import (
    LegacyFormatError,
    ModelFileError,
    check_device,
    read_model_file,
    write_model_file,
)
from pyro_lmmvae.persistence.legacy import read_legacy
from pyro_lmmvae.prior_specs import PriorSpec
from pyro_lmmvae.training.loop import TrainingHistory

Estimator = TypeVar("Estimator", bound="PersistenceMixin")

__all__ = ["PersistenceMixin", "build_estimator", "estimator_payload"]


# ---------------------------------------------------------------------------- estimators
def estimator_payload(estimator: Any) -> dict:
    """Everything :meth:`~pyro_lmmvae.LMMVAE.save` writes, as plain values and tensors."""
    from dataclasses import asdict

    from pyro_lmmvae import __version__

    model = estimator.pair.model
    effects = model.effects
    design = estimator.design
    needed = set(design._reference.columns)
    constructor = dict(estimator._constructor)
    constructor["likelihood"] = encode_likelihood(model.likelihood)
    constructor["learn_latent_scale"] = isinstance(model.latent_scale.raw, torch.nn.Parameter)
    constructor["fixed_prior"] = encode_prior(getattr(effects, "fixed_prior", None))
    constructor["random_prior"] = encode_prior(getattr(effects, "random_prior", None))
    state = {k: v.detach().cpu().clone() for k, v in estimator.pair.state_dict().items()}
    return {
        "library_version": __version__,
        "constructor": constructor,
        "options": asdict(estimator.options),
        "data": encode_frame(estimator._data, needed),
        "y": torch.from_numpy(np.ascontiguousarray(estimator._y)),
        "mask": torch.from_numpy(np.ascontiguousarray(estimator._mask)),
        "design": design_record(design),
        "state_dict": state,
        "history": estimator.history.to_dict(),
    }


def build_estimator(cls: type, payload: dict, supplied: dict, path: Path) -> Any:
    """Rebuild an estimator through ``cls``'s constructor and load its saved state into it."""
    c = dict(payload["constructor"])
    legacy = payload.get("legacy_modules", {})
    networks = {}
    for name in ("encoder", "decoder"):
        networks[name] = supplied.get(name) if supplied.get(name) is not None else legacy.get(name)
        if c.get(name) is not None and networks[name] is None:
            raise ModelFileError(
                f"{path} was saved with a custom {name} ({c[name]['custom']}); pass an "
                f"identically built one: LMMVAE.load(path, {name}=...) (its weights come from "
                "the file)"
            )
    obs_dim = int(payload["y"].shape[1])
    kwargs = {
        "latent_dim": c["latent_dim"],
        "variant": c["variant"],
        "objective": c["objective"],
        "instance": c["instance"],
        "network": c["network"],
        "likelihood": decode_likelihood(c["likelihood"], supplied.get("likelihood"), obs_dim, path),
        "latent_scale": c["latent_scale"],
        "learn_latent_scale": c["learn_latent_scale"],
        "fixed_prior": decode_prior(
            c["fixed_prior"], supplied.get("fixed_prior"), "fixed_prior", path
        ),
        "random_prior": decode_prior(
            c["random_prior"], supplied.get("random_prior"), "random_prior", path
        ),
        "bayesian_effects": c["bayesian_effects"],
        "pooling": c["pooling"],
        "include_prior_precision": c["include_prior_precision"],
        "local_reparam": c["local_reparam"],
        "effects_guide": c.get("effects_guide", "mean_field"),
        "instance_intercept": c["instance_intercept"],
        "standardize": c["standardize"],
        "mask_channel": c["mask_channel"],
        "seed": c["seed"],
        # files of 0.2 standardised the covariates before the formula (Design's "inputs")
        "_design_scaling": payload["design"].get("scaling", "inputs"),
        **networks,
    }
    data = decode_frame(payload["data"])
    estimator = cls(c["formula"], data, payload["y"].numpy(), payload["mask"].numpy(), **kwargs)
    rebuilt = design_record(estimator.design)
    differ = [key for key, value in payload["design"].items() if rebuilt.get(key) != value]
    if differ:
        raise ModelFileError(
            f"{path}: the design rebuilt from the saved rows differs from the saved one in "
            f"{differ} (written by pyro_lmmvae {payload.get('library_version')}); load it with "
            "that version"
        )
    try:
        estimator.pair.load_state_dict(payload["state_dict"])
    except RuntimeError as err:
        first = str(err).strip().splitlines()
        detail = " ".join(line.strip() for line in first[:3])
        raise ModelFileError(
            f"{path}: the saved weights do not fit the model rebuilt from it ({detail})"
        ) from err
    return estimator


class PersistenceMixin:
    """``save`` and ``load`` of :class:`~pyro_lmmvae.LMMVAE`."""

    def save(self, path: str | Path) -> Path:
        """Write the fitted estimator to ``path`` atomically.

        The file holds plain values, tensors and state dicts (no pickled objects; see
        :mod:`pyro_lmmvae.persistence`): the constructor arguments, the training rows, the
        design's encodings, the weights and the history. A custom encoder, decoder, likelihood
        or prior is recorded by class name and must be passed again to :meth:`load`.
        """
        return write_model_file(path, estimator_payload(self))

    @classmethod
    def load(
        cls: type[Estimator],
        path: str | Path,
        device: str | torch.device = "cpu",
        *,
        encoder: nn.Module | None = None,
        decoder: nn.Module | None = None,
        likelihood: Likelihood | None = None,
        fixed_prior: PriorSpec = None,
        random_prior: PriorSpec = None,
        trust_pickle: bool = False,
    ) -> Estimator:
        """Load an estimator written by :meth:`save` (or a checkpoint written by :meth:`fit`).

        The file is read with ``torch.load(weights_only=True)``: it runs no code from the file.
        The estimator is rebuilt through the constructor and its weights loaded; a checkpoint
        loads with the weights of its last completed epoch.

        Parameters
        ----------
        path : str or Path
        device : str or torch.device, default "cpu"
        encoder, decoder, likelihood, fixed_prior, random_prior : optional
            The custom objects the model was built with, when it was (the error says which);
            built like the saved ones: their learned values come from the file.
        trust_pickle : bool, default False
            Read a file written by pyro_lmmvae 0.1 (a pickle: it can run code, so only for
            files you trust); ``save`` it again to convert it.

        Raises
        ------
        FileNotFoundError
            If there is no file at ``path``.
        pyro_lmmvae.persistence.ModelFileError
            (a ValueError) For an empty, damaged or foreign file, a newer format version, a
            0.1 file without ``trust_pickle``, a missing custom object, or a CUDA device on a
            machine without one; the one-line message names the file and the cause.
        """
        target = check_device(device, path)
        try:
            payload = read_model_file(path)
        except LegacyFormatError:
            if not trust_pickle:
                raise
            payload = read_legacy(path)
        supplied = {
            "encoder": encoder,
            "decoder": decoder,
            "likelihood": likelihood,
            "fixed_prior": fixed_prior,
            "random_prior": random_prior,
        }
        self = build_estimator(cls, payload, supplied, Path(path))
        self.history = TrainingHistory.from_dict(payload["history"])
        return self.to(target)
