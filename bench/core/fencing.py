"""Fencing tokens: a holder whose lease was taken over writes nothing that lands.

A lease says who works on a cell, but a holder can wake up after it lost the lease (a paused process, a
suspended machine, a stalled file system) and go on writing. So every lease of a cell comes with a
*token*: ``cells/<hash>/fence`` holds the newest token issued for the cell, and each take-over of the
lease (crlbench.suites.lease) issues the next one, under the work directory's ``leases.lock``. The file
is never deleted with the lease, so tokens only grow.

Every write a cell's holder makes under the cell's folder (checkpoints, metric files, the record, the
intervention grid: all go through :func:`crlbench.core.files.atomic_write`) is committed under the same
lock, and only while the fence file holds no larger token than the writer's (:meth:`Fence.commit`);
otherwise it raises :class:`crlbench.core.errors.FencedOut` and the temporary is removed. The check and
the rename happen under the one lock a take-over also takes, so no write of an older token can land
after a newer token was issued: whatever is on disk was committed by the newest holder of its time, and
readers need not check tokens. The MLflow log of a cell runs under the lock too (:meth:`Fence.holding`).
A fenced run also checks its token after every epoch, so it stops within one epoch even when it writes
no checkpoint then.

Reference: Kleppmann, *Designing Data-Intensive Applications* (2017), ch. 8, "Fencing tokens".
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from crlbench.core.errors import FencedOut
from crlbench.core.files import atomic_write, commit_guard, file_lock

FENCE = "fence"


def newest_token(folder: str | os.PathLike) -> int:
    """The newest token issued for the cell in ``folder`` (0 when none was)."""
    try:
        return int((Path(folder) / FENCE).read_text().strip() or 0)
    except (FileNotFoundError, ValueError):
        return 0


def issue_token(folder: str | os.PathLike) -> int:
    """Issue the next token for the cell in ``folder`` and return it. The caller holds the work directory's
    lease lock (crlbench.suites.lease), so two take-overs never get the same token."""
    token = newest_token(folder) + 1
    atomic_write(Path(folder) / FENCE, lambda handle: handle.write(f"{token}\n".encode()))
    return token


@dataclass(frozen=True)
class Fence:
    """The token a holder got for the cell in ``folder``; ``lock`` is the work directory's lease lock."""

    folder: Path
    token: int
    lock: Path

    def covers(self, path: str | os.PathLike) -> bool:
        """Whether ``path`` lies in the cell's folder (writes elsewhere are not the cell's)."""
        try:
            Path(path).resolve().relative_to(self.folder.resolve())
        except ValueError:
            return False
        return True

    def check(self) -> None:
        """Raise :class:`FencedOut` when a newer token was issued for the cell."""
        with file_lock(self.lock):
            self._require(self.folder)

    def commit(self, path: Path, replace: Callable[[], None]) -> None:
        """Run ``replace`` (the rename that commits a write to ``path``) only while the token is the newest."""
        if not self.covers(path):
            replace()
            return
        with file_lock(self.lock):
            self._require(path)
            replace()

    @contextlib.contextmanager
    def holding(self) -> Iterator[None]:
        """Hold the lock with the token checked (a write outside the cell's folder, an MLflow log)."""
        with file_lock(self.lock):
            self._require(self.folder)
            yield

    def _require(self, path: object) -> None:
        newest = newest_token(self.folder)
        if newest > self.token:
            raise FencedOut(path, self.token, newest)


@contextlib.contextmanager
def fenced(fence: Fence | None) -> Iterator[None]:
    """Commit every :func:`~crlbench.core.files.atomic_write` of this thread through ``fence`` (nothing when
    None)."""
    if fence is None:
        yield
        return
    reset = commit_guard.set(fence.commit)
    try:
        yield
    finally:
        commit_guard.reset(reset)
