"""MLflow tracking: one experiment per suite, one parent run per invocation, one child run per cell.

Cells run in worker processes or cluster tasks (Slurm, Ray) that never talk to MLflow. The main process
(the launcher) logs each cell after it finishes, from its result record and cell folder (``crlbench.suites.results``), so a SQLite store has a single
writer. The result files stay the source of truth: an MLflow error while logging a cell is a
warning, never a failed suite.

What a cell's child run holds (named ``<dataset>/<label>/seed<seed>``):

- params: ``dataset``, ``model``, ``label``, ``seed``, ``suite``, ``budget.<field>``,
  ``hp.<hyperparameter>``, ``data.<dataset parameter>`` (nested values flattened with ``.``; every
  resolved value, not only the suite's overrides);
- metrics: ``train/<loss term>`` per epoch (``step`` = epoch, counted from 1 as the trainer does),
  ``val/<score>`` for each reading of the validation sample during training (the history's
  ``evaluations``; ``step`` = training step; kept out of ``train/``), every final score under :func:`metric_name` of its key, and ``time/<timing>`` in seconds
  (``time/metrics_s/<variant>`` for the per-metric times);
- tags: ``crlbench.cell_hash``, ``crlbench.status``, ``crlbench.suite``, :func:`provenance_tags`
  (git commit, host, ``crlbench.lib.<library>`` versions), where the cell ran
  (``crlbench.ran_on.executor``, ``.host``, ``.task_id``: the record's ``ran_on``), and for a failed cell
  ``crlbench.error`` (``Type: message``) with the traceback as the run's description;
- artefacts: ``result.json``, ``history.json``, ``metrics/*.json``, ``metrics/*.npz``,
  ``interventions.npz`` and any ``*.png`` (never ``checkpoint/`` or ``latents.npz``);
- images MLflow shows: ``interventions.png``, the intervention grid drawn from ``interventions.npz``
  (as the report draws it), and it and every ``*.png`` also as a keyed image (``log_image(key=...)``,
  step 0: the image charts of the run and of the experiment's runs side by side).

``hp.*`` holds every hyperparameter as the cell resolved it (the model's defaults with the suite's
overrides on top, from the record's ``cell.identity``), ``data.*`` likewise; the tag
``crlbench.hp_overrides`` says which the suite set. Runs carry MLflow's standard tags beside
crlbench's own (:func:`source_tags`): ``mlflow.source.name`` (the suite config),
``mlflow.source.type``, ``mlflow.source.git.commit`` and ``mlflow.user``, so the UI's Source and
User columns and filters work; run names (``mlflow.runName``) are ``<suite>-<UTC time>`` and
``<dataset>/<label>/seed<seed>``.

Score names: every character MLflow refuses in a metric name, ``@`` included, becomes ``_``:
``dci@reg.disentanglement`` is logged as ``dci_reg.disentanglement`` (:mod:`crlbench.tracking.entities`).

Exactly once: every run is born with its invocation's tags (``crlbench.invocation``,
``crlbench.invocation.host``, ``.pid``, ``.boot_id``, ``.pid_namespace`` and ``crlbench.workdir``),
so a later invocation can tell a live run from one whose invocation died: :func:`close_dead_runs`
ends the latter KILLED. A cell's record is logged once per experiment: its child run carries
``crlbench.finished_at`` (which record it holds), and once the run is complete the cell folder's
``mlflow.json`` says so (:func:`logged_run`), so a rerun opens MLflow only when a record is not
yet logged. A half-logged run (its invocation killed mid-way) is closed KILLED and the record is
logged again.

A new SQLite store's tables are created under a file lock (``mlflow.db.lock``), so launchers
started together on a fresh work directory do not race MLflow's migrations.

With a SQLite store the artefacts live beside the database, in ``<store folder>/mlartifacts``,
rather than in MLflow's default ``./mlruns`` of whatever directory the suite was started from.

This module owns the suite's record (:class:`SuiteTracker`) and the hook a suite is given to log to MLflow
(:class:`MlflowTracking`, :mod:`crlbench.suites.tracking_hook`). The rest lives beside it, and every public
name is re-exported here: the store, its URI and its check (:mod:`crlbench.tracking.store`), values as MLflow
takes them (:mod:`crlbench.tracking.entities`), one cell as a run (:mod:`crlbench.tracking.cell_runs`), and
exactly-once logging (:mod:`crlbench.tracking.exactly_once`).

Importing this module does not import mlflow (seconds); it loads on first use.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import crlbench
from crlbench.suites.lease import Holder
from crlbench.suites.provenance import provenance
from crlbench.suites.suite_config import SuiteConfig
from crlbench.tracking.cell_runs import (CELL_FILES, CELL_FOLDERS_SKIPPED, INTERVENTION_IMAGE, TAG_FINISHED,
                                         cell_metrics, cell_params, cell_tags, cell_times, cell_title,
                                         intervention_image, log_cell_files, run_status)
from crlbench.tracking.entities import (PARAM_LIMIT, TAG_LIMIT, TAG_TRACKING_ERROR, log_batch, mark_broken,
                                        metric_entities, metric_name, now_ms, provenance_tags, source_tags,
                                        tag_entities)
from crlbench.tracking.exactly_once import (MARKER, TAG_INVOCATION, TAG_WORKDIR, close_dead_runs, dead_invocation,
                                            find_logged_run, invocation_tags, logged_run, mark_logged, unlogged)
from crlbench.tracking.store import (ARTIFACTS, CHECK_TIMEOUT_S, DATABASE, SCHEMES, SQL_PORTS, WRITE_PROBE,
                                     TrackingUnavailable, check_tracking, default_tracking_uri, experiment_id,
                                     first_line, mlflow_client, redacted, url_scheme, ui_command)

if TYPE_CHECKING:
    from mlflow import MlflowClient

__all__ = [
    "ARTIFACTS", "CELL_FILES", "CELL_FOLDERS_SKIPPED", "CHECK_TIMEOUT_S", "DATABASE", "INTERVENTION_IMAGE", "MARKER",
    "PARAM_LIMIT", "SCHEMES", "SQL_PORTS", "TAG_FINISHED", "TAG_INVOCATION", "TAG_LIMIT", "TAG_TRACKING_ERROR",
    "TAG_WORKDIR", "WRITE_PROBE", "MlflowTracking", "SuiteTracker", "TrackingUnavailable", "check_tracking",
    "close_dead_runs", "dead_invocation", "default_tracking_uri", "experiment_id", "find_logged_run",
    "intervention_image", "invocation_tags", "logged_run", "mark_logged", "metric_name", "provenance_tags",
    "source_tags", "ui_command", "unlogged"]

log = logging.getLogger(__name__)


class SuiteTracker:
    """The MLflow record of one suite invocation, as a context manager.

    ``with SuiteTracker(uri, "quick", config, "configs/suites/quick.yaml", tags) as tracker:`` uses
    the experiment ``crlbench/<suite_name>`` (created when missing, restored when deleted), starts
    a parent run ``<suite_name>-<UTC time>`` tagged with ``tags`` and the crlbench version, and
    logs the suite config (``suite.json``, and the file at ``config_path`` under ``config/``).
    Call :meth:`log_cell` for each finished cell and :meth:`finish` with the counts. Leaving the
    block ends the parent run FINISHED, or FAILED if an exception escaped (KILLED on Ctrl-C).

    ``artifact_location`` sets where a new experiment keeps artefacts; the default is
    ``<store folder>/mlartifacts/crlbench-<suite>`` for SQLite and the server's choice otherwise.
    ``invocation`` (a :class:`crlbench.suites.lease.Holder`, this process by default) and ``workdir`` tag
    every run, for :func:`close_dead_runs`.
    """

    def __init__(self, uri: str, suite_name: str, config: Mapping[str, Any], config_path: str | os.PathLike | None = None,
                 tags: Mapping[str, Any] | None = None, artifact_location: str | None = None,
                 invocation: Holder | None = None, workdir: str | os.PathLike | None = None) -> None:
        self.invocation = invocation or Holder.current()
        self.workdir = Path(workdir).resolve() if workdir is not None else None
        self.uri = uri
        self.suite_name = suite_name
        self.config = config
        self.config_path = Path(config_path) if config_path is not None else None
        self.tags = dict(tags or {})
        self.artifact_location = artifact_location
        self.experiment_name = f"crlbench/{suite_name}"
        self.experiment_id: str | None = None
        self.parent_run_id: str | None = None
        self._client: MlflowClient | None = None

    def __enter__(self) -> SuiteTracker:
        try:
            self._client = mlflow_client(self.uri)
            self.experiment_id = self._experiment()
            self._start_parent()
        except Exception as error:  # noqa: BLE001 - reported as the user's URI being unusable
            mark_broken(self._client, self.parent_run_id, error)
            raise TrackingUnavailable(
                f"tracking URI {redacted(self.uri)!r}: cannot start the suite's run: {first_line(error)}") from error
        log.info("MLflow: experiment %s, run %s%s", self.experiment_name, self.parent_run_id, self._link())
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        status = "FINISHED" if exc_type is None else "KILLED" if issubclass(exc_type, KeyboardInterrupt) else "FAILED"
        try:
            self._require().set_terminated(self.parent_run_id, status=status)
        except Exception as error:  # noqa: BLE001 - never mask the suite's own outcome
            log.warning("MLflow: could not end run %s as %s: %s", self.parent_run_id, status, first_line(error))

    def log_cell(self, record: Mapping[str, Any], cell_dir: str | os.PathLike) -> str | None:
        """Log a finished cell as a child run; its id, or None (and a warning) if MLflow failed."""
        client, cell = self._require(), record.get("cell") or {}
        title = cell_title(cell)
        run_id = None
        try:
            start_ms, end_ms = cell_times(record)
            run = client.create_run(self.experiment_id, start_time=start_ms, run_name=title,
                                    tags={"mlflow.parentRunId": self.parent_run_id, **self.invocation_tags(),
                                          **self.source_tags((record.get("provenance") or {}).get("git_commit"))})
            run_id = run.info.run_id
            log_batch(client, run_id, metrics=cell_metrics(record, end_ms), params=cell_params(cell),
                      tags=cell_tags(record))
            log_cell_files(client, run_id, record, Path(cell_dir))
            client.set_terminated(run_id, status=run_status(record), end_time=end_ms)
        except Exception as error:  # noqa: BLE001 - the result files are the source of truth
            log.warning("MLflow: could not log cell %s (%s): %s", title, record.get("hash"), first_line(error))
            mark_broken(client, run_id, error)
            return None
        return run_id

    def log_cell_once(self, record: Mapping[str, Any], cell_dir: str | os.PathLike) -> str | None:
        """Log ``record`` unless the experiment already holds a complete run of it; the run's id (None
        when MLflow failed). The caller holds the cell's lease, so no other launcher logs it meanwhile."""
        return self.log_cell_if_new(record, cell_dir)[0]

    def log_cell_if_new(self, record: Mapping[str, Any], cell_dir: str | os.PathLike) -> tuple[str | None, bool]:
        """:meth:`log_cell_once`, and whether this call created the run (False when ``mlflow.json`` or the
        experiment already held it, as when another ``--ingest`` logged it first: counted by that one)."""
        folder = Path(cell_dir)
        run_id = logged_run(folder, self.uri, self.experiment_name, record)
        if run_id is None:
            run_id = find_logged_run(self._require(), self.experiment_id, record)
        created = False
        if run_id is None:
            run_id = self.log_cell(record, folder)
            created = run_id is not None
        if run_id is not None:
            mark_logged(folder, self.uri, self.experiment_name, record, run_id)
        return run_id, created

    def invocation_tags(self) -> dict[str, str]:
        """The tags that tell whether this run's invocation still lives (:func:`close_dead_runs`)."""
        return invocation_tags(self.invocation, self.workdir)

    def source_tags(self, git_commit: str | None) -> dict[str, str]:
        """MLflow's source tags (:func:`source_tags`): the suite config, else ``crlbench/<suite>``."""
        return source_tags(self.config_path if self.config_path is not None else f"crlbench/{self.suite_name}",
                           git_commit)

    def finish(self, ok: int, failed: int, cached: int, elsewhere: int = 0, not_applicable: int = 0) -> None:
        """Log the parent run's cell counts (``cells_ok``, ``cells_failed``, ``cells_cached``,
        ``cells_elsewhere``: finished meanwhile by other launchers, and ``cells_not_applicable``)."""
        counts = {"cells_ok": ok, "cells_failed": failed, "cells_cached": cached, "cells_elsewhere": elsewhere,
                  "cells_not_applicable": not_applicable}
        try:
            log_batch(self._require(), self.parent_run_id, metrics=metric_entities(counts, now_ms()))
        except Exception as error:  # noqa: BLE001 - the summary is also printed and stored in files
            log.warning("MLflow: could not log the suite's cell counts: %s", first_line(error))

    def _link(self) -> str:
        if url_scheme(self.uri) not in ("http", "https"):
            return ""
        return f" at {redacted(self.uri).rstrip('/')}/#/experiments/{self.experiment_id}/runs/{self.parent_run_id}"

    def _require(self) -> MlflowClient:
        if self._client is None or self.parent_run_id is None:
            raise RuntimeError("SuiteTracker is used outside its `with` block")
        return self._client

    def _experiment(self) -> str:
        return experiment_id(self._client, self.uri, self.experiment_name, f"crlbench-{self.suite_name}",
                             self.artifact_location)

    def _start_parent(self) -> None:
        client = self._client
        stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        tags = {"crlbench.version": crlbench.__version__, "crlbench.suite": self.suite_name, **self.tags}
        if self.config_path is not None:
            tags["crlbench.config_path"] = str(self.config_path)
        run = client.create_run(self.experiment_id, run_name=f"{self.suite_name}-{stamp}",
                                tags={**self.source_tags(self.tags.get("crlbench.git_commit")),
                                      **self.invocation_tags()})  # born with them: never mistaken for a dead one
        run_id = self.parent_run_id = run.info.run_id
        log_batch(client, run_id, tags=tag_entities(tags))
        client.log_text(run_id, json.dumps(self.config, indent=1, default=str), "suite.json")
        if self.config_path is not None and self.config_path.is_file():
            client.log_artifact(run_id, str(self.config_path), "config")


