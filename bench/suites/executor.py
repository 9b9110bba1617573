"""The local executor (:class:`LocalExecutor`, ``--executor local``): cells in parallel worker processes,
each cell on its own thread count. It implements :class:`crlbench.suites.executor_contract.Executor`, as the
Slurm and Ray executors do.

**Threads belong to the cell.** A cell computes with exactly ``cell.threads`` threads (the suite's
``threads`` key, 1 by default, part of the cell's hash):
:func:`crlbench.suites.cell_resources.cell_threads` sets torch's intra-op
threads, caps the OpenMP and BLAS pools (threadpoolctl) and runs joblib on threads, wherever the cell
runs (this process, a worker, a tuning trial). Its scores therefore do not depend on ``--workers`` or
on the machine's cores.

**Scheduling.** ``workers`` processes never oversubscribe the cores: at most ``cores // threads`` run
at once (at least one), and a warning says so when ``--workers`` asked for more. With one worker the
cells run in this process and the trainer's own progress bar shows. Workers are started with
``spawn`` (no forked torch state) and report to this process through a pipe each: which cell they
started (and their pid), finished epochs (shown beside the bar of cells) and the record.

**Parent death.** A worker exits when this process dies, however it dies: on Linux the kernel kills it
(``prctl(PR_SET_PDEATHSIG, SIGKILL)``), elsewhere a watchdog thread sees the pipe from its parent close.
Cells start no joblib or loky processes of their own (joblib runs on threads), so nothing is left.

**Devices.** ``--workers`` counts workers per machine, and they share its GPUs: worker i (its *slot*,
0 to ``workers - 1``, which a replacement for a dead worker takes over) runs its cells on
``cuda:(i mod GPUs)`` when they ask for ``cuda`` or ``auto`` on a GPU machine
(:func:`crlbench.suites.runner.resolve_device`; a suite that names ``cuda:1`` gets that GPU). The slot
reaches the worker as ``$CRLBENCH_WORKER_SLOT``. Cells that run in the launcher's own process (one
worker) use torch's current GPU. Several launchers on one machine each spread their own workers from
GPU 0: give each its own GPUs with ``CUDA_VISIBLE_DEVICES``.

**A dead worker** (killed, out of memory) fails exactly the cell it held (``WorkerDied``, naming the
pid and the signal); the other workers go on with their cells, and a new worker takes the queue's next.
A :class:`crlbench.core.errors.CrlbenchError` raised in a worker (a full disk) stops the suite, as in this process.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from multiprocessing.connection import wait
from pathlib import Path
from typing import Any

from crlbench.core.errors import ConfigError, CrlbenchError, FencedOut
from crlbench.core.fencing import Fence, fenced
from crlbench.suites.cell import Cell
from crlbench.suites.cell_resources import (  # noqa: F401 - cell_threads, device_index, worker_slot: re-exported
    WORKER_SLOT, cell_threads, device_index, worker_slot)
from crlbench.suites.executor_contract import (  # noqa: F401 - written_since: re-exported
    ResultHook, failed_record, written_since)
from crlbench.suites.progress import CellProgress
from crlbench.suites.provenance import placement

log = logging.getLogger(__name__)

THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS")
POLL_SECONDS = 0.5
WATCHDOG_SECONDS = 1.0  # how often a worker also checks its parent's pid (the pipe normally tells at once)
STOP_SECONDS = 10.0  # how long an idle worker gets to exit before it is killed
PR_SET_PDEATHSIG = 1  # linux/prctl.h
EXIT_PARENT_DIED = 70


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def threads_per_worker(workers: int) -> int:
    return max(1, available_cores() // workers)


def scheduled_workers(workers: int, threads: int, cores: int | None = None) -> int:
    """How many of ``workers`` processes of ``threads`` threads each fit the cores (at least one)."""
    cores = available_cores() if cores is None else cores
    return max(1, min(workers, cores // threads))


class LocalExecutor:
    """Cells in ``workers`` processes on this machine (:func:`run_cells`): the ``local`` executor
    (:class:`crlbench.suites.executor_contract.Executor`). The launcher holds each cell's lease while it runs."""

    name = "local"
    leases_in_tasks = False
    detach = False

    def __init__(self, workers: int = 1) -> None:
        if workers < 1:
            raise ConfigError(f"--workers must be a positive integer; got {workers}")
        self.workers = workers

    @property
    def one_at_a_time(self) -> bool:
        return self.workers <= 1

    def parallel(self, cells: Sequence[Cell]) -> int:
        """How many of ``cells`` run at once: the workers that fit the cores (at least one)."""
        return scheduled_workers(min(self.workers, len(cells)), max(cell.threads for cell in cells)) if cells else 1

    def run(self, cells: Sequence[Cell], workdir: Path, *, on_result: ResultHook, progress: Any = True,
            fences: Mapping[str, Fence] | None = None) -> None:
        """``progress``: a bool, or the suite's :class:`crlbench.suites.progress.CellProgress`, whose bar shows
        the running cells."""
        run_cells(cells, workdir, workers=self.workers, on_result=on_result, progress=progress, fences=fences)


