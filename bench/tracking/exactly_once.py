"""Each cell's record logged once per experiment, whatever dies when.

Every run is born with its invocation's tags (:func:`invocation_tags`: ``crlbench.invocation``,
``crlbench.invocation.host``, ``.pid``, ``.boot_id``, ``.pid_namespace`` and ``crlbench.workdir``), so a later
invocation can tell a live run from one whose invocation died (:func:`dead_invocation`):
:func:`close_dead_runs` ends the latter KILLED. A cell's child run carries ``crlbench.finished_at`` (which
record it holds), and once the run is complete the cell folder's ``mlflow.json`` says so
(:func:`mark_logged`, read by :func:`logged_run` without any MLflow call), so a rerun opens MLflow only when a
record is not yet logged; a complete run logged before the note is found in MLflow (:func:`find_logged_run`,
:func:`unlogged`). A half-logged run (its invocation killed mid-way) is closed KILLED and the record is logged
again.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from crlbench.suites.lease import Holder, invocation_lease, lease_state, stale_reason
from crlbench.suites.results import read_json, write_json
from crlbench.tracking.cell_runs import TAG_FINISHED, cell_times, run_status
from crlbench.tracking.entities import TAG_TRACKING_ERROR, clip
from crlbench.tracking.store import first_line, mlflow_client, redacted

if TYPE_CHECKING:
    from mlflow import MlflowClient

log = logging.getLogger(__name__)

MARKER = "mlflow.json"  # in a cell folder: the runs that hold its record, per tracking URI and experiment
TAG_INVOCATION = "crlbench.invocation"
TAG_WORKDIR = "crlbench.workdir"
_SEARCH_PAGE = 1000


def invocation_tags(invocation: Holder, workdir: Path | None = None) -> dict[str, str]:
    """The tags every run of ``invocation`` is born with, which tell a later invocation whether it still lives."""
    tags = {TAG_INVOCATION: invocation.invocation, f"{TAG_INVOCATION}.host": invocation.host,
            f"{TAG_INVOCATION}.pid": str(invocation.pid), f"{TAG_INVOCATION}.started_at": invocation.started_at,
            f"{TAG_INVOCATION}.boot_id": invocation.boot_id, f"{TAG_INVOCATION}.pid_namespace": invocation.pid_namespace,
            TAG_WORKDIR: str(workdir) if workdir is not None else None}
    return {key: value for key, value in tags.items() if value is not None}


def dead_invocation(tags: Mapping[str, str], me: Holder, workdir: Path | None = None) -> str | None:
    """Why the invocation that started a run (from its tags) is dead, or None when it may live.

    A run of this work directory is alive while its invocation's lease
    (``<workdir>/invocations/<id>.json``) is; a run of another work directory on this machine while
    its process runs; a run from another machine and work directory cannot be judged and is left
    alone. A run without invocation tags comes from a crlbench before them, and is taken as dead.
    """
    invocation = tags.get(TAG_INVOCATION)
    if not invocation:
        return "it has no invocation tags (a crlbench from before them started it)"
    if invocation == me.invocation:
        return None
    if workdir is not None and tags.get(TAG_WORKDIR) == str(workdir):
        state = lease_state(invocation_lease(workdir, invocation))
        return f"its invocation {invocation} has ended" if state is None else state.stale
    try:
        pid = int(tags.get(f"{TAG_INVOCATION}.pid", "-1"))
    except ValueError:
        pid = -1
    holder = Holder(invocation, tags.get(f"{TAG_INVOCATION}.host", "?"), pid,
                    tags.get(f"{TAG_INVOCATION}.started_at", "?"), tags.get(f"{TAG_INVOCATION}.boot_id"),
                    tags.get(f"{TAG_INVOCATION}.pid_namespace"))
    return stale_reason(holder, me=me)


def close_dead_runs(uri: str, experiment_name: str, me: Holder, workdir: str | os.PathLike | None = None) -> list[str]:
    """End KILLED every RUNNING run of ``experiment_name`` whose invocation is dead; their ids.

    Tags each with ``crlbench.closed_by`` (this invocation and why) and logs a warning naming it."""
    workdir = Path(workdir).resolve() if workdir is not None else None
    client = mlflow_client(uri)
    experiment = client.get_experiment_by_name(experiment_name)
    if experiment is None:
        return []
    closed = []
    for run in _search(client, experiment.experiment_id, "attributes.status = 'RUNNING'"):
        reason = dead_invocation(run.data.tags, me, workdir)
        if reason is None:
            continue
        name = run.data.tags.get("mlflow.runName", run.info.run_id)
        try:
            client.set_tag(run.info.run_id, "crlbench.closed_by", clip(f"{me.invocation}: {reason}", keep="head"))
            client.set_terminated(run.info.run_id, status="KILLED")
        except Exception as error:  # noqa: BLE001 - a later rerun tries again
            log.warning("MLflow: could not close run %s (%s): %s", name, run.info.run_id, first_line(error))
            continue
        log.warning("MLflow: closed run %s (%s) as KILLED: %s", name, run.info.run_id, reason)
        closed.append(run.info.run_id)
    return closed


def logged_run(cell_dir: str | os.PathLike, uri: str, experiment_name: str, record: Mapping[str, Any]) -> str | None:
    """The run that holds ``record`` in ``experiment_name`` at ``uri``, as the cell folder's
    ``mlflow.json`` says (no MLflow call), or None."""
    for entry in _marker_entries(Path(cell_dir)):
        if (entry.get("tracking_uri"), entry.get("experiment"), entry.get("finished_at")) == \
                (redacted(uri), experiment_name, _finished_at(record)):
            return entry.get("run_id")
    return None


def mark_logged(cell_dir: str | os.PathLike, uri: str, experiment_name: str, record: Mapping[str, Any],
                run_id: str) -> None:
    """Note in the cell folder's ``mlflow.json`` that ``run_id`` holds ``record`` (a warning if it cannot)."""
    folder = Path(cell_dir)
    entries = [entry for entry in _marker_entries(folder)
               if (entry.get("tracking_uri"), entry.get("experiment")) != (redacted(uri), experiment_name)]
    entries.append({"tracking_uri": redacted(uri), "experiment": experiment_name, "run_id": run_id,
                    "finished_at": _finished_at(record)})
    try:
        write_json(folder / MARKER, {"runs": entries})
    except OSError as error:
        log.warning("MLflow: could not note in %s that run %s holds the cell: %s", folder / MARKER, run_id, error)


