"""The Slurm executor (``--executor slurm``), through submitit: a launcher's cells go out as one job array.

Each array task runs one cell into the work directory, which every node must see (a shared
filesystem), under the cell's lease (:mod:`crlbench.suites.cell_task`); the task's record says where it
ran (``ran_on``: ``slurm``, the node, the task ``<array job>_<index>`` and Slurm's restart count). A
preempted, timed-out or requeued task (``scontrol requeue``) runs again under the same task id: it
takes over its earlier attempt's lease and resumes from the cell's checkpoint (the task is a submitit
``Checkpointable``, so submitit requeues it on preemption and on timeout alike).

**Where a submission is written down.** Each submission gets its own submitit folder,
``WORKDIR/slurm/<UTC time>-<id>/`` (a fresh Slurm state numbers jobs from 1 again, so a reused folder
would hand back an earlier run's results), and each submitted cell a pointer,
``cells/<hash>/slurm.json`` (job id, folder, time of submission). A launcher that finds a pointer with
no record written since watches that task instead of submitting the cell again: so ``--detach``
returns once the array is submitted, and a later run of the same command collects what finished and
waits for the rest. The pointer is removed once the task's outcome is collected.

**A task that dies** (``scancel``, killed, out of memory, its node lost) without writing a record fails
its cell (``SlurmTaskFailed``, naming the task, its final Slurm state and its log); ``--retry-failed``
submits it again. Knowing that a task died needs Slurm's accounting (``sacct``, slurmdbd): without it
submitit cannot see a dead task's state, and the launcher waits.
"""

from __future__ import annotations

import datetime
import logging
import os
import re
import shutil
import subprocess
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from crlbench.core.errors import ConfigError
from crlbench.suites.cell import Cell
from crlbench.suites.executor_contract import ResultHook, failed_record, require, written_since
from crlbench.suites.provenance import placement
from crlbench.suites.results import cell_dir, read_json, write_json

log = logging.getLogger(__name__)

POINTER = "slurm.json"  # in a cell folder: the Slurm task that was given the cell, until its outcome is collected
SUBMISSIONS = "slurm"  # under the work directory: one submitit folder per submission
POLL_S = 5.0
TIME_FORMATS = "MINUTES, HOURS:MINUTES:SECONDS, DAYS-HOURS or DAYS-HOURS:MINUTES[:SECONDS] (Slurm's --time)"


@dataclass(frozen=True)
class SlurmOptions:
    """The ``--slurm-*`` flags: what each array task asks for, and how the launcher waits."""

    partition: str | None = None
    time_min: int = 60
    gpus_per_cell: int = 0
    cpus_per_cell: int = 1
    array_parallelism: int = 256
    sbatch: dict[str, Any] = field(default_factory=dict)  # extra #SBATCH options: {"account": "x", "exclusive": True}
    detach: bool = False
    poll_s: float = POLL_S

    def __post_init__(self) -> None:
        for flag, value, least in (("--slurm-gpus-per-cell", self.gpus_per_cell, 0),
                                   ("--slurm-cpus-per-cell", self.cpus_per_cell, 1),
                                   ("--slurm-array-parallelism", self.array_parallelism, 1),
                                   ("--slurm-time", self.time_min, 1)):
            if not isinstance(value, int) or isinstance(value, bool) or value < least:
                raise ConfigError(f"{flag} must be an integer >= {least}; got {value!r}")

    def parameters(self, job_name: str) -> dict[str, Any]:
        """submitit's ``SlurmExecutor.update_parameters`` keywords."""
        parameters: dict[str, Any] = {"job_name": job_name, "time": self.time_min, "cpus_per_task": self.cpus_per_cell,
                                      "array_parallelism": self.array_parallelism}
        if self.partition:
            parameters["partition"] = self.partition
        if self.gpus_per_cell:
            parameters["gpus_per_node"] = self.gpus_per_cell
        if self.sbatch:
            parameters["additional_parameters"] = dict(self.sbatch)
        return parameters