def run_cells(cells: Sequence[Cell], workdir: str | Path, *, workers: int = 1, on_result: ResultHook | None = None,
              progress: bool | CellProgress = True, fences: Mapping[str, Fence] | None = None) -> list[dict[str, Any]]:
    """Run ``cells`` and return their records in completion order; ``on_result`` sees each as it lands.

    ``progress``: draw a bar of these cells (on a terminal), or show the running cells on a suite's bar
    (:class:`crlbench.suites.progress.CellProgress`, which counts the cells from their records).

    ``fences`` holds each cell's fencing token (by hash; crlbench.core.fencing): a cell whose lease was taken
    over meanwhile stops at its next write or epoch and gives no record (the new holder finishes it)."""
    from crlbench.suites.runner import run_cell

    on_result = on_result or (lambda record: None)
    fences = fences or {}
    records: list[dict[str, Any]] = []
    if not cells:
        return records
    threads = max(cell.threads for cell in cells)
    fitting = scheduled_workers(min(workers, len(cells)), threads)
    if fitting < min(workers, len(cells)):
        log.warning("running %d worker(s), not %d: each cell computes with %d thread(s) and %d core(s) are "
                    "available (workers x threads <= cores)", fitting, workers, threads, available_cores())
    if threads > available_cores():
        log.warning("cells compute with %d threads on %d core(s): slower, but with the numbers of %d threads",
                    threads, available_cores(), threads)
    if isinstance(progress, CellProgress):  # the suite's bar, which counts and estimates across batches
        bar, progress = progress.executor_bar(), progress.drawn
    else:
        bar = _bar(len(cells), progress)
    try:
        if fitting <= 1:
            for cell in cells:
                bar.set_postfix_str(cell.title, refresh=True)
                try:
                    record = run_cell(cell, workdir, progress=progress, fence=fences.get(cell.hash))
                except FencedOut as error:
                    _superseded(cell, error)
                    bar.update(1)
                    continue
                records.append(record)
                on_result(record)
                bar.update(1)
        else:
            _Pool(fitting, threads, Path(workdir), bar, records, on_result, fences).run(cells)
    finally:
        bar.close()
    return records


@dataclass(eq=False)
class _Worker:
    process: Any  # multiprocessing.Process
    connection: Any  # this process's end of the worker's pipe
    slot: int = 0  # its index among the pool's workers (which GPU it uses)
    cell: Cell | None = None
    sent_at: float = 0.0  # time.time() when the cell was handed over


