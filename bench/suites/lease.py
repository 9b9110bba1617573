"""Leases: which launcher works on a cell, so that any number of launchers share one work directory.

A lease is a small JSON file (``cells/<hash>/lease.json`` for a cell) naming its holder: host,
process id, invocation id and start time, plus what tells a restarted machine or another container
apart (the boot id and the pid namespace, where the system has them). It is created atomically
(``O_CREAT | O_EXCL``) and its modification time is the holder's heartbeat, refreshed by a
background thread every ``heartbeat_s`` seconds while the lease is held.

A lease is *stale* when its heartbeat is older than ``stale_after_s`` seconds, or when its holder
ran on this machine and its process has ended (a killed launcher's lease is taken over at once,
without waiting for the timeout). A stale lease is taken over, and the takeover is logged as a
warning naming the old holder. Creating, taking over, refreshing and releasing all happen under
one file lock per work directory (``leases.lock``, ``flock``), so two launchers never both take
the same stale lease, and a holder never refreshes or deletes a lease another launcher took over
(it logs that it lost it instead).

Each lease of a cell carries a fencing token (crlbench.core.fencing): creating or taking over a cell's
lease issues the next token (``cells/<hash>/fence``, kept when the lease is deleted), and the holder's
writes to the cell land only while no newer token exists. A holder that wakes up after a take-over is
stopped by its first write or epoch, not by a check it makes before acting.

Heartbeats compare clocks of the machines sharing a work directory (over NFS): keep them within a
fraction of ``stale_after_s`` (NTP does).
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import socket
import threading
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from crlbench.core.errors import DiskFullError
from crlbench.core.fencing import Fence, issue_token
from crlbench.core.files import disk_full, ensure_folder, file_lock

log = logging.getLogger(__name__)

HEARTBEAT_S = 10.0
STALE_AFTER_S = 60.0
LOCK = "leases.lock"
LEASE = "lease.json"
INVOCATIONS = "invocations"


@dataclass(frozen=True)
class Holder:
    """Who holds a lease: one invocation (a ``crlbench suite`` launch) of one process on one machine."""

    invocation: str
    host: str
    pid: int
    started_at: str
    boot_id: str | None = None
    pid_namespace: str | None = None

    @classmethod
    def current(cls, invocation: str | None = None) -> Holder:
        """This process, as a new invocation (or as ``invocation``)."""
        started = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
        return cls(invocation or uuid.uuid4().hex[:12], socket.gethostname(), os.getpid(), started,
                   _boot_id(), _pid_namespace())

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Holder:
        return cls(str(data.get("invocation", "?")), str(data.get("host", "?")), int(data.get("pid", -1)),
                   str(data.get("started_at", "?")), data.get("boot_id"), data.get("pid_namespace"))

    def describe(self) -> str:
        return f"invocation {self.invocation} (host {self.host}, pid {self.pid}, started {self.started_at})"


@dataclass(frozen=True)
class LeaseState:
    """What a lease file says: its holder (None when unreadable), heartbeat age, and why it is stale."""

    holder: Holder | None
    age_s: float
    stale: str | None  # the reason, or None for a live lease

    @property
    def live(self) -> bool:
        return self.stale is None


def cell_lease(workdir: str | os.PathLike, cell_hash: str) -> Path:
    return Path(workdir) / "cells" / cell_hash / LEASE


def invocation_lease(workdir: str | os.PathLike, invocation: str) -> Path:
    return Path(workdir) / INVOCATIONS / f"{invocation}.json"


def lease_state(path: str | os.PathLike, stale_after_s: float = STALE_AFTER_S) -> LeaseState | None:
    """The state of the lease at ``path``, or None when there is none. Reads without the lock when
    the lock file cannot be opened (a ``--dry-run`` on a read-only copy)."""
    path = Path(path)
    if not path.exists():
        return None
    me = Holder.current("-")
    try:
        with file_lock(_lock_path(path), shared=True, create=False):
            return _state(path, stale_after_s, me)
    except OSError:
        return _state(path, stale_after_s, me)


def clear_stale(path: str | os.PathLike, stale_after_s: float = STALE_AFTER_S) -> LeaseState | None:
    """Delete the lease at ``path`` if it is stale; its state (None when there was none)."""
    path = Path(path)
    if not path.exists():
        return None
    with file_lock(_lock_path(path)):
        state = _state(path, stale_after_s, Holder.current("-"))
        if state is not None and not state.live:
            path.unlink(missing_ok=True)
        return state


class Leases:
    """The leases one invocation holds, kept alive by one heartbeat thread; a context manager that
    releases what is still held when it ends.

    ``acquire(path)`` creates the lease or takes over a stale one (True), or finds it held by a live
    holder (False). ``release(path)`` deletes it, unless another launcher took it over meanwhile.
    """

    def __init__(self, holder: Holder | None = None, *, heartbeat_s: float = HEARTBEAT_S,
                 stale_after_s: float = STALE_AFTER_S) -> None:
        self.holder = holder or Holder.current()
        self.heartbeat_s = heartbeat_s
        self.stale_after_s = stale_after_s
        self._held: dict[Path, str] = {}  # path -> what it covers, for messages
        self._tokens: dict[Path, int] = {}  # path of a cell's lease -> the fencing token it was issued
        self.taken_over: list[Holder | None] = []  # the holders of the stale leases this invocation took over
        self._guard = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> Leases:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def held(self) -> list[Path]:
        with self._guard:
            return list(self._held)

    def holds(self, path: str | os.PathLike) -> bool:
        with self._guard:
            return Path(path) in self._held

    def acquire(self, path: str | os.PathLike, what: str | None = None, *, supersedes: str | None = None) -> bool:
        """Take the lease at ``path`` (creating its folder); False when a live holder has it.

        ``supersedes`` names an invocation this one replaces (a requeued Slurm task's earlier attempt, which
        the scheduler has ended): its lease is taken over even while its heartbeat is fresh."""
        path = Path(path)
        what = what or str(path)
        ensure_folder(path.parent)
        with file_lock(_lock_path(path)):
            state = _state(path, self.stale_after_s, self.holder)
            if state is not None and state.holder == self.holder:
                os.utime(path)  # ours already
            else:
                if state is not None and state.live and supersedes is not None and state.holder is not None \
                        and state.holder.invocation == supersedes:
                    state = LeaseState(state.holder, state.age_s, "an earlier attempt of this task, which its "
                                       "scheduler ended")
                if state is not None and state.live:
                    return False
                if state is not None:
                    old = state.holder.describe() if state.holder else "an unreadable lease"
                    log.warning("%s: taking over the lease of %s: %s", what, old, state.stale)
                    path.unlink(missing_ok=True)
                    self.taken_over.append(state.holder)
                token = issue_token(path.parent) if _is_cell_lease(path) else None
                self._create(path, token)
                if token is not None:
                    with self._guard:
                        self._tokens[path] = token
        with self._guard:
            self._held[path] = what
        self._start_heartbeat()
        return True

    def fence(self, path: str | os.PathLike) -> Fence | None:
        """The fencing token this invocation was issued with the cell lease at ``path`` (None: not a cell's
        lease, or not taken by this invocation)."""
        path = Path(path)
        with self._guard:
            token = self._tokens.get(path)
        return Fence(path.parent, token, _lock_path(path)) if token is not None else None

    def release(self, path: str | os.PathLike) -> None:
        """Give the lease up (delete its file) if this invocation still holds it."""
        path = Path(path)
        with self._guard:
            what = self._held.pop(path, None)
            self._tokens.pop(path, None)
        if what is None:
            return
        try:
            with file_lock(_lock_path(path)):
                if self._owns(path):
                    path.unlink(missing_ok=True)
        except OSError as error:
            log.warning("%s: could not release the lease %s: %s", what, path, error)

    def close(self) -> None:
        """Stop the heartbeat and release every lease still held."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()
        for path in self.held:
            self.release(path)

    def beat(self) -> None:
        """Refresh every held lease's heartbeat now (the thread does this every ``heartbeat_s``)."""
        for path in self.held:
            try:
                with file_lock(_lock_path(path)):
                    with self._guard:
                        what = self._held.get(path)  # None: released meanwhile
                    owned = what is not None and self._owns(path)
                    if owned:
                        os.utime(path)
            except OSError as error:
                log.warning("could not refresh the lease %s: %s", path, error)
                continue
            if what is not None and not owned:
                state = _state(path, self.stale_after_s, self.holder)
                other = state.holder.describe() if state and state.holder else "nobody"
                log.warning("%s: lost its lease to %s (this process missed its heartbeats for over %.0f s)",
                            what, other, self.stale_after_s)
                with self._guard:
                    self._held.pop(path, None)

    def _create(self, path: Path, token: int | None = None) -> None:
        """Create the lease file (atomically: it must not exist) with this invocation's holder and, for a cell,
        its fencing token."""
        fields = {"token": token} if token is not None else {}
        data = json.dumps({**asdict(self.holder), "acquired_at": _now_iso(), **fields}, indent=1).encode()
        try:
            descriptor = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
        except OSError as error:
            if disk_full(error):
                raise DiskFullError(path) from error
            raise
        try:
            os.write(descriptor, data)
            os.fsync(descriptor)
        except OSError as error:
            path.unlink(missing_ok=True)  # no empty lease left behind
            if disk_full(error):
                raise DiskFullError(path) from error
            raise
        finally:
            os.close(descriptor)

    def _owns(self, path: Path) -> bool:
        holder = _read_holder(path)
        return holder is not None and holder == self.holder

    def _start_heartbeat(self) -> None:
        if self._thread is None and not self._stop.is_set():
            self._thread = threading.Thread(target=self._run, name="crlbench-lease-heartbeat", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            self.beat()


def stale_reason(holder: Holder, heartbeat_age_s: float = 0.0, stale_after_s: float = STALE_AFTER_S,
                 me: Holder | None = None) -> str | None:
    """Why ``holder`` is no longer alive (None while it is), from its heartbeat's age and, on this
    machine, whether its process still runs."""
    me = me or Holder.current("-")
    if heartbeat_age_s > stale_after_s:
        return f"its heartbeat is {heartbeat_age_s:.0f} s old (stale after {stale_after_s:.0f} s)"
    if holder.host != me.host:
        return None
    if holder.boot_id and me.boot_id and holder.boot_id != me.boot_id:
        return "its machine has restarted since"
    if holder.pid_namespace and me.pid_namespace and holder.pid_namespace != me.pid_namespace:
        return None  # another container on this host: its processes are not ours to see
    if holder.pid != me.pid and not pid_alive(holder.pid):
        return f"its process {holder.pid} has ended"
    return None


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` runs on this machine (a zombie does not)."""
    if pid <= 0:
        return False
    if os.name == "nt":  # os.kill would end it: judge it by its heartbeat alone
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: it exists, another user's
        return True
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


# --- plumbing -----------------------------------------------------------------------------------

def _state(path: Path, stale_after_s: float, me: Holder) -> LeaseState | None:
    try:
        age = time.time() - path.stat().st_mtime
    except FileNotFoundError:
        return None
    holder = _read_holder(path)
    if holder is None:  # created but not yet written (its creator died in between), or damaged
        return LeaseState(None, age, f"it is unreadable and {age:.0f} s old" if age > stale_after_s else None)
    return LeaseState(holder, age, stale_reason(holder, age, stale_after_s, me))


def _read_holder(path: Path) -> Holder | None:
    try:
        return Holder.from_dict(json.loads(path.read_text()))
    except (OSError, ValueError, TypeError, AttributeError):
        return None


def _is_cell_lease(lease: Path) -> bool:
    return lease.name == LEASE and lease.parent.parent.name == "cells"


def _lock_path(lease: Path) -> Path:
    """One lock file per work directory: ``<workdir>/leases.lock`` for ``<workdir>/cells/<hash>/lease.json``
    and ``<workdir>/invocations/<id>.json``."""
    folder = lease.parent
    if folder.parent.name == "cells":
        return folder.parent.parent / LOCK
    if folder.name == INVOCATIONS:
        return folder.parent / LOCK
    return folder / LOCK


def _boot_id() -> str | None:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip() or None
    except OSError:
        return None


def _pid_namespace() -> str | None:
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return None


def _now_iso() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
