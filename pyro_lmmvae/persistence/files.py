"""The model file: a versioned ``torch.save`` archive of plain values, read without pickle.

:func:`write_model_file` writes a payload atomically under the format name and version;
:func:`read_model_file` reads it with ``torch.load(weights_only=True)`` and names, in one line,
what is wrong with an empty, damaged, foreign, newer or 0.1 (pickled) file.
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from pyro_lmmvae.io import write_atomic

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "LEGACY_FORMATS",
    "LegacyFormatError",
    "ModelFileError",
    "check_device",
    "read_model_file",
    "write_model_file",
]

FORMAT = "pyro_lmmvae.LMMVAE"
FORMAT_VERSION = 3
LEGACY_FORMATS = ("pyro_lmmvae.LMMVAE/1", "pyro_lmmvae.LMMVAE/2")


class ModelFileError(ValueError):
    """A model or checkpoint file that cannot be read; the message names the file and why."""


class LegacyFormatError(ModelFileError):
    """A file of pyro_lmmvae 0.1 (a pickled object graph); see :mod:`pyro_lmmvae.legacy`."""


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