def parse_time(text: str, flag: str = "--slurm-time") -> int:
    """Slurm's ``--time`` (``90``, ``1:30:00``, ``2-00``, ``1-12:00``) in whole minutes (rounded up)."""
    match = re.fullmatch(r"(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?", str(text).strip())
    if not match:
        raise ConfigError(f"{flag}: {text!r} is not a time limit; use {TIME_FORMATS}")
    days, first, second, third = (int(part) if part else None for part in match.groups())
    if days is None and second is None:  # MINUTES
        seconds = first * 60
    elif days is None and third is None:  # MINUTES:SECONDS
        seconds = first * 60 + second
    elif days is None:  # HOURS:MINUTES:SECONDS
        seconds = first * 3600 + second * 60 + third
    else:  # DAYS-HOURS[:MINUTES[:SECONDS]]
        seconds = days * 86400 + first * 3600 + (second or 0) * 60 + (third or 0)
    if seconds <= 0:
        raise ConfigError(f"{flag}: {text!r} is no time at all; use {TIME_FORMATS}")
    return -(-seconds // 60)


def parse_sbatch(options: Sequence[str], flag: str = "--slurm-sbatch") -> dict[str, Any]:
    """``KEY=VALUE`` (or a bare ``KEY`` for a switch such as ``exclusive``), leading dashes allowed, as
    submitit's ``additional_parameters``: ``["--account=lab", "qos=high", "exclusive"]``."""
    parsed: dict[str, Any] = {}
    for option in options:
        key, equals, value = option.lstrip("-").partition("=")
        if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_-]*", key):
            raise ConfigError(f"{flag}: {option!r} is not an sbatch option; use KEY=VALUE (e.g. account=mylab, "
                              "--qos=high) or a bare switch (exclusive)")
        parsed[key.replace("-", "_")] = value if equals else True
    return parsed


def in_queue(job_id: str) -> bool:
    """Whether Slurm's queue holds the task ``job_id`` (pending, running or just ended); True when
    ``squeue`` cannot tell (the task is watched rather than submitted again)."""
    array = job_id.split("_")[0]
    try:
        listed = subprocess.run(["squeue", "-h", "-r", "-j", array, "-o", "%i"], capture_output=True, text=True,
                                timeout=60)
    except (OSError, subprocess.SubprocessError):
        return True
    if listed.returncode != 0:
        return "Invalid job id" not in listed.stderr  # an id squeue no longer knows: not queued
    return job_id in listed.stdout.split()


class CellTask:
    """One array task: one cell, under its lease (:func:`crlbench.suites.cell_task.run_leased_cell`).
    Checkpointable: submitit requeues it when it is preempted or times out, and it resumes."""

    def __call__(self, cell: Cell, workdir: str, since: float) -> dict[str, Any]:
        import submitit

        from crlbench.suites.cell_task import run_leased_cell

        logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s")
        task_id = submitit.JobEnvironment().job_id
        ran_on = placement("slurm", task_id, restarts=int(os.environ.get("SLURM_RESTART_COUNT") or 0))
        return run_leased_cell(cell, workdir, ran_on=ran_on, invocation=f"slurm-{task_id}", since=since,
                               supersedes=True)

    def checkpoint(self, *args: Any, **kwargs: Any) -> Any:
        import submitit

        return submitit.helpers.DelayedSubmission(self, *args, **kwargs)  # the same cell: it resumes from its checkpoint


@dataclass
class _Task:
    cell: Cell
    job: Any  # submitit.SlurmJob
    since: float  # time.time() at submission


