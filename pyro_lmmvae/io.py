"""Atomic file writing: a file a user saved is either the old one or the complete new one."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; move it over ``path`` only if the body succeeds.

    The temporary file is flushed to disk before the rename, and removed on failure, so an
    interrupted write never leaves a half-written file under the final name.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as handle:
            os.fsync(handle.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp_path, 0o666 & ~umask)  # mkstemp creates 0600; give the usual mode
        os.replace(tmp_path, target)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_atomic(path: str | os.PathLike, writer: Callable[[Path], None]) -> Path:
    """Call ``writer(tmp_path)`` and atomically move the result to ``path``.

    A failure (no space, no permission, a writer error) raises :class:`OSError` naming
    ``path``, the file asked for, not the hidden temporary file; ``path`` is left as it was.
    """
    try:
        with atomic_path(path) as tmp:
            writer(tmp)
    except (OSError, RuntimeError) as err:
        detail = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        if isinstance(err, OSError) and err.strerror:
            detail = err.strerror
        raise OSError(
            f"cannot write {path}: {detail} (the previous file, if any, is kept)"
        ) from err
    return Path(path)


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write text atomically."""
    return write_atomic(path, lambda tmp: tmp.write_text(text))
