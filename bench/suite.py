"""Run a suite: plan its cells against the result store, run what is missing, track, summarise.

A cell is *done* when its record exists with status ``ok`` and was evaluated with the suite's
metrics and evaluation settings; *stale* when it is done but the suite asks for other metrics (the
runner then computes them from the stored latents and checkpoint, without training); *failed* when
its record says so (skipped unless ``retry_failed``); *pending* otherwise (a killed cell resumes from
its latest checkpoint).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.cell import Cell
from bench.results import cell_dir, read_result
from bench.suite_config import SuiteConfig

log = logging.getLogger(__name__)

STATES = ("done", "stale", "failed", "pending")


@dataclass(frozen=True)
class PlannedCell:
    cell: Cell
    state: str
    resumable: bool = False  # a checkpoint exists


@dataclass
class SuiteSummary:
    ok: int = 0
    failed: int = 0
    cached: int = 0
    records: list[dict[str, Any]] = field(default_factory=list)
    failures: list[tuple[str, str]] = field(default_factory=list)  # (cell title, error)


def plan(config: SuiteConfig, workdir: str | Path) -> list[PlannedCell]:
    """Every cell of the suite and its state in ``workdir``."""
    planned = []
    for cell in config.cells():
        directory = cell_dir(workdir, cell.hash)
        planned.append(PlannedCell(cell, cell_state(cell, read_result(directory)),
                                   (directory / "checkpoint" / "last.pt").exists()))
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
    if record is None:
        return "pending"
    if record["status"] != "ok":
        return "failed"
    stored = record["cell"]
    wanted = cell.to_dict()
    same = all(stored.get(key) == wanted[key] for key in ("metrics", "evaluation", "label"))
    return "done" if same else "stale"


def run_suite(config: SuiteConfig, workdir: str | Path, *, workers: int = 1, tracking_uri: str | None = None,
              retry_failed: bool = False, progress: bool = True) -> SuiteSummary:
    """Run the suite's unfinished cells; with ``tracking_uri`` each cell becomes an MLflow child run.

    The tracking store is checked before any training, so an unreachable server fails at once; a
    rerun with nothing left to do opens no run (and does not import MLflow).
    """
    workdir = Path(workdir)
    planned = plan(config, workdir)
    to_run = [p.cell for p in planned if p.state in ("pending", "stale") or (retry_failed and p.state == "failed")]
    summary = SuiteSummary()
    for p in planned:
        if p.cell not in to_run:
            record = read_result(cell_dir(workdir, p.cell.hash))
            summary.records.append(record)
            if p.state == "failed":
                summary.failed += 1
                summary.failures.append((p.cell.title, _error_line(record)))
            else:
                summary.cached += 1
    tracker = _tracker(config, tracking_uri) if to_run else None  # nothing to run: no empty parent run

    def on_result(record: dict[str, Any]) -> None:
        summary.records.append(record)
        if record["status"] == "ok":
            summary.ok += 1
        else:
            summary.failed += 1
            summary.failures.append((record_title(record), _error_line(record)))
        if tracker is not None:
            tracker.log_cell(record, cell_dir(workdir, record["hash"]))

    from bench.executor import run_cells

    if tracker is None:
        run_cells(to_run, workdir, workers=workers, on_result=on_result, progress=progress)
        return summary
    with tracker:
        run_cells(to_run, workdir, workers=workers, on_result=on_result, progress=progress)
        tracker.finish(ok=summary.ok, failed=summary.failed, cached=summary.cached)
    return summary


def _tracker(config: SuiteConfig, uri: str | None):
    if uri is None:
        return None
    from bench.runner import provenance
    from bench.tracking import SuiteTracker, check_tracking, provenance_tags

    check_tracking(uri)
    return SuiteTracker(uri, config.name, config=config.to_dict(), config_path=config.source,
                        tags=provenance_tags(provenance()))


def record_title(record: dict[str, Any]) -> str:
    """``dataset/label/seedN``, as :attr:`Cell.title` names the cell."""
    cell = record["cell"]
    return f"{cell['dataset']}/{cell['label']}/seed{cell['seed']}"


def _error_line(record: dict[str, Any]) -> str:
    error = record.get("error") or {}
    return f"{error.get('type', 'Error')}: {error.get('message', '')}".strip()