class _Pool:
    """``size`` spawned workers taking cells from one queue; a dead worker fails its own cell only."""

    def __init__(self, size: int, threads: int, workdir: Path, bar, records: list, on_result: ResultHook,
                 fences: Mapping[str, Fence] | None = None):
        self.size, self.threads, self.workdir, self.bar = size, threads, workdir, bar
        self.records, self.on_result, self.fences = records, on_result, fences or {}
        self.context = multiprocessing.get_context("spawn")
        self.workers: list[_Worker] = []
        self.running: dict[str, str] = {}  # cell hash -> what the bar shows

    def run(self, cells: Sequence[Cell]) -> None:
        queue = deque(cells)
        try:
            for _ in range(min(self.size, len(queue))):
                worker = self._start()
                self._hand(worker, queue.popleft())
            while any(worker.cell is not None for worker in self.workers):
                waiting = [w.connection for w in self.workers] + [w.process.sentinel for w in self.workers]
                ready = set(wait(waiting, timeout=POLL_SECONDS))
                for worker in list(self.workers):
                    if worker.connection not in ready and worker.process.sentinel not in ready:
                        continue
                    alive = self._receive(worker)
                    if alive and worker.process.sentinel in ready:
                        alive = self._receive(worker, exited=True)
                    if not alive:
                        self._bury(worker)
                        if queue:
                            worker = self._start()
                    if worker.cell is None and queue and worker in self.workers:
                        self._hand(worker, queue.popleft())
        finally:
            self._stop()

    def _start(self) -> _Worker:
        slot = free_slot(worker.slot for worker in self.workers)  # a dead worker's replacement takes its slot
        ours, theirs = self.context.Pipe()
        process = self.context.Process(target=_worker_main, name="crlbench-worker",
                                       args=(theirs, str(self.workdir), self.threads, os.getpid(), slot))
        process.start()
        theirs.close()
        worker = _Worker(process, ours, slot)
        self.workers.append(worker)
        return worker

    def _hand(self, worker: _Worker, cell: Cell) -> None:
        worker.cell, worker.sent_at = cell, time.time()
        self.running[cell.hash] = cell.title
        self.bar.set_postfix_str("; ".join(self.running.values()), refresh=True)
        try:
            worker.connection.send((cell, self.fences.get(cell.hash)))
        except OSError:  # died before it could take the cell: the next wait sees its sentinel
            pass

    def _receive(self, worker: _Worker, exited: bool = False) -> bool:
        """Handle what ``worker`` sent; False when it is gone (its pipe closed, or ``exited`` and drained)."""
        try:
            while worker.connection.poll():
                self._message(worker, worker.connection.recv())
        except CrlbenchError:
            raise
        except (EOFError, OSError, ValueError) as error:  # closed, or a message cut short by its death
            log.debug("worker %s: pipe closed (%s)", worker.process.pid, type(error).__name__)
            return False
        except Exception as error:  # noqa: BLE001 - an unreadable message from a dying worker
            log.debug("worker %s: unreadable message (%s: %s)", worker.process.pid, type(error).__name__, error)
            return False
        return not exited

    def _message(self, worker: _Worker, message: tuple) -> None:
        kind, cell_hash = message[0], message[1]
        if worker.cell is None or cell_hash != worker.cell.hash:
            return
        cell = worker.cell
        if kind == "started":
            log.debug("cell %s (%s) runs in worker pid %d", cell.title, cell.hash, message[2],
                      extra={"worker_pid": message[2], "cell_hash": cell.hash})
            return
        if kind == "epoch":
            epoch, total = message[2], message[3]
            self.running[cell.hash] = f"{cell.title} epoch {epoch}/{total}"
            self.bar.set_postfix_str("; ".join(self.running.values()), refresh=True)
            return
        if kind == "fenced":  # its lease was taken over: no record, the new holder finishes the cell
            self._drop(worker, message[2])
            return
        if kind == "raise":  # the suite stops (the other workers are stopped on the way out)
            worker.cell = None
            raise message[2]
        if kind == "done":
            self._finish(worker, message[2])
        else:  # "error": raised outside the runner's own guard
            self._fail(worker, message[2], message[3])

    def _finish(self, worker: _Worker, record: dict[str, Any]) -> None:
        assert worker.cell is not None
        self.running.pop(worker.cell.hash, None)
        worker.cell = None
        self.records.append(record)
        self.on_result(record)
        self.bar.update(1)

    def _bury(self, worker: _Worker) -> None:
        """``worker`` is gone: fail the cell it held (unless it wrote its record before it died)."""
        worker.process.join(timeout=STOP_SECONDS)
        if worker.process.exitcode is None:  # its pipe closed but it still runs: it is of no use
            worker.process.kill()
            worker.process.join()
        worker.connection.close()
        self.workers.remove(worker)
        cell = worker.cell
        if cell is None:
            return
        record = written_since(cell, self.workdir, worker.sent_at)
        if record is None:
            how = _exit_description(worker.process.exitcode)
            log.warning("cell %s failed: its worker process (pid %d) %s", cell.title, worker.process.pid, how)
            self._fail(worker, "WorkerDied", f"the worker process running this cell (pid {worker.process.pid}) "
                       f"{how}; the other cells went on. Rerun with --retry-failed to run it again",
                       placement("local", str(worker.process.pid)))
            return
        self._finish(worker, record)

    def _fail(self, worker: _Worker, error_type: str, message: str, ran_on: dict[str, Any] | None = None) -> None:
        """Record the worker's cell as failed, under this launcher's lease token: none when the lease was taken
        over meanwhile (the new holder finishes the cell)."""
        assert worker.cell is not None
        try:
            with fenced(self.fences.get(worker.cell.hash)):
                record = failed_record(worker.cell, self.workdir, error_type, message, ran_on)
        except FencedOut as error:
            self._drop(worker, error)
            return
        self._finish(worker, record)

    def _drop(self, worker: _Worker, error: object) -> None:
        """The worker's cell gave no record: its lease was taken over while it ran (crlbench.core.fencing)."""
        assert worker.cell is not None
        self.running.pop(worker.cell.hash, None)
        _superseded(worker.cell, error)
        worker.cell = None
        self.bar.update(1)

    def _stop(self) -> None:
        """Idle workers are told to exit; any still running a cell (an interrupted suite) are killed."""
        for worker in self.workers:
            if worker.cell is not None:
                worker.process.kill()
            else:
                with contextlib.suppress(OSError, ValueError):
                    worker.connection.send(None)
        deadline = time.monotonic() + STOP_SECONDS
        for worker in self.workers:
            worker.process.join(timeout=max(0.0, deadline - time.monotonic()))
            if worker.process.exitcode is None:
                worker.process.kill()
                worker.process.join()
            worker.connection.close()
        self.workers.clear()