def find_logged_run(client: MlflowClient, experiment_id: str, record: Mapping[str, Any]) -> str | None:
    """A complete run of ``record`` in the experiment: tagged with its hash and finishing time (or,
    logged before that tag, ending when it finished), ended FINISHED or FAILED as the record did,
    without a tracking error. None when there is none, or MLflow cannot be searched."""
    cell_hash, finished = record.get("hash"), _finished_at(record)
    status = run_status(record)
    _, end_ms = cell_times(record)
    try:
        runs = _search(client, experiment_id, f"tags.`crlbench.cell_hash` = '{cell_hash}'")
    except Exception as error:  # noqa: BLE001 - then it is logged (again)
        log.warning("MLflow: could not search the runs of cell %s: %s", cell_hash, first_line(error))
        return None
    for run in runs:
        tags = run.data.tags
        same = tags.get(TAG_FINISHED) == finished if TAG_FINISHED in tags else run.info.end_time == end_ms
        if same and run.info.status == status and TAG_TRACKING_ERROR not in tags:
            return run.info.run_id
    return None


def unlogged(uri: str, experiment_name: str, cells: Sequence[tuple[Mapping[str, Any], Path]]) -> list[tuple[Mapping[str, Any], Path]]:
    """Of ``(record, cell folder)`` pairs, those the experiment holds no complete run of; a complete
    run found in MLflow (logged before ``mlflow.json`` existed, or by an invocation killed before
    noting it) is noted in the folder instead. Opens MLflow only when a folder has no note."""
    missing = [(record, folder) for record, folder in cells if logged_run(folder, uri, experiment_name, record) is None]
    if not missing:
        return []
    client = mlflow_client(uri)
    experiment = client.get_experiment_by_name(experiment_name)
    if experiment is None:
        return missing
    left = []
    for record, folder in missing:
        run_id = find_logged_run(client, experiment.experiment_id, record)
        if run_id is None:
            left.append((record, folder))
        else:
            mark_logged(folder, uri, experiment_name, record, run_id)
    return left


def _marker_entries(folder: Path) -> list[dict[str, Any]]:
    try:
        entries = read_json(folder / MARKER).get("runs")
    except FileNotFoundError:
        return []
    except (OSError, ValueError, AttributeError) as error:
        log.warning("MLflow: ignoring the unreadable %s: %s", folder / MARKER, error)
        return []
    return [entry for entry in entries if isinstance(entry, dict)] if isinstance(entries, list) else []


def _finished_at(record: Mapping[str, Any]) -> str | None:
    return (record.get("provenance") or {}).get("finished_at")


def _search(client: MlflowClient, experiment_id: str, query: str) -> list:
    runs, token = [], None
    while True:
        page = client.search_runs([experiment_id], query, max_results=_SEARCH_PAGE, page_token=token)
        runs.extend(page)
        token = page.token
        if not token:
            return runs
