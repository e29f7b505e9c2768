"""Saved models and checkpoints: a versioned file of plain values, tensors and state dicts.

A file written by :meth:`~pyro_lmmvae.LMMVAE.save` (or a checkpoint of
:meth:`~pyro_lmmvae.LMMVAE.fit`) holds no pickled Python objects, only what
``torch.load(weights_only=True)`` reads: the constructor arguments, the training rows (covariate
columns as tensors or lists, ``y`` and ``mask``), the design's encodings, the ``state_dict`` of the
model and guide, and the history. Loading rebuilds the estimator through its constructor and
loads the state dict into it, so renaming or moving a class never breaks a saved file (the
approach of scvi-tools). The design rebuilt from the saved rows is checked against the saved
encodings (term names, factor levels, groups, standardisation).

Objects that the file cannot describe by value, a custom encoder or decoder network, a custom
likelihood or a custom :class:`~pyro_lmmvae.priors.EffectPrior`, are recorded by class name and
passed again to :meth:`~pyro_lmmvae.LMMVAE.load`; their weights come from the file.

Layout (format version 3; versions 1–2 were the pickled object graphs of pyro_lmmvae 0.1)::

    format, format_version, library_version
    constructor   {formula, latent_dim, options..., network, priors, likelihood, ...}
    data          {"columns": [...], "values": {column: encoded column}}
    y, mask       tensors (N, D)
    design        {fixed_terms, random_terms, groups, standardization, categories}
    state_dict    model and guide parameters and buffers
    history       TrainingHistory.to_dict()
    [fit_settings, training_state]   checkpoints only
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyro.distributions as dist
import torch

from pyro_lmmvae.io import write_atomic

FORMAT = "pyro_lmmvae.LMMVAE"
FORMAT_VERSION = 3
LEGACY_FORMATS = ("pyro_lmmvae.LMMVAE/1", "pyro_lmmvae.LMMVAE/2")

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "LegacyFormatError",
    "ModelFileError",
    "decode_frame",
    "decode_prior",
    "encode_frame",
    "encode_prior",
    "read_model_file",
    "write_model_file",
]


class ModelFileError(ValueError):
    """A model or checkpoint file that cannot be read; the message names the file and why."""


class LegacyFormatError(ModelFileError):
    """A file of pyro_lmmvae 0.1 (a pickled object graph); see :mod:`pyro_lmmvae.legacy`."""


# ---------------------------------------------------------------------------- data frames
def encode_frame(frame: pd.DataFrame, needed: set[str]) -> dict:
    """Encode a DataFrame as tensors and lists of plain values (no pickle).

    Numeric and boolean columns become tensors, categorical ones codes plus categories, text
    columns lists of strings. A column of another kind (dates, objects) is encoded only if
    ``needed`` names it, as an error; otherwise it is left out (the model never reads it).
    """
    columns, values = [], {}
    for name in frame.columns:
        series = frame[name]
        encoded = _encode_column(series)
        if encoded is None:
            if name in needed:
                raise ValueError(
                    f"column {name!r} of dtype {series.dtype} cannot be saved; convert it to "
                    "numbers, strings or a pandas Categorical"
                )
            continue
        columns.append(name)
        values[name] = encoded
    return {"columns": columns, "values": values, "n_rows": len(frame)}


def _encode_column(series: pd.Series) -> dict | None:
    dtype = series.dtype
    if isinstance(dtype, pd.CategoricalDtype):
        categories = series.cat.categories
        if not _plain(categories.tolist()):
            return None
        return {
            "kind": "categorical",
            "codes": torch.from_numpy(series.cat.codes.to_numpy(dtype=np.int64)),
            "categories": categories.tolist(),
            "categories_dtype": str(categories.dtype),
            "ordered": bool(dtype.ordered),
        }
    if isinstance(dtype, np.dtype) and dtype.kind in "biuf":  # numpy-backed numbers, bools
        array = np.ascontiguousarray(series.to_numpy().astype(_torch_able(dtype)))
        return {"kind": "numeric", "tensor": torch.from_numpy(array), "dtype": str(dtype)}
    codes, uniques = pd.factorize(series, use_na_sentinel=True)  # text: codes + distinct values
    values = uniques.tolist()
    if _plain(values):
        return {
            "kind": "factorized",
            "codes": torch.from_numpy(codes.astype(np.int64)),
            "values": values,
            "dtype": str(dtype),
        }
    return None


def _torch_able(dtype: np.dtype) -> np.dtype:
    """A dtype torch holds losslessly (its unsigned types beyond uint8 are partial)."""
    if dtype.kind == "u" and dtype.itemsize > 1:
        return np.dtype(np.int64)
    return dtype


def _plain(values: list) -> bool:
    return all(v is None or isinstance(v, str | int | float | bool) for v in values)


def decode_frame(encoded: dict) -> pd.DataFrame:
    """Inverse of :func:`encode_frame`: the same columns, values and dtypes."""
    data = {}
    for name in encoded["columns"]:
        col = encoded["values"][name]
        if col["kind"] == "categorical":
            categories = pd.Index(col["categories"])
            if col["categories_dtype"] != str(categories.dtype):
                categories = categories.astype(col["categories_dtype"])
            data[name] = pd.Categorical.from_codes(
                col["codes"].numpy(), categories=categories, ordered=col["ordered"]
            )
        elif col["kind"] == "numeric":
            data[name] = pd.Series(col["tensor"].numpy()).astype(col["dtype"])
        else:
            values = np.asarray([*col["values"], None], dtype=object)
            data[name] = pd.Series(values[col["codes"].numpy()], dtype=_list_dtype(col["dtype"]))
    frame = pd.DataFrame(data, index=pd.RangeIndex(encoded["n_rows"]))
    return frame[list(encoded["columns"])]


def _list_dtype(name: str) -> Any:
    try:
        return pd.api.types.pandas_dtype(name)
    except TypeError:
        return object


# ---------------------------------------------------------------------------- priors
def encode_prior(prior: Any) -> Any:
    """A prior (None, a name, a distribution or an EffectPrior) as plain values.

    Library priors give their :meth:`~pyro_lmmvae.priors.EffectPrior.config`; any other prior is
    recorded as ``{"custom": class name}`` and must be passed to ``LMMVAE.load`` again.
    """
    from pyro_lmmvae.priors import DistributionPrior, EffectPrior

    if prior is None or isinstance(prior, str):
        return prior
    if isinstance(prior, torch.distributions.Distribution):
        prior = DistributionPrior(prior)
    if isinstance(prior, EffectPrior):
        config = prior.config()
        return config if config is not None else {"custom": type(prior).__name__}
    return {"custom": type(prior).__name__}


def decode_prior(encoded: Any, supplied: Any, what: str, path: Path) -> Any:
    """The prior to pass to the constructor for an :func:`encode_prior` record."""
    if supplied is not None:
        return supplied
    if encoded is None or isinstance(encoded, str):
        return encoded
    if "custom" in encoded:
        raise ModelFileError(
            f"{path} was saved with a custom {what} ({encoded['custom']}); pass it again: "
            f"LMMVAE.load(path, {what}=...) (its learned values come from the file)"
        )
    from pyro_lmmvae.priors import DistributionPrior, LearnedScaleNormal, RandomEffectCovariance
    from pyro_lmmvae.spectral_priors import SpectralPrior

    kind = encoded["type"]
    if kind == "distribution":
        family = getattr(dist, encoded["name"])
        return DistributionPrior(family(**encoded["params"]))
    if kind == "learned_scale_normal":
        return LearnedScaleNormal(encoded["init_scale"])
    if kind == "random_effect_covariance":
        return RandomEffectCovariance(encoded["init_sd"])
    if kind == "spectral":
        return SpectralPrior.from_config(encoded)
    raise ModelFileError(f"{path}: unknown {what} type {kind!r} (a newer pyro_lmmvae wrote it?)")


# ---------------------------------------------------------------------------- files
def write_model_file(path: str | Path, payload: dict) -> Path:
    """Write a payload (plain values and tensors) to ``path`` atomically with ``torch.save``."""
    payload = {"format": FORMAT, "format_version": FORMAT_VERSION, **payload}
    return write_atomic(path, lambda tmp: torch.save(payload, tmp))


def read_model_file(path: str | Path) -> dict:
    """Read a file written by :func:`write_model_file`, on the CPU, without unpickling objects.

    Raises
    ------
    FileNotFoundError
        If there is no file at ``path``.
    ModelFileError
        For an empty, corrupt or foreign file or a newer format version; the one-line message
        names the file and the cause. :class:`LegacyFormatError` for a file of pyro_lmmvae 0.1.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no model file at {path}")
    if path.stat().st_size == 0:
        raise ModelFileError(f"{path} is empty (0 bytes): not a pyro_lmmvae model file")
    if not zipfile.is_zipfile(path):
        raise ModelFileError(
            f"{path} is not a pyro_lmmvae model file (not a torch.save archive; corrupt or "
            "another kind of file)"
        )
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        if not _is_legacy(path):
            raise ModelFileError(
                f"{path} is not a pyro_lmmvae model file (it holds objects other than tensors "
                "and plain values)"
            ) from err
        raise LegacyFormatError(
            f"{path} was written by pyro_lmmvae 0.1 (a pickled object graph, not read by "
            "default); if you trust the file, re-save it: "
            "LMMVAE.load(path, trust_pickle=True).save(path)"
        ) from err
    except Exception as err:  # torch raises RuntimeError, EOFError, ... for damaged archives
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ModelFileError(f"{path} is damaged or truncated ({first})") from err
    return _check_payload(path, payload)


