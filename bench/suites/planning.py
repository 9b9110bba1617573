"""A suite planned against a work directory: every cell and its state (:func:`plan`), what a cell's record
says of it (:func:`cell_state`), and the records of a suite's finished cells (:func:`suite_records`).

A cell is *done* when its record exists with status ``ok`` (or ``not_applicable``) and was evaluated with the
suite's metrics and evaluation settings; *stale* when its record was made with other settings; *failed* when
its record says so; *partial* when it finished but one of its metrics failed; *running* while another
launcher holds its lease; *pending* otherwise. Planning warns about each finished cell whose model's source
file changed since it was computed (its record's ``model_source``): its ``version`` was not bumped, so the
cell is reused. A change to docstrings and comments only, seen in git against the record's commit, is not
warned about (:mod:`crlbench.suites.source_history`).

The suite (:mod:`crlbench.suites.suite`) runs what the plan leaves to do; a cluster task
(:mod:`crlbench.suites.cell_task`) judges with :func:`cell_state` whether another launcher finished its cell.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from crlbench.suites.cell import Cell
from crlbench.suites.lease import STALE_AFTER_S, lease_state
from crlbench.suites.results import NOT_APPLICABLE, RESULT, cell_dir, read_result
from crlbench.suites.source_history import only_documentation_changed
from crlbench.suites.suite_config import SuiteConfig

log = logging.getLogger(__name__)

STATES = ("done", "stale", "partial", "failed", "pending", "running")
RETRIED = ("failed", "partial")  # the record states ``retry_failed`` runs again


@dataclass(frozen=True)
class PlannedCell:
    """A cell of the plan and its state (one of :data:`STATES`), with what its record says and who runs it."""

    cell: Cell
    state: str  # one of STATES
    resumable: bool = False  # a checkpoint exists
    record_state: str = ""  # what its record says (done, stale, partial, failed or pending), running or not
    holder: str | None = None  # who runs it, when running elsewhere
    signature: tuple | None = field(default=None, compare=False)  # its record file when planned


def plan(config: SuiteConfig, workdir: str | Path, stale_after_s: float = STALE_AFTER_S) -> list[PlannedCell]:
    """Every cell of the suite and its state in ``workdir``."""
    planned, sources = [], {}
    for cell in config.cells():
        directory = cell_dir(workdir, cell.hash)
        record = read_result(directory)
        record_state = cell_state(cell, record)
        _warn_if_source_changed(cell, record, sources)
        lease = lease_state(directory / "lease.json", stale_after_s)
        holder = None
        if lease is not None and lease.live:
            holder = lease.holder.describe() if lease.holder else "a launcher (its lease is being written)"
        planned.append(PlannedCell(cell, "running" if holder else record_state,
                                   (directory / "checkpoint" / "last.pt").exists(), record_state, holder,
                                   record_signature(directory)))
    return planned


def suite_records(config: SuiteConfig, workdir: str | Path) -> list[dict[str, Any]]:
    """The records of the suite's finished cells (``_dir`` set), labelled as the suite labels them."""
    records = []
    for cell in config.cells():
        directory = cell_dir(workdir, cell.hash)
        record = read_result(directory)
        if record is not None:
            record["_dir"] = str(directory)
            record["cell"]["label"] = cell.label
            records.append(record)
    return records


def cell_state(cell: Cell, record: dict[str, Any] | None) -> str:
    """What ``record`` (None: no record) says of ``cell``: done, stale, partial, failed or pending (see the
    module's docstring); never running, which only the cell's lease tells."""
    if record is None:
        return "pending"
    stored = record["cell"]
    wanted = cell.to_dict()
    same = all(stored.get(key) == wanted[key] for key in ("metrics", "evaluation", "label"))
    if not same:
        return "stale"
    if (record["status"] == "ok" and not record.get("metric_errors")) or record["status"] == NOT_APPLICABLE:
        return "done"
    return "partial" if record["status"] == "ok" else "failed"


def _warn_if_source_changed(cell: Cell, record: dict[str, Any] | None, sources: dict[str, Any]) -> None:
    """Warn when a finished cell's model was computed from another version of its source file than
    the one installed now, in more than its docstrings and comments (its ``version`` was not bumped, so the
    cell is reused)."""
    stored = (record or {}).get("model_source") if (record or {}).get("status") == "ok" else None
    if not isinstance(stored, dict) or not stored.get("sha256"):
        return
    if cell.model not in sources:
        from crlbench.core import registry

        source = registry.model_source(cell.model)  # the file, without importing torch
        if source is None:  # a loaded or plugin model: its class
            from crlbench.training.model import source_fingerprint

            source = source_fingerprint(registry.registry("model").get(cell.model))
        sources[cell.model] = source
    current = sources[cell.model]
    if current is None or current["sha256"] == stored["sha256"]:
        return
    commit = ((record or {}).get("provenance") or {}).get("git_commit")
    if not only_documentation_changed(current["file"], current["sha256"], stored["sha256"], commit):
        log.warning("model %r: its source file %s changed since cell %s (%s) was computed; the cell is reused "
                    "as it is: bump the model's `version` to recompute it", cell.model, current["file"],
                    cell.title, cell.hash)


def record_signature(directory: Path) -> tuple | None:
    """Which ``result.json`` a cell folder holds (None: none), to see that another launcher wrote it."""
    try:
        stat = os.stat(directory / RESULT)
    except OSError:
        return None
    return stat.st_ino, stat.st_mtime_ns, stat.st_size
