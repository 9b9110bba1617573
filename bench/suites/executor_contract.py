"""The contract every executor implements (:class:`Executor`), and what each of them shares: the result
hook, the optional package a cluster executor needs (:func:`require`), what a cluster task returns when
it left its cell to a live lease holder (:func:`skipped`), and the record of a cell whose worker or task
ended without giving one (:func:`written_since`, :func:`failed_record`).

The local executor (:mod:`crlbench.suites.executor`), the Slurm executor (:mod:`crlbench.suites.slurm`) and the
Ray executor (:mod:`crlbench.suites.ray_cells`) import this module; it imports none of them. The suite
(:mod:`crlbench.suites.suite`) drives any executor through it, and :mod:`crlbench.suites.dispatch` picks one by
its ``--executor`` name.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from crlbench.core.errors import ConfigError
from crlbench.core.fencing import Fence
from crlbench.suites.cell import Cell
from crlbench.suites.provenance import placement, provenance
from crlbench.suites.results import RESULT, SCHEMA, cell_dir, read_result, write_json

ResultHook = Callable[[dict[str, Any]], None]
EXTRAS = {"slurm": ("submitit", "crlbench[slurm]"), "ray": ("ray", "crlbench[ray]")}
SKIPPED = "skipped"  # the status of what a task returns when it left the cell to a live lease holder


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


def require(executor: str) -> None:
    """Fail (a :class:`ConfigError`) when ``executor``'s optional package is not installed."""
    module, extra = EXTRAS[executor]
    if importlib.util.find_spec(module) is None:
        raise ConfigError(f"--executor {executor} needs the Python package {module!r}, which is not installed in "
                          f"this environment: pip install '{extra}'")


def skipped(cell_hash: str, holder: str) -> dict[str, Any]:
    """What a task returns when another live holder runs the cell: not a record, nothing is written."""
    return {"hash": cell_hash, "status": SKIPPED, "holder": holder}


def is_skipped(result: dict[str, Any]) -> bool:
    """Whether a task's result is :func:`skipped` rather than a record."""
    return result.get("status") == SKIPPED


def written_since(cell: Cell, workdir: Path, since: float) -> dict[str, Any] | None:
    """The record a worker wrote for ``cell`` after ``since`` (it died before it could send it), if any."""
    path = cell_dir(workdir, cell.hash) / RESULT
    try:
        if path.stat().st_mtime < since:
            return None
        record = read_result(path.parent)
    except Exception:  # noqa: BLE001 - absent, or cut short: the cell failed
        return None
    return record if record is not None and record.get("hash") == cell.hash else None


def failed_record(cell: Cell, workdir, error_type: str, message: str, ran_on: dict[str, Any] | None = None) -> dict[str, Any]:
    """A failed record for a cell whose worker did not return one (it died, or failed outside the runner);
    ``ran_on`` says where it ran (by default: the local executor, task id unknown)."""
    record = {"schema": SCHEMA, "hash": cell.hash, "status": "failed", "cell": cell.to_dict(),
              "error": {"type": error_type, "message": message, "traceback": ""},
              "timings": {}, "provenance": provenance(), "ran_on": ran_on or placement("local", None)}
    write_json(cell_dir(workdir, cell.hash) / RESULT, record)
    return record