class SlurmExecutor:
    """Cells as one submitit job array; waits for them (a progress bar of cells), or with ``detach``
    returns once they are submitted."""

    name = "slurm"
    leases_in_tasks = True
    one_at_a_time = False

    def __init__(self, options: SlurmOptions) -> None:
        require("slurm")
        if shutil.which("sbatch") is None or shutil.which("srun") is None:
            raise ConfigError("--executor slurm: Slurm's sbatch and srun are not on PATH; run crlbench on a machine "
                              "that submits to your Slurm cluster (a login node)")
        self.options = options
        self.detach = options.detach

    def run(self, cells: Sequence[Cell], workdir: Path, *, on_result: ResultHook, progress: bool = True,
            fences: Mapping[str, Any] | None = None) -> None:  # noqa: ARG002 - its tasks take their own leases
        workdir = Path(workdir).resolve()  # the tasks run elsewhere
        tasks, fresh = [], []
        for cell in cells:
            task = self._reattach(cell, workdir)
            if task is None:
                fresh.append(cell)
            else:
                tasks.append(task)
        if tasks:
            log.warning("Slurm: %d cell(s) already submitted (%s): watching those tasks instead of submitting again",
                        len(tasks), ", ".join(sorted({task.job.job_id.split('_')[0] for task in tasks})))
        if fresh:
            tasks += self._submit(fresh, workdir)
        if self.detach:
            self._collect(tasks, workdir, on_result, wait=False, progress=False)
        else:
            self._collect(tasks, workdir, on_result, wait=True, progress=progress)

    def _submit(self, cells: Sequence[Cell], workdir: Path) -> list[_Task]:
        import submitit

        stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        folder = workdir / SUBMISSIONS / f"{stamp}-{uuid.uuid4().hex[:8]}"
        executor = submitit.SlurmExecutor(folder=folder)
        executor.update_parameters(**self.options.parameters(f"crlbench-{cells[0].suite}"))
        since = time.time()
        try:
            jobs = executor.map_array(CellTask(), list(cells), [str(workdir)] * len(cells), [since] * len(cells))
        except submitit.core.utils.FailedJobError as error:  # sbatch refused: options, partition, no controller
            lines = [line.strip() for line in str(error).splitlines() if line.strip()]
            raise ConfigError(f"--executor slurm: sbatch refused the job array: {' / '.join(lines[-3:])} (its "
                              f"script: {folder})") from error
        tasks = []
        for cell, job in zip(cells, jobs):
            write_json(cell_dir(workdir, cell.hash) / POINTER,
                       {"job_id": job.job_id, "folder": str(folder), "submitted_at": since})
            tasks.append(_Task(cell, job, since))
        array = jobs[0].job_id.split("_")[0] if jobs else "?"
        log.warning("Slurm: submitted %d cell(s) as job array %s (logs in %s)", len(cells), array, folder)
        return tasks

    def _reattach(self, cell: Cell, workdir: Path) -> _Task | None:
        """The task an earlier submission gave ``cell``, when its outcome is not collected yet."""
        path = cell_dir(workdir, cell.hash) / POINTER
        try:
            pointer = read_json(path)
            job_id, folder, since = str(pointer["job_id"]), Path(pointer["folder"]), float(pointer["submitted_at"])
        except (OSError, ValueError, KeyError, TypeError):
            return None
        if not folder.is_dir() or written_since(cell, workdir, since) is not None:  # collected already
            path.unlink(missing_ok=True)
            return None
        import submitit

        job = submitit.SlurmJob(folder=folder, job_id=job_id)
        if not job.paths.result_pickle.exists() and not in_queue(job_id):
            job.watcher.update()
            if job.state == "UNKNOWN":  # Slurm has forgotten it (another cluster's state, or purged accounting)
                log.warning("cell %s: Slurm knows no task %s (submitted from %s); submitting the cell again",
                            cell.title, job_id, folder)
                path.unlink(missing_ok=True)
                return None
        return _Task(cell, job, since)

    def _collect(self, tasks: list[_Task], workdir: Path, on_result: ResultHook, *, wait: bool, progress: bool) -> None:
        """Report each finished task's outcome; with ``wait``, until every task has finished."""
        import submitit
        from tqdm.auto import tqdm

        bar = tqdm(total=len(tasks), desc="cells (Slurm)", unit="cell", disable=None if progress else True)
        pending = list(tasks)
        try:
            while pending:
                submitit.SlurmJob.watcher.update()  # one sacct call for every array watched
                for task in list(pending):
                    if not task.job.done():
                        continue
                    pending.remove(task)
                    outcome = self._outcome(task, workdir)
                    (cell_dir(workdir, task.cell.hash) / POINTER).unlink(missing_ok=True)
                    on_result(outcome)
                    bar.update(1)
                states = Counter(task.job.state.split()[0].lower() for task in pending)
                bar.set_postfix_str(", ".join(f"{count} {state}" for state, count in sorted(states.items())),
                                    refresh=True)
                if not wait:
                    return
                if pending:
                    time.sleep(self.options.poll_s)
        finally:
            bar.close()

    def _outcome(self, task: _Task, workdir: Path) -> dict[str, Any]:
        """The task's record (or ``skipped``); a failed record when it ended without one."""
        try:
            return task.job.result()
        except Exception as error:  # noqa: BLE001 - UncompletedJobError, FailedJobError: the cell failed
            record = written_since(task.cell, workdir, task.since)  # it wrote its record, then died
            if record is not None:
                return record
            state = task.job.state
            first = next((line for line in str(error).splitlines() if line.strip()), type(error).__name__)
            log.warning("cell %s failed: Slurm task %s ended %s without a result", task.cell.title, task.job.job_id,
                        state)
            return failed_record(task.cell, workdir, "SlurmTaskFailed",
                                 f"Slurm job array task {task.job.job_id} ended {state} without a result (cancelled, "
                                 f"killed, out of memory or out of time): {first}; its log: {task.job.paths.stderr}. "
                                 "Run again with --retry-failed to submit it again",
                                 {"executor": "slurm", "host": task.job.get_info(mode="cache").get("NodeList"),
                                  "task_id": task.job.job_id, "state": state})