def _superseded(cell: Cell, error: object) -> None:
    log.warning("cell %s: another launcher took its lease over while it ran (this launcher missed its "
                "heartbeats); it finishes the cell, and nothing this run wrote after that landed: %s", cell.title, error)


def free_slot(taken) -> int:
    """The lowest worker slot not in ``taken``."""
    taken = set(taken)
    return next(slot for slot in range(len(taken) + 1) if slot not in taken)


def _worker_main(connection, workdir: str, threads: int, parent_pid: int, slot: int = 0) -> None:
    """A spawned worker: cells from ``connection`` until it is told to stop (None) or its parent dies."""
    os.environ[WORKER_SLOT] = str(slot)  # its GPU (crlbench.suites.runner.resolve_device)
    die_with_parent(parent_pid)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C stops the suite's process, which stops the workers
    limit_threads(threads)
    from tqdm import tqdm

    tqdm.set_lock(threading.RLock())  # workers draw no bars: no semaphore for the resource tracker to find leaked
    from crlbench.suites.runner import run_cell

    while True:
        try:
            task = connection.recv()
        except (EOFError, OSError):
            task = None
        if task is None:  # done: skip the interpreter's teardown (seconds of torch's), nothing is left to write
            for stream in (sys.stdout, sys.stderr):
                with contextlib.suppress(Exception):
                    stream.flush()
            os._exit(0)
        cell, fence = task
        send = functools.partial(_send, connection)
        send(("started", cell.hash, os.getpid()))
        try:
            record = run_cell(cell, workdir, on_epoch=lambda key, epoch, total: send(("epoch", key, epoch, total)),
                              fence=fence)
        except FencedOut as error:  # the suite goes on: another launcher holds the cell now
            send(("fenced", cell.hash, str(error)))
        except CrlbenchError as error:  # a full disk: the suite stops, as it does when the cell runs in its process
            try:
                connection.send(("raise", cell.hash, error))
            except Exception:  # noqa: BLE001 - an error that does not pickle
                send(("error", cell.hash, type(error).__name__, str(error)))
        except Exception as error:  # noqa: BLE001 - raised outside the runner's own guard
            send(("error", cell.hash, type(error).__name__, str(error)))
        else:
            send(("done", cell.hash, record))


def _send(connection, message: tuple) -> None:
    """Send to the suite's process; if it is gone, exit at once (never record its absence as the cell's failure)."""
    try:
        connection.send(message)
    except (OSError, EOFError):
        os._exit(EXIT_PARENT_DIED)


def die_with_parent(parent_pid: int) -> None:
    """Exit when ``parent_pid`` (the suite's process) dies: the kernel's parent-death signal on Linux, and
    a watchdog thread everywhere (the pipe multiprocessing keeps to the parent closes, or the pid changes)."""
    # Linux sends the signal when the *thread* that started the worker ends: run_cells's, which outlives its workers.
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            if libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) != 0:
                log.debug("prctl(PR_SET_PDEATHSIG) failed: errno %d", ctypes.get_errno())
        except (OSError, AttributeError) as error:
            log.debug("prctl(PR_SET_PDEATHSIG) unavailable: %s", error)
    if os.getppid() != parent_pid:  # died before the signal was armed
        os._exit(EXIT_PARENT_DIED)
    threading.Thread(target=_watch_parent, args=(parent_pid,), name="crlbench-parent-watchdog", daemon=True).start()


def _watch_parent(parent_pid: int) -> None:
    parent = multiprocessing.parent_process()
    sentinel = getattr(parent, "sentinel", None)
    while os.getppid() == parent_pid:
        if sentinel is None:
            time.sleep(WATCHDOG_SECONDS)
        elif wait([sentinel], timeout=WATCHDOG_SECONDS):  # readable: the parent's end of the pipe closed
            break
    os._exit(EXIT_PARENT_DIED)


def limit_threads(threads: int) -> None:
    """A worker's thread pools, sized before they start (``cell_threads`` sets each cell's exactly)."""
    for variable in THREAD_VARIABLES:
        os.environ[variable] = str(threads)
    import torch

    torch.set_num_threads(threads)


def _exit_description(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        return f"was killed by {name} (killed by a user or by the kernel's out-of-memory killer)"
    return f"ended abruptly with exit status {exitcode}"


def _bar(total: int, enabled: bool) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="cells", unit="cell", disable=None if enabled else True)
