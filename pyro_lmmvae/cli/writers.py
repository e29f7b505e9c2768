"""Writing the verbs' output arrays: checked paths, atomic ``.npy`` or ``.csv`` files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pyro_lmmvae.cli.readers import extension

#: Extensions of the arrays the verbs write.
OUTPUT_EXTENSIONS = (".npy", ".csv")


def check_output(path: str, flag: str, allowed: tuple[str, ...] | None = None) -> Path:
    """``path`` as a :class:`~pathlib.Path`, checked before any work: not a folder, and with
    one of the ``allowed`` extensions when given."""
    if allowed is not None:
        extension(path, flag, allowed)
    out = Path(path)
    if out.is_dir():
        raise ValueError(f"{flag} {path} is a folder; give a file name")
    return out


def write_array(path: Path, array: Any) -> None:
    """Write ``array`` to ``path`` atomically: CSV (``%.9g``) for ``.csv``, else ``.npy``."""
    import numpy as np

    from pyro_lmmvae.io import write_atomic

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as handle:
            if path.suffix.lower() == ".csv":
                np.savetxt(handle, array, delimiter=",", fmt="%.9g")
            else:
                np.save(handle, array, allow_pickle=False)

    write_atomic(path, write)