def _is_legacy(path: Path) -> bool:
    """Whether the archive's pickle names a 0.1 format (read as bytes: nothing is unpickled)."""
    with zipfile.ZipFile(path) as archive:
        names = [n for n in archive.namelist() if n.endswith("data.pkl")]
        stream = archive.read(names[0]) if names else b""
    return any(name.encode() in stream for name in LEGACY_FORMATS)


def _check_payload(path: Path, payload: Any) -> dict:
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        found = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        raise ModelFileError(f"{path} is not a pyro_lmmvae model file (found {found!r})")
    version = payload.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        written = payload.get("library_version", "a newer version")
        raise ModelFileError(
            f"{path} has format version {version!r} (written by pyro_lmmvae {written}); this "
            f"pyro_lmmvae reads versions up to {FORMAT_VERSION}: upgrade pyro_lmmvae"
        )
    return payload


def check_device(device: str | torch.device, path: str | Path) -> torch.device:
    """The device to load onto; a one-line error if it does not exist on this machine."""
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ModelFileError(f"cannot load {path}: {err}") from err
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0 or (device.index or 0) >= count:
            raise ModelFileError(
                f"cannot load {path} onto {device}: this machine has {count} CUDA device(s); "
                "load with device='cpu'"
            )
    return device


# ---------------------------------------------------------------------------- likelihoods
def encode_likelihood(likelihood: Any) -> dict:
    """The library's likelihoods by type and settings; any other by class name."""
    from pyro_lmmvae.models import BernoulliLikelihood, GaussianLikelihood

    if type(likelihood) is GaussianLikelihood:
        return {"type": "gaussian", "learned": likelihood.learned, "floor": likelihood.floor}
    if type(likelihood) is BernoulliLikelihood:
        return {"type": "bernoulli"}
    return {"custom": type(likelihood).__name__}


