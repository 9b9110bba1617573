"""Atomic file writes: a temporary file in the target's folder, flushed to disk, then renamed.

A reader sees the old file or the new one, never half of one; a process killed mid-write leaves
only a hidden ``.<name>.<random>.tmp`` behind (the suite runner sweeps those in a cell's folder).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any


def atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], Any],
                 inspect: Callable[[Path], Any] | None = None) -> Any:
    """Write ``path`` through ``write(handle)``; ``inspect(temporary path)`` runs before the rename
    (a checksum taken there cannot be disturbed by a reader) and its result is returned."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp", delete=False)
    try:
        with handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        result = inspect(Path(handle.name)) if inspect is not None else None
        os.chmod(handle.name, 0o666 & ~_umask())  # NamedTemporaryFile makes files private
        os.replace(handle.name, path)
        return result
    except BaseException:
        Path(handle.name).unlink(missing_ok=True)
        raise


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current
