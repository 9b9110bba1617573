"""The local executor: cells in parallel worker processes, without oversubscribing the cores.

``workers`` processes each get ``cores // workers`` torch threads (and the same limit for the
OpenMP and BLAS pools they start), so two workers on two cores run one thread each. With one worker
the cells run in this process and the trainer's own progress bar shows. Workers are started with
``spawn`` (no forked torch state) and report finished epochs through a queue, shown beside the
bar of cells. A worker that dies (killed, out of memory) fails only the cell it was running.
"""

from __future__ import annotations

import concurrent.futures as futures
import logging
import multiprocessing
import os
import queue
from collections.abc import Callable, Sequence
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

from bench.cell import Cell
from bench.results import RESULT, SCHEMA, cell_dir, write_json

log = logging.getLogger(__name__)

THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS")
POLL_SECONDS = 0.5
ResultHook = Callable[[dict[str, Any]], None]


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def threads_per_worker(workers: int) -> int:
    return max(1, available_cores() // workers)


def run_cells(cells: Sequence[Cell], workdir: str | Path, *, workers: int = 1, on_result: ResultHook | None = None,
              progress: bool = True) -> list[dict[str, Any]]:
    """Run ``cells`` and return their records in completion order; ``on_result`` sees each as it lands."""
    from bench.runner import run_cell

    on_result = on_result or (lambda record: None)
    records = []
    bar = _bar(len(cells), progress)
    if workers <= 1:
        for cell in cells:
            bar.set_postfix_str(cell.title, refresh=True)
            record = run_cell(cell, workdir, progress=progress)
            records.append(record)
            on_result(record)
            bar.update(1)
        bar.close()
        return records
    remaining = list(cells)
    while remaining:  # a new pool after a worker died
        remaining = _run_pool(remaining, workdir, workers, bar, records, on_result)
    bar.close()
    return records


def _run_pool(cells: list[Cell], workdir, workers: int, bar, records: list, on_result: ResultHook) -> list[Cell]:
    context = multiprocessing.get_context("spawn")
    manager = context.Manager()
    epochs = manager.Queue()
    running: dict[str, str] = {}
    threads = threads_per_worker(workers)
    with futures.ProcessPoolExecutor(workers, mp_context=context, initializer=_limit_threads,
                                     initargs=(threads,)) as pool:
        pending = {pool.submit(_worker, cell, str(workdir), epochs): cell for cell in cells}
        while pending:
            done, _ = futures.wait(pending, timeout=POLL_SECONDS, return_when=futures.FIRST_COMPLETED)
            _drain(epochs, running, pending, bar)
            for future in done:
                cell = pending.pop(future)
                try:
                    record = future.result()
                except BrokenProcessPool:  # a worker died: fail the cells that had started, requeue the rest
                    _drain(epochs, running, pending, bar)
                    unfinished = [cell, *pending.values()]
                    started = [c for c in unfinished if c.hash in running] or unfinished  # none started: all fail
                    for lost in started:
                        record = _failed(lost, workdir, "WorkerDied", "the worker process running this cell ended "
                                         "abruptly (killed, or out of memory)")
                        records.append(record)
                        on_result(record)
                        bar.update(1)
                    manager.shutdown()
                    return [c for c in unfinished if c not in started]
                except Exception as error:  # noqa: BLE001 - raised outside the runner's own guard
                    record = _failed(cell, workdir, type(error).__name__, str(error))
                running.pop(cell.hash, None)
                records.append(record)
                on_result(record)
                bar.update(1)
    manager.shutdown()
    return []


def _worker(cell: Cell, workdir: str, epochs) -> dict[str, Any]:
    from bench.runner import run_cell

    epochs.put((cell.hash, cell.title, 0, None))
    return run_cell(cell, workdir, on_epoch=lambda key, epoch, total: epochs.put((key, cell.title, epoch, total)))


def _limit_threads(threads: int) -> None:
    for variable in THREAD_VARIABLES:
        os.environ[variable] = str(threads)
    import torch

    torch.set_num_threads(threads)


def _drain(epochs, running: dict[str, str], pending, bar) -> None:
    changed = False
    while True:
        try:
            key, title, epoch, total = epochs.get_nowait()
        except (queue.Empty, EOFError, OSError):
            break
        running[key] = f"{title} epoch {epoch}/{total}" if total else title
        changed = True
    if changed:
        bar.set_postfix_str("; ".join(running.values()), refresh=True)


def _failed(cell: Cell, workdir, error_type: str, message: str) -> dict[str, Any]:
    """A failed record for a cell whose worker did not return one (it died, or failed outside the runner)."""
    from bench.runner import provenance

    record = {"schema": SCHEMA, "hash": cell.hash, "status": "failed", "cell": cell.to_dict(),
              "error": {"type": error_type, "message": message, "traceback": ""},
              "timings": {}, "provenance": provenance()}
    write_json(cell_dir(workdir, cell.hash) / RESULT, record)
    return record


def _bar(total: int, enabled: bool) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="cells", unit="cell", disable=None if enabled else True)