def decode_likelihood(encoded: dict, supplied: Any, obs_dim: int, path: Path) -> Any:
    """The likelihood object to pass to the constructor (its values come from the state dict)."""
    from pyro_lmmvae.models import BernoulliLikelihood, GaussianLikelihood

    if supplied is not None:
        return supplied
    if "custom" in encoded:
        raise ModelFileError(
            f"{path} was saved with a custom likelihood ({encoded['custom']}); pass it again: "
            "LMMVAE.load(path, likelihood=...)"
        )
    if encoded["type"] == "gaussian":
        scale = None if encoded["learned"] else 1.0  # a fixed scale is a saved buffer
        return GaussianLikelihood(obs_dim, scale=scale, floor=encoded["floor"])
    if encoded["type"] == "bernoulli":
        return BernoulliLikelihood(obs_dim)
    raise ModelFileError(f"{path}: unknown likelihood type {encoded['type']!r}")


# ---------------------------------------------------------------------------- estimators
def design_record(design: Any) -> dict:
    """The design's encodings as plain values: what a rebuilt design must reproduce."""
    return {
        "formula": design.formula,
        "fixed_terms": list(design.fixed_terms),
        "random_terms": list(design.random_terms),
        "groups": np.asarray(design.groups).tolist(),
        "standardization": {c: [m, s] for c, (m, s) in design.standardization.items()},
        "categories": {c: list(v.tolist()) for c, v in design.categories.items()},
        "scaling": getattr(design, "scaling", "inputs"),
    }


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
