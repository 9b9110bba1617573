"""What a cell computes with, wherever it runs (this process, a local worker, a cluster task, a tuning
trial): its own thread count (:func:`cell_threads`) and, in a launcher's worker, the worker's slot, which
picks its GPU (:func:`worker_slot`, :func:`device_index`).

The runner (:mod:`crlbench.suites.runner`) and the local executor (:mod:`crlbench.suites.executor`) both read
these; neither imports the other for them.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

WORKER_SLOT = "CRLBENCH_WORKER_SLOT"  # a worker's index among its launcher's workers: which GPU it uses


def worker_slot() -> int | None:
    """This process's worker slot (``$CRLBENCH_WORKER_SLOT``), or None outside a worker."""
    value = os.environ.get(WORKER_SLOT, "")
    return int(value) if value.isdigit() else None


def device_index(slot: int, devices: int) -> int:
    """The GPU of worker ``slot`` among ``devices`` GPUs: workers take them in turn."""
    return slot % devices if devices > 0 else 0


@contextlib.contextmanager
def cell_threads(threads: int) -> Iterator[None]:
    """Compute with exactly ``threads`` threads inside the block: torch's intra-op pool, every OpenMP and
    BLAS pool loaded in the process (threadpoolctl), and joblib's ``Parallel`` on its threading backend
    (no loky processes to outlive a killed worker; the runner's ``n_jobs`` follows torch's thread count).
    Everything is restored afterwards."""
    import torch
    from joblib import parallel_config
    from threadpoolctl import threadpool_limits

    previous = torch.get_num_threads()
    with threadpool_limits(limits=threads), parallel_config(backend="threading"):
        torch.set_num_threads(threads)
        try:
            yield
        finally:
            torch.set_num_threads(previous)
