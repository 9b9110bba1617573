"""Which executor runs a suite's cells (``crlbench suite FILE --executor local|slurm|ray``): the
interface every executor implements, the local one behind it, and the choice by name.

An executor gets the cells a launcher decided to run and reports each cell's record through
``on_result`` as it lands; planning, resume, leases, failure accounting, MLflow and the report stay in
:mod:`crlbench.suites.suite`, whichever executor runs the cells.

- ``local`` (:mod:`crlbench.suites.executor`): worker processes on this machine. The launcher holds each
  cell's lease while the cell runs.
- ``slurm`` (:mod:`crlbench.suites.slurm`, submitit): the cells go out as one job array.
- ``ray`` (:mod:`crlbench.suites.ray_cells`): one Ray task per cell.

Cluster executors whose tasks write into the shared work directory (``leases_in_tasks``) leave the
leases to the tasks themselves (:mod:`crlbench.suites.cell_task`): a task that finds a live lease reports
:func:`crlbench.suites.cell_task.skipped` instead of a record, and the launcher waits for that cell's
holder as it waits for another launcher's. An executor with ``detach`` returns once the cells are
submitted; the cells it reported nothing for are *in flight*, collected by a later run.

submitit and ray are optional (``pip install 'crlbench[slurm]'``, ``'crlbench[ray]'``): without them
:func:`executor_named` fails before any work, saying what to install.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from crlbench.core.errors import ConfigError, unknown_name
from crlbench.core.fencing import Fence
from crlbench.suites.cell import Cell

EXECUTORS = ("local", "slurm", "ray")
ResultHook = Callable[[dict[str, Any]], None]
EXTRAS = {"slurm": ("submitit", "crlbench[slurm]"), "ray": ("ray", "crlbench[ray]")}


class Executor(Protocol):
    """Runs cells and reports each one's record (or a task's ``skipped``) through ``on_result``."""

    name: str
    leases_in_tasks: bool  # each task takes its cell's lease in the shared work directory
    one_at_a_time: bool  # the launcher hands it one cell at a time (one local worker: launchers share the cells)
    detach: bool  # returns once submitted: cells it reported nothing for are in flight

    def run(self, cells: Sequence[Cell], workdir: Path, *, on_result: ResultHook, progress: bool = True,
            fences: Mapping[str, Fence] | None = None) -> None:
        """``fences``: the fencing token of each cell's lease, by cell hash, when the launcher took the leases
        (crlbench.core.fencing); an executor whose tasks take their own leases ignores it."""


class LocalExecutor:
    """Cells in ``workers`` processes on this machine (:func:`crlbench.suites.executor.run_cells`)."""

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
        from crlbench.suites.executor import scheduled_workers

        return scheduled_workers(min(self.workers, len(cells)), max(cell.threads for cell in cells)) if cells else 1

    def run(self, cells: Sequence[Cell], workdir: Path, *, on_result: ResultHook, progress: Any = True,
            fences: Mapping[str, Fence] | None = None) -> None:
        """``progress``: a bool, or the suite's :class:`crlbench.suites.progress.CellProgress`, whose bar shows
        the running cells."""
        from crlbench.suites.executor import run_cells

        run_cells(cells, workdir, workers=self.workers, on_result=on_result, progress=progress, fences=fences)


def require(executor: str) -> None:
    """Fail (a :class:`ConfigError`) when ``executor``'s optional package is not installed."""
    module, extra = EXTRAS[executor]
    if importlib.util.find_spec(module) is None:
        raise ConfigError(f"--executor {executor} needs the Python package {module!r}, which is not installed in "
                          f"this environment: pip install '{extra}'")


def executor_named(name: str, *, workers: int = 1, slurm: Any = None, ray: Any = None) -> Executor:
    """The executor ``name`` (one of :data:`EXECUTORS`), with its options (:class:`crlbench.suites.slurm.SlurmOptions`,
    :class:`crlbench.suites.ray_cells.RayOptions`; their defaults when None)."""
    if name not in EXECUTORS:
        raise unknown_name("executor (--executor)", name, EXECUTORS)
    if name == "local":
        return LocalExecutor(workers)
    require(name)
    if name == "slurm":
        from crlbench.suites.slurm import SlurmExecutor, SlurmOptions

        return SlurmExecutor(slurm or SlurmOptions())
    from crlbench.suites.ray_cells import RayExecutor, RayOptions

    return RayExecutor(ray or RayOptions())