class MlflowTracking:
    """The tracking hook (:class:`crlbench.suites.tracking_hook.SuiteTracking`) that logs a suite to the MLflow
    store at ``uri``: ``run_suite(config, workdir, tracking=MlflowTracking(uri))``. The suite's experiment is
    ``crlbench/<suite>``; each invocation is a :class:`SuiteTracker` (its parent run, tagged with this
    process's provenance), each landed cell a child run."""

    def __init__(self, uri: str) -> None:
        self.uri = uri

    @staticmethod
    def experiment(suite: str) -> str:
        return f"crlbench/{suite}"

    def not_noted(self, suite: str, finished: Sequence[tuple[Mapping[str, Any], Path]]) -> list:
        """Of finished ``(record, cell folder)`` pairs, those whose ``mlflow.json`` does not note them (no MLflow call)."""
        name = self.experiment(suite)
        return [(record, folder) for record, folder in finished if logged_run(folder, self.uri, name, record) is None]

    def check(self) -> None:
        check_tracking(self.uri)

    def close_dead_runs(self, suite: str, me: Holder, workdir: Path) -> None:
        close_dead_runs(self.uri, self.experiment(suite), me, workdir)

    def unlogged(self, suite: str, finished: Sequence[tuple[Mapping[str, Any], Path]]) -> list:
        return unlogged(self.uri, self.experiment(suite), finished)

    def open(self, config: SuiteConfig, me: Holder, workdir: Path) -> SuiteTracker:
        return SuiteTracker(self.uri, config.name, config=config.to_dict(), config_path=config.source,
                            tags=provenance_tags(provenance()), invocation=me, workdir=workdir)
