"""Plain-value records of what a saved model holds besides tensors: rows, priors, likelihoods.

Each ``encode_*`` gives what ``torch.load(weights_only=True)`` reads back (tensors, lists, dicts
of plain values) and each ``decode_*`` rebuilds the object to pass to the constructor; learned
values come from the state dict. Objects a record cannot describe (custom priors and
likelihoods) are recorded by class name and must be passed to ``LMMVAE.load`` again.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyro.distributions as dist
import torch

from pyro_lmmvae.persistence.files import ModelFileError

__all__ = [
    "decode_frame",
    "design_record",
    "decode_likelihood",
    "decode_prior",
    "encode_frame",
    "encode_likelihood",
    "encode_prior",
]


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
    from pyro_lmmvae.gp.prior import SpectralPrior
    from pyro_lmmvae.priors import DistributionPrior, LearnedScaleNormal, RandomEffectCovariance

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


# ---------------------------------------------------------------------------- designs
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
