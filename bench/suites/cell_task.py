"""One cell as a cluster task runs it (a Slurm job array task, a Ray task): under the cell's lease, into
the shared work directory, its record saying where it ran (``ran_on``).

The lease is the one local launchers share (:mod:`crlbench.suites.lease`), taken by the task itself, so
no cell runs twice at once: a task that finds a live lease (a second launcher's, or another task's)
skips the cell and returns :func:`crlbench.suites.executor_contract.skipped` (no record is written); a
stale lease (its holder's process ended, or its heartbeat stopped) is taken over and the takeover
logged. With ``supersedes``, a task takes over the lease of its own earlier attempt at once (same
``invocation``): a requeued Slurm task, whose earlier attempt Slurm ended. A retried Ray task does not
(its lost node's worker may still run): it waits for that lease to go stale like any other. Either
resumes from the cell's checkpoint.

A task that finds a record written since its cells were submitted (``since``: by another launcher, or by
its own earlier attempt before it was requeued), or a record the suite counts as done (written by another
launcher between its launcher's check and the submission), returns that record without running the cell
again.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from crlbench.core.errors import FencedOut
from crlbench.suites.cell import Cell
from crlbench.suites.executor_contract import (  # noqa: F401 - SKIPPED, is_skipped: re-exported
    SKIPPED, is_skipped, skipped, written_since)
from crlbench.suites.lease import HEARTBEAT_S, STALE_AFTER_S, Holder, Leases, cell_lease, lease_state

log = logging.getLogger(__name__)


def run_leased_cell(cell: Cell, workdir: str | Path, *, ran_on: dict[str, Any], invocation: str, since: float,
                    supersedes: bool = False, heartbeat_s: float = HEARTBEAT_S,
                    stale_after_s: float = STALE_AFTER_S) -> dict[str, Any]:
    """Run ``cell`` under its lease as ``invocation`` (``slurm-<job>_<index>``, ``ray-<task id>``), or
    skip it: the cell's record (``ran_on`` filled in), or ``skipped`` when a live holder runs it."""
    from crlbench.suites.runner import run_cell

    workdir = Path(workdir)
    path = cell_lease(workdir, cell.hash)
    with Leases(Holder.current(invocation), heartbeat_s=heartbeat_s, stale_after_s=stale_after_s) as leases:
        if not leases.acquire(path, f"cell {cell.title} ({cell.hash})", supersedes=invocation if supersedes else None):
            state = lease_state(path, stale_after_s)
            holder = state.holder.describe() if state and state.holder else "another launcher"
            log.warning("cell %s (%s): skipped, %s runs it", cell.title, cell.hash, holder)
            return skipped(cell.hash, holder)
        record = written_since(cell, workdir, since) or finished_record(cell, workdir)
        if record is not None:  # finished meanwhile: by another launcher, or by this task before a requeue
            return record
        try:
            return run_cell(cell, workdir, ran_on=ran_on, fence=leases.fence(path))
        except FencedOut as error:  # taken over while this task ran (it missed its heartbeats): the new holder runs it
            log.warning("cell %s (%s): %s", cell.title, cell.hash, error)
            return skipped(cell.hash, f"the holder of lease token {error.newest}")


def finished_record(cell: Cell, workdir: Path) -> dict[str, Any] | None:
    """The cell's record if it is done as the suite plans cells (:func:`crlbench.suites.planning.cell_state`): a
    launcher may have written it after this task's launcher checked the cell and before ``since``."""
    from crlbench.core import registry
    from crlbench.suites.planning import cell_state
    from crlbench.suites.results import read_result

    registry.load_plugins(cell.plugins)  # a fresh task process: the cell's hash needs its model's declaration
    record = read_result(cell_lease(workdir, cell.hash).parent)
    return record if record is not None and cell_state(cell, record) == "done" else None
