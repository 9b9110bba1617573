"""Run a suite: plan its cells against the result store, run what is missing, track, summarise.

The plan (:mod:`crlbench.suites.planning`): a cell is *done* when its record exists with status ``ok``
and was evaluated with the suite's metrics and evaluation settings; *stale* when it has a record made
with other settings (the runner then computes the new metrics from the stored latents and checkpoint,
without training; a record that failed under other settings is tried again under the new ones); *failed*
when its record says so; *partial* when it finished but one of its metrics failed (its other scores
stand); failed and partial cells are skipped unless ``retry_failed`` (which computes what is missing);
*running* while another launcher holds its lease; *pending* otherwise (a killed cell resumes from its
latest checkpoint). Planning warns about each finished cell whose model's source file changed since it
was computed (its record's ``model_source``): its ``version`` was not bumped, so the cell is reused.

**Launchers share a work directory** (:mod:`crlbench.suites.lease`). A cell runs only under its lease
(``cells/<hash>/lease.json``), taken in this process before the cell is handed to the executor and
held, heartbeat and all, until its record is written and logged to MLflow (or the run stops). A
launcher with one worker takes one cell at a time, so launchers started together split the cells
between them; with several workers it takes every cell that is free when it starts (the executor
schedules them). A cell whose lease another, live, launcher holds is skipped and waited for: when
it has nothing else to do, a launcher waits for those cells, collects their records (counted as
*ran elsewhere*) and takes over a cell whose holder died (its process ended, or its heartbeat
stopped). So every launcher that ends normally leaves the whole suite finished, and a cell is
trained, and logged, once.

**Executors** (:mod:`crlbench.suites.dispatch`): local worker processes, a Slurm job array or Ray
tasks run the cells; everything above holds for each. Cluster tasks take their cell's lease
themselves in the shared work directory (:mod:`crlbench.suites.cell_task`), so a launcher does not
lease the cells it submits: a cell whose task found a live lease is waited for as a cell running
elsewhere. A detached launcher (``--detach``) returns once its cells are submitted (*in flight*); a
later run of the same command collects what finished, waits for what still runs and submits the rest.

**Tracking, exactly once.** A suite reports its cells through the hook it is given
(:mod:`crlbench.suites.tracking_hook`; the command line gives MLflow's,
:class:`crlbench.tracking.mlflow_runs.MlflowTracking`), and imports no tracking code itself. Before any
work, an invocation that tracks has the hook end KILLED the runs of the suite's experiment that dead
invocations left RUNNING, and logs every finished cell the experiment does not hold yet (a record finished
by a launcher killed before logging it, or run with ``--no-tracking``): a cell folder's ``mlflow.json``
says which run holds its record, so a rerun with nothing left to do opens no run (and does not import
MLflow).
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from crlbench.core.errors import FencedOut
from crlbench.core.fencing import Fence
from crlbench.core.records import is_partial
from crlbench.suites.cell import Cell
from crlbench.suites.executor import LocalExecutor
from crlbench.suites.executor_contract import Executor, is_skipped
from crlbench.suites.lease import (HEARTBEAT_S, INVOCATIONS, STALE_AFTER_S, Holder, Leases, cell_lease, clear_stale,
                                   invocation_lease, lease_state)
from crlbench.suites.planning import (  # noqa: F401 - STATES, suite_records: re-exported
    RETRIED, STATES, PlannedCell, cell_state, plan, record_signature, suite_records)
from crlbench.suites.progress import CellProgress
from crlbench.suites.results import NOT_APPLICABLE, cell_dir, read_result
from crlbench.suites.suite_config import SuiteConfig
from crlbench.suites.tracking_hook import SuiteTracking

log = logging.getLogger(__name__)

POLL_S = 2.0  # how often a launcher looks at cells running elsewhere while it waits for them


@dataclass
class SuiteSummary:
    ok: int = 0
    failed: int = 0
    cached: int = 0
    elsewhere: int = 0  # finished ok by other launchers while this one ran (their failures count in failed)
    in_flight: int = 0  # submitted (or running elsewhere) and not awaited: a detached launcher's
    logged: int = 0  # cells finished before this invocation and logged to MLflow by it (--ingest)
    not_applicable: int = 0  # cells whose method does not apply to their dataset (run now or before)
    partial: int = 0  # finished cells (counted in ok, cached or elsewhere too) some of whose metrics failed
    records: list[dict[str, Any]] = field(default_factory=list)
    failures: list[tuple[str, str]] = field(default_factory=list)  # (cell title, error)

    def count(self, record: dict[str, Any], title: str, finished_before: str | None = None) -> None:
        """Count a finished cell's ``record``: run by this invocation, or (``finished_before`` "cached" or
        "elsewhere") finished before it or by another launcher meanwhile; failures are listed by ``title``."""
        self.records.append(record)
        if is_partial(record):
            self.partial += 1
        if record["status"] == NOT_APPLICABLE:
            self.not_applicable += 1
        elif record["status"] != "ok":
            self.failed += 1
            self.failures.append((title, _error_line(record)))
        elif finished_before == "elsewhere":
            self.elsewhere += 1
        elif finished_before == "cached":
            self.cached += 1
        else:
            self.ok += 1


# The caches libraries write on their own (matplotlib's font list and config, torch's compiled kernels), kept
# in the work directory unless the user set their own: a suite writes nothing outside it (the chaos soak checks)
CACHE_VARIABLES = {"MPLCONFIGDIR": "matplotlib", "TORCHINDUCTOR_CACHE_DIR": "torchinductor"}


def keep_caches_in(workdir: Path) -> None:
    """Point the library caches of :data:`CACHE_VARIABLES` at ``<workdir>/.cache/`` where not set (spawned
    workers inherit them), and this process's temporary files (MLflow stages logged images and texts in a
    temporary folder, which a killed launcher leaves behind) at ``<workdir>/.cache/tmp``."""
    for variable, folder in CACHE_VARIABLES.items():
        os.environ.setdefault(variable, str((workdir / ".cache" / folder).resolve()))
    temporary = (workdir / ".cache" / "tmp").resolve()
    temporary.mkdir(parents=True, exist_ok=True)
    tempfile.tempdir = str(temporary)


def run_suite(config: SuiteConfig, workdir: str | Path, *, workers: int = 1, tracking: SuiteTracking | None = None,
              retry_failed: bool = False, progress: bool = True, heartbeat_s: float = HEARTBEAT_S,
              stale_after_s: float = STALE_AFTER_S, poll_s: float = POLL_S, executor: Executor | None = None,
              ingest: bool = False) -> SuiteSummary:
    """Run the suite's unfinished cells; with ``tracking`` each landed cell is reported to it.

    ``tracking`` is the hook of :mod:`crlbench.suites.tracking_hook`: for MLflow,
    ``tracking=crlbench.tracking.mlflow_runs.MlflowTracking(uri)``, which makes each cell a child run of the
    invocation's run. ``executor`` runs the cells (:mod:`crlbench.suites.dispatch`; by default ``workers``
    local worker processes). ``retry_failed`` runs cells whose record failed again. Cells other launchers
    run are waited for (see the module's docstring); ``heartbeat_s``, ``stale_after_s`` and ``poll_s`` tune
    the leases. ``ingest`` runs nothing: it logs to the tracking store the finished cells it does not hold
    yet (cells a detached Slurm array finished while no launcher watched). The tracking store is checked
    before any training, so an unreachable server fails at once; a rerun with nothing left to do opens no
    run (and does not import MLflow).
    """
    workdir = Path(workdir)
    keep_caches_in(workdir)
    executor = executor if executor is not None else LocalExecutor(workers)
    run = _SuiteRun(config, workdir, executor, retry_failed, progress, poll_s,
                    Leases(Holder.current(), heartbeat_s=heartbeat_s, stale_after_s=stale_after_s))
    with run.leases:
        planned = plan(config, workdir, stale_after_s)
        todo = []
        for p in planned:
            if run.wanted(p):
                if not ingest:
                    todo.append(p)
            else:
                run.collect(p.cell, read_result(cell_dir(workdir, p.cell.hash)), elsewhere=False)
        finished = [(record, cell_dir(workdir, record["hash"])) for record in run.summary.records]
        setup = _tracker(config, tracking, workdir, run.leases.holder, bool(todo), finished, stale_after_s)
        if setup is None:
            run.work(todo, [])
            return run.summary
        tracker, unlogged = setup
        run.leases.acquire(invocation_lease(workdir, run.leases.holder.invocation), "this invocation")
        with tracker:
            run.tracker = tracker
            run.work(todo, unlogged)
            if run.leases.taken_over:  # a launcher died while this one ran: its runs are open
                _close_dead_runs(tracking, config, run.leases.holder, workdir, stale_after_s)
            tracker.finish(ok=run.summary.ok, failed=run.summary.failed, cached=run.summary.cached,
                           elsewhere=run.summary.elsewhere, not_applicable=run.summary.not_applicable)
    return run.summary


class _SuiteRun:
    """One invocation's work: cells taken under leases, run, logged, collected into the summary."""

    def __init__(self, config: SuiteConfig, workdir: Path, executor: Executor, retry_failed: bool, progress: bool,
                 poll_s: float, leases: Leases) -> None:
        self.config, self.workdir, self.executor = config, workdir, executor
        self.retry_failed, self.progress, self.poll_s = retry_failed, progress, poll_s
        self.leases = leases
        self.tracker: Any = None
        self.display: CellProgress | None = None  # while it works: a line per finished cell, the bar
        self.summary = SuiteSummary()
        self._holders: dict[str, str] = {}  # cell hash -> who runs it, for a cell found busy
        self._reported: set[str] = set()  # the cells of the running batch whose record (or skip) came

    def wanted(self, p: PlannedCell) -> bool:
        """Whether the cell is this launcher's to run (or to wait for)."""
        return p.state == "running" or p.record_state in ("pending", "stale") or \
            (self.retry_failed and p.record_state in RETRIED)

    def work(self, todo: list[PlannedCell], unlogged: list[tuple[dict[str, Any], Path]]) -> None:
        for record, folder in unlogged:  # finished before, not in the experiment yet
            if self._log_finished(record, folder):
                self.summary.logged += 1
        cells = [p.cell for p in todo]
        # a cluster executor runs every submitted cell at once, as far as this launcher knows
        parallel = self.executor.parallel(cells) if isinstance(self.executor, LocalExecutor) else len(cells)
        self.display = CellProgress(cells, parallel, bar=self.progress and bool(cells))
        try:
            if self.executor.leases_in_tasks:
                self._work_in_tasks(todo)
            else:
                self._work_here(todo)
        finally:
            self.display.close()
            self.display = None

    def _work_here(self, todo: list[PlannedCell]) -> None:
        """Take the cells' leases in this process and run them on the executor, one batch at a time."""
        batch_size = 1 if self.executor.one_at_a_time else len(todo)  # one worker: one cell at a time, shared
        waiting_for = None
        while todo:
            batch, left = [], []
            taken: list[PlannedCell] = []
            for p in todo:
                if len(batch) >= batch_size:
                    left.append(p)
                    continue
                outcome = self._take(p)
                if outcome == "run":
                    batch.append(p.cell)
                    taken.append(p)
                elif outcome == "busy":
                    left.append(p)
            if batch:
                fences = {cell.hash: self.leases.fence(cell_lease(self.workdir, cell.hash)) for cell in batch}
                self._reported.clear()
                try:
                    self.executor.run(batch, self.workdir, on_result=self._on_result,
                                      progress=self._executor_progress(),
                                      fences={key: fence for key, fence in fences.items() if fence is not None})
                finally:
                    for cell in batch:  # a record that never came (the run stopped): free the cell
                        self.leases.release(cell_lease(self.workdir, cell.hash))
                # a cell that gave no record lost its lease while it ran (crlbench.core.fencing): wait for its new
                # holder and count it as run elsewhere, as a cell found busy
                left += [p for p in taken if p.cell.hash not in self._reported]
                waiting_for = None
            elif left:
                waiting_for = self._wait_for_holders(left, waiting_for)
            todo = left

    def _work_in_tasks(self, todo: list[PlannedCell]) -> None:
        """Submit the cells no live lease holds; the tasks lease them. A cell a task skipped (another holder
        had it) is waited for; a detached executor's cells, and cells running elsewhere, are left in flight."""
        waiting_for = None
        while todo:
            batch, left = [], []
            for p in todo:
                outcome = self._check(p)
                if outcome == "run":
                    batch.append(p)
                elif outcome == "busy":
                    left.append(p)
            if batch:
                results: dict[str, dict[str, Any]] = {}
                self.executor.run([p.cell for p in batch], self.workdir, progress=self._executor_progress(),
                                  on_result=lambda record: self._on_task_result(record, results))
                for p in batch:
                    result = results.get(p.cell.hash)
                    if result is None:  # detached: submitted, not awaited
                        self.summary.in_flight += 1
                    elif is_skipped(result):
                        left.append(p)
                waiting_for = None
            if self.executor.detach:
                self.summary.in_flight += len(left)
                return
            if left and not batch:
                waiting_for = self._wait_for_holders(left, waiting_for)
            todo = left

    def _executor_progress(self) -> Any:
        """The local executor shows its running cells on the suite's bar; another draws its own bar only
        where the suite's is not drawn."""
        if isinstance(self.executor, LocalExecutor):
            return self.display
        return self.progress and not (self.display is not None and self.display.drawn)

    def _wait_for_holders(self, left: list[PlannedCell], waiting_for: list[str] | None) -> list[str]:
        """Wait one poll for the cells others hold, saying who holds them when that changed; the holders."""
        holders = sorted({self._holders.get(p.cell.hash, "another launcher") for p in left})
        if holders != waiting_for:
            log.warning("suite %s: %d cell(s) running elsewhere, by %s; waiting for them",
                        self.config.name, len(left), "; ".join(holders))
        time.sleep(self.poll_s)
        return holders

    def _check(self, p: PlannedCell) -> str:
        """As :meth:`_take`, without taking the lease (the cell's task takes it): "run", "busy" or "done"."""
        directory = cell_dir(self.workdir, p.cell.hash)
        state = lease_state(directory / "lease.json", self.leases.stale_after_s)
        if state is not None and state.live:
            self._holders[p.cell.hash] = state.holder.describe() if state.holder else "another launcher"
            return "busy"
        changed = record_signature(directory) != p.signature
        record = read_result(directory) if changed else None
        state_now = cell_state(p.cell, record) if changed else p.record_state
        if state_now in ("pending", "stale") or (state_now in RETRIED and self.retry_failed and not changed):
            return "run"
        record = record or read_result(directory)
        self.collect(p.cell, record, elsewhere=changed)
        if self.tracker is not None and record is not None:
            self._log_finished(record, directory)
        return "done"

    def _on_task_result(self, result: dict[str, Any], results: dict[str, dict[str, Any]]) -> None:
        """A cluster task's record (logged under the cell's lease, which the task has released), or its
        ``skipped``."""
        results[result["hash"]] = result
        if is_skipped(result):
            self._holders[result["hash"]] = result.get("holder") or "another launcher"
            return
        self.summary.count(result, record_title(result))
        self._show_finished(result)
        if self.tracker is not None:
            self._log_finished(result, cell_dir(self.workdir, result["hash"]))

    def _take(self, p: PlannedCell) -> str:
        """Take the cell's lease: "run" (ours to run), "busy" (held elsewhere) or "done" (finished: by
        another launcher meanwhile, or before; collected)."""
        directory = cell_dir(self.workdir, p.cell.hash)
        if not self.leases.acquire(directory / "lease.json", f"cell {p.cell.title} ({p.cell.hash})"):
            state = lease_state(directory / "lease.json", self.leases.stale_after_s)
            self._holders[p.cell.hash] = state.holder.describe() if state and state.holder else "another launcher"
            return "busy"
        self._holders.pop(p.cell.hash, None)
        changed = record_signature(directory) != p.signature  # another launcher wrote its record meanwhile
        record = read_result(directory) if changed else None
        state = cell_state(p.cell, record) if changed else p.record_state
        if state in ("pending", "stale") or (state in RETRIED and self.retry_failed and not changed):
            return "run"
        try:
            record = record or read_result(directory)
            self.collect(p.cell, record, elsewhere=changed)
            if self.tracker is not None and record is not None:
                self._log_fenced(record, self.leases.fence(directory / "lease.json"))
        finally:
            self.leases.release(directory / "lease.json")
        return "done"

    def collect(self, cell: Cell, record: dict[str, Any] | None, elsewhere: bool) -> None:
        """Count a finished cell this launcher did not run."""
        if record is not None:
            self.summary.count(record, cell.title, "elsewhere" if elsewhere else "cached")
            self._show_finished(record, "ran elsewhere" if elsewhere else "finished before")

    def _show_finished(self, record: dict[str, Any], note: str = "") -> None:
        """A cell of this invocation's work finished: its progress line (crlbench.suites.progress)."""
        if self.display is not None:
            self.display.finished(record, note)

    def _on_result(self, record: dict[str, Any]) -> None:
        self._reported.add(record["hash"])
        path = cell_lease(self.workdir, record["hash"])
        if is_skipped(record):  # its lease was taken over while it ran (crlbench.core.fencing): waited for, not counted
            self._reported.discard(record["hash"])
            self.leases.release(path)
            return
        self.summary.count(record, record_title(record))
        self._show_finished(record)
        try:
            if self.tracker is not None:
                self._log_fenced(record, self.leases.fence(path))
        finally:
            self.leases.release(path)

    def _log_fenced(self, record: dict[str, Any], fence: Fence | None) -> None:
        """Log ``record`` to MLflow under its lease's token (crlbench.core.fencing): not at all when another
        launcher took the lease over meanwhile (it logs the cell), and under the lock a take-over takes."""
        folder = cell_dir(self.workdir, record["hash"])
        if fence is None:
            self.tracker.log_cell_once(record, folder)
            return
        try:
            with fence.holding():
                self.tracker.log_cell_once(record, folder)
        except FencedOut as error:
            log.warning("cell %s: not logged to MLflow: %s", record_title(record), error)

    def _log_finished(self, record: dict[str, Any], folder: Path) -> bool:
        """Log a cell finished before this invocation (or by a cluster task), under its lease (its holder
        logs it otherwise); whether this call logged it (not when another invocation had meanwhile: two
        ``--ingest`` at once each count only the runs they created)."""
        lease = folder / "lease.json"
        if not self.leases.acquire(lease, f"cell {record_title(record)} ({record['hash']})"):
            return False
        try:
            current = read_result(folder)  # as it is now, under the lease
            fence = self.leases.fence(lease)
            try:
                with fence.holding() if fence is not None else contextlib.nullcontext():
                    return current is not None and self.tracker.log_cell_if_new(current, folder)[1]
            except FencedOut as error:
                log.warning("cell %s: not logged to MLflow: %s", record_title(record), error)
                return False
        finally:
            self.leases.release(lease)


def _tracker(config: SuiteConfig, tracking: SuiteTracking | None, workdir: Path, me: Holder, running: bool,
             finished: list[tuple[dict[str, Any], Path]], stale_after_s: float):
    """``(SuiteLog, finished records to log)`` when this invocation has something to track, else None.

    Nothing is asked of the store when no cell is to run, every finished one is noted as logged and no
    dead invocation of this work directory may have left a run open."""
    if tracking is None:
        return None
    finished = tracking.not_noted(config.name, finished)
    dead = _dead_invocations(workdir, stale_after_s)
    if not (running or finished or dead):
        return None
    tracking.check()
    _close_dead_runs(tracking, config, me, workdir, stale_after_s)
    if finished and not running:
        finished = tracking.unlogged(config.name, finished)  # logged before the folders noted it: noted now
    if not (running or finished):
        return None
    return tracking.open(config, me, workdir), finished


def _close_dead_runs(tracking: SuiteTracking, config: SuiteConfig, me: Holder, workdir: Path,
                     stale_after_s: float) -> None:
    """End KILLED the suite's runs that dead invocations left open, then forget those invocations."""
    dead = _dead_invocations(workdir, stale_after_s)
    try:
        tracking.close_dead_runs(config.name, me, workdir)
    except Exception as error:  # noqa: BLE001 - closing old runs never stops the suite
        log.warning("MLflow: could not close the runs of dead invocations: %s", error)
        return
    for path in dead:
        clear_stale(path, stale_after_s)


def _dead_invocations(workdir: Path, stale_after_s: float) -> list[Path]:
    """The leases of this work directory's invocations that died (their runs may be open)."""
    folder = workdir / INVOCATIONS
    if not folder.is_dir():
        return []
    dead = []
    for path in sorted(folder.glob("*.json")):
        state = lease_state(path, stale_after_s)
        if state is not None and not state.live:
            dead.append(path)
    return dead


def record_title(record: dict[str, Any]) -> str:
    """``dataset/label/seedN``, as :attr:`Cell.title` names the cell."""
    cell = record["cell"]
    return f"{cell['dataset']}/{cell['label']}/seed{cell['seed']}"


def _error_line(record: dict[str, Any]) -> str:
    error = record.get("error") or {}
    return f"{error.get('type', 'Error')}: {error.get('message', '')}".strip()
