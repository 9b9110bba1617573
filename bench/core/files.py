"""Atomic file writes: a temporary file in the target's folder, flushed to disk, then renamed.

A reader sees the old file or the new one, never half of one. A process killed mid-write leaves only
a hidden ``.<name>.<random>.tmp`` behind; :func:`sweep_temporaries` removes those once no live
process is writing them: the writer holds an exclusive ``flock`` on its temporary until the rename
(the kernel drops it when the writer dies), and a sweep removes only unlocked temporaries older than
a minute (the minute covers the instant between creating a temporary and locking it). Every
:func:`atomic_write` sweeps the abandoned temporaries of its own target first; the suite runner
sweeps a cell's folder when it (re)runs the cell and the data cache sweeps its folder when it loads.

A full disk (``ENOSPC``, or a quota's ``EDQUOT``) anywhere in a write, torch's
``enforce fail at inline_container.cc`` included, becomes :class:`crlbench.core.errors.DiskFullError`
naming the path; the temporary is removed and the previous file is left as it was.
"""

from __future__ import annotations

import contextlib
import contextvars
import errno
import glob
import logging
import os
import stat
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from crlbench.core.errors import DiskFullError

try:
    import fcntl
except ImportError:  # Windows: an open file cannot be removed there, which protects a live writer
    fcntl = None

log = logging.getLogger(__name__)

STALE_AFTER_S = 60.0  # an unlocked temporary this old belongs to no live writer
# What commits a write (the rename) while a cell runs under a lease's token: it renames, or refuses with
# crlbench.core.errors.FencedOut (crlbench.core.fencing sets it; None: rename at once)
commit_guard: contextvars.ContextVar[Callable[[Path, Callable[[], None]], None] | None] = contextvars.ContextVar(
    "crlbench_commit_guard", default=None)
DISK_FULL = frozenset({errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)})


def atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], Any],
                 inspect: Callable[[Path], Any] | None = None) -> Any:
    """Write ``path`` through ``write(handle)``; ``inspect(temporary path)`` runs before the rename
    (a checksum taken there cannot be disturbed by a reader) and its result is returned.

    Raises :class:`DiskFullError` when the disk (or quota) is full; ``path`` is then unchanged.
    """
    path = Path(path)
    ensure_folder(path.parent)
    try:
        sweep_temporaries(path.parent, pattern=f".{glob.escape(path.name)}.*.tmp")
        handle = tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp", delete=False)
    except OSError as error:
        if disk_full(error):
            raise DiskFullError(path) from error
        raise
    temporary = Path(handle.name)
    try:
        with handle:
            if fcntl is not None:
                with contextlib.suppress(OSError):  # a file system without locks: the age rule alone protects it
                    fcntl.flock(handle.fileno(), fcntl.LOCK_EX)  # held until the rename: "a writer is alive"
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
            result = inspect(temporary) if inspect is not None else None
            os.chmod(temporary, 0o666 & ~_umask())  # NamedTemporaryFile makes files private
            if fcntl is None:
                handle.close()  # Windows renames no open file
            guard = commit_guard.get()
            if guard is None:
                os.replace(temporary, path)
            else:
                guard(path, lambda: os.replace(temporary, path))
        return result
    except BaseException as error:
        temporary.unlink(missing_ok=True)
        if disk_full(error):
            raise DiskFullError(path) from error
        raise


def ensure_folder(folder: str | os.PathLike) -> Path:
    """``folder`` and its parents, created when missing; a full disk raises :class:`DiskFullError`."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        if disk_full(error):
            raise DiskFullError(folder) from error
        raise
    return folder


def disk_full(error: BaseException) -> bool:
    """Whether ``error``, or an error it was raised from or while handling, is ENOSPC or EDQUOT
    (torch reports a failed write of ``torch.save`` as a RuntimeError raised while handling it)."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, OSError) and error.errno in DISK_FULL:
            return True
        error = error.__cause__ or error.__context__
    return False


def sweep_temporaries(folder: str | os.PathLike, *, pattern: str = ".*.tmp", recursive: bool = False,
                      min_age_s: float = STALE_AFTER_S) -> list[Path]:
    """Remove the temporaries (``pattern``) in ``folder`` that no live process is writing and that
    were last modified ``min_age_s`` seconds ago or earlier; returns the removed paths."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = []
    before = time.time() - min_age_s
    for candidate in sorted(folder.rglob(pattern) if recursive else folder.glob(pattern)):
        try:
            if _remove_if_abandoned(candidate, before):
                removed.append(candidate)
        except OSError:  # gone meanwhile, or not ours to remove
            continue
    if removed:
        log.info("removed %d temporary file(s) left by interrupted writes in %s", len(removed), folder)
    return removed


def _remove_if_abandoned(path: Path, before: float) -> bool:
    # read-write: NFS emulates flock with POSIX locks, and an exclusive one needs a writable descriptor
    descriptor = os.open(path, os.O_RDWR | getattr(os, "O_NOFOLLOW", 0))
    try:
        info = os.fstat(descriptor)
        if not stat.S_ISREG(info.st_mode) or info.st_mtime > before:
            return False
        if fcntl is not None:
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:  # a live writer holds it
                return False
        current = os.stat(path, follow_symlinks=False)
        if (current.st_dev, current.st_ino) != (info.st_dev, info.st_ino):  # renamed and replaced meanwhile
            return False
        os.unlink(path)
        return True
    finally:
        os.close(descriptor)


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


@contextlib.contextmanager
def file_lock(path: str | os.PathLike, shared: bool = False, create: bool = True) -> Iterator[None]:
    """Hold an ``flock`` on ``path`` (created when missing, unless ``create`` is false) for the block.

    The lock is released when the block ends or the process dies, so a killed holder never leaves
    it taken. Raises OSError when the file cannot be opened (a read-only folder)."""
    path = Path(path)
    flags = os.O_RDWR | (os.O_CREAT if create else 0)
    descriptor = os.open(path, flags, 0o666)
    try:
        if fcntl is not None:
            while True:
                try:
                    fcntl.flock(descriptor, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
                    break
                except InterruptedError:
                    continue
                except OSError as error:
                    if error.errno in (errno.ENOLCK, errno.EOPNOTSUPP):  # a file system without locks
                        log.debug("no file locks on %s: %s", path, error)
                        break
                    raise
        yield
    finally:
        os.close(descriptor)  # releases the lock
