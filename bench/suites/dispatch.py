"""Which executor runs a suite's cells (``crlbench suite FILE --executor local|slurm|ray``): the choice by
name (:func:`executor_named`). The interface every executor implements is
:mod:`crlbench.suites.executor_contract` (re-exported here: :class:`Executor`, ``ResultHook``, :func:`require`),
and the local executor is :class:`crlbench.suites.executor.LocalExecutor` (re-exported here). This module
imports the executors; none of them imports it.

An executor gets the cells a launcher decided to run and reports each cell's record through
``on_result`` as it lands; planning, resume, leases, failure accounting and the tracking hook stay in
:mod:`crlbench.suites.suite`, whichever executor runs the cells.

- ``local`` (:mod:`crlbench.suites.executor`): worker processes on this machine. The launcher holds each
  cell's lease while the cell runs.
- ``slurm`` (:mod:`crlbench.suites.slurm`, submitit): the cells go out as one job array.
- ``ray`` (:mod:`crlbench.suites.ray_cells`): one Ray task per cell.

Cluster executors whose tasks write into the shared work directory (``leases_in_tasks``) leave the
leases to the tasks themselves (:mod:`crlbench.suites.cell_task`): a task that finds a live lease reports
:func:`crlbench.suites.executor_contract.skipped` instead of a record, and the launcher waits for that cell's
holder as it waits for another launcher's. An executor with ``detach`` returns once the cells are
submitted; the cells it reported nothing for are *in flight*, collected by a later run.

submitit and ray are optional (``pip install 'crlbench[slurm]'``, ``'crlbench[ray]'``): without them
:func:`executor_named` fails before any work, saying what to install.
"""

from __future__ import annotations

from typing import Any

from crlbench.core.errors import unknown_name
from crlbench.suites.executor import LocalExecutor
from crlbench.suites.executor_contract import EXTRAS, Executor, ResultHook, require

__all__ = ["EXECUTORS", "EXTRAS", "Executor", "LocalExecutor", "ResultHook", "executor_named", "require"]

EXECUTORS = ("local", "slurm", "ray")


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
