"""A supervisor that runs one command in its own process group and takes that group down with it.

``python -m crlbench.core.supervisor COMMAND...`` makes itself the leader of a new process group, starts
COMMAND in that group (a server and every worker it forks stay in it) and waits for it. It stops the whole
group (SIGTERM, then SIGKILL after :data:`GRACE_S` seconds) when it gets SIGTERM, SIGHUP or SIGINT, and when
its parent dies however it dies, ``kill -9`` included: Linux delivers SIGTERM to it then
(``prctl(PR_SET_PDEATHSIG)``), and a watchdog thread that sees its parent change ends it on any system.
A parent-death signal reaches only a direct child, which is why a server's own children need a process
like this one between them and the launcher (``crlbench ui``). Its exit status is the command's.
Without Linux's signal (macOS, Windows) the watchdog notices within :data:`WATCHDOG_S` seconds; on Windows
process groups do not exist and only the command itself is ended.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time

GRACE_S = 5.0  # seconds between SIGTERM and SIGKILL to the group
WATCHDOG_S = 0.5  # how often the watchdog looks at the parent
PR_SET_PDEATHSIG = 1


def stop_group(grace_s: float = GRACE_S) -> None:
    """End the rest of this process's group (:func:`end_group`), then exit."""
    end_group(grace_s)
    os._exit(128 + signal.SIGTERM)


def end_group(grace_s: float = GRACE_S) -> None:
    """SIGTERM to this process's group (itself excepted), SIGKILL to what is left after ``grace_s``."""
    if threading.current_thread() is threading.main_thread():  # handlers can be set there only
        for signum in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
            signal.signal(signum, signal.SIG_IGN)  # the group's signal reaches this process too
    group = os.getpgrp()
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(group, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline and _others_in_group(group):
        time.sleep(0.1)
    for pid in _others_in_group(group):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


def _others_in_group(group: int) -> list[int]:
    """The live processes of ``group`` other than this one (from /proc; where it is missing, none are known)."""
    found = []
    with contextlib.suppress(OSError):
        for entry in os.listdir("/proc"):
            if not entry.isdigit() or int(entry) == os.getpid():
                continue
            with contextlib.suppress(OSError, IndexError, ValueError):
                with open(f"/proc/{entry}/stat") as handle:
                    fields = handle.read().rsplit(")", 1)[1].split()
                if fields[0] != "Z" and int(fields[2]) == group:  # state, ppid, pgrp
                    found.append(int(entry))
    return found


def _arm_parent_death(parent: int) -> None:
    """SIGTERM when the parent dies (Linux), and a watchdog thread everywhere."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            import ctypes

            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(WATCHDOG_S)
        os.kill(os.getpid(), signal.SIGTERM)  # the main thread's handler stops the group

    threading.Thread(target=watch, name="crlbench-supervisor-watchdog", daemon=True).start()


def main(argv: list[str]) -> int:
    if not argv:
        print("usage: python -m crlbench.core.supervisor COMMAND [ARGS...]", file=sys.stderr)
        return 2
    parent = os.getppid()
    with contextlib.suppress(OSError):  # already a group leader (started as one)
        os.setpgid(0, 0)
    for signum in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(signum, lambda *_: stop_group())
    _arm_parent_death(parent)
    if os.getppid() != parent:  # the parent died before the signal was armed
        stop_group()
    child = subprocess.Popen(argv)
    status = child.wait()
    end_group()  # workers the command left behind
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
