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

Score names: MLflow 3.17 accepts metric names made of alphanumerics, ``_ - . / space`` (and ``:``
outside Windows). Metric variants are named like ``dci@reg``, so every other character, ``@``
included, becomes ``_``: ``dci@reg.disentanglement`` is logged as ``dci_reg.disentanglement``.

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

Importing this module does not import mlflow (seconds); it loads on first use.
"""

from __future__ import annotations

import contextlib
import datetime
import getpass
import json
import logging
import numbers
import os
import re
import socket
import sqlite3
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import crlbench
from crlbench.core.errors import ConfigError, accepted
from crlbench.core.files import file_lock
from crlbench.suites.lease import Holder, invocation_lease, lease_state, stale_reason
from crlbench.suites.results import RESULT, read_json, write_json

if TYPE_CHECKING:
    from mlflow import MlflowClient

log = logging.getLogger(__name__)

DATABASE = "mlflow.db"
ARTIFACTS = "mlartifacts"
WRITE_PROBE = "crlbench_write_probe"  # a table created and rolled back to prove the tracking database is writable
CHECK_TIMEOUT_S = 5
TAG_LIMIT = 8000  # MLflow's MAX_TAG_VAL_LENGTH
PARAM_LIMIT = 6000  # MLflow's MAX_PARAM_VAL_LENGTH
SQL_PORTS = {"postgresql": 5432, "mysql": 3306, "mssql": 1433}
SCHEMES = ("sqlite", "http", "https", *SQL_PORTS)
CELL_FILES = ("history.json", "interventions.npz")
INTERVENTION_IMAGE = "interventions.png"  # the cell's intervention grid, drawn from interventions.npz
CELL_FOLDERS_SKIPPED = ("checkpoint",)
_NOT_IN_NAMES = re.compile(r"[^\w./\- ]")  # MLflow's allowed name characters, less the colon (Windows)
_BATCH = {"metrics": 1000, "params": 100, "tags": 100}  # MLflow's log_batch limits
MARKER = "mlflow.json"  # in a cell folder: the runs that hold its record, per tracking URI and experiment
TAG_INVOCATION = "crlbench.invocation"
TAG_WORKDIR = "crlbench.workdir"
TAG_FINISHED = "crlbench.finished_at"
TAG_TRACKING_ERROR = "crlbench.tracking_error"
_SEARCH_PAGE = 1000


class TrackingUnavailable(ConfigError):
    """The MLflow tracking URI cannot be used: refused, unreachable or not writable."""


def default_tracking_uri(workdir: str | os.PathLike) -> str:
    """``sqlite:///<absolute workdir>/mlflow.db``, creating the work directory."""
    folder = Path(workdir).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    return _sqlite_uri(folder)


def ui_command(workdir: str | os.PathLike, port: int = 5000) -> list[str]:
    """The argv that starts the MLflow UI on 127.0.0.1:``port`` for ``workdir``'s SQLite store."""
    folder = Path(workdir).resolve()
    return [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", _sqlite_uri(folder),
            "--artifacts-destination", str(folder / ARTIFACTS),
            "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]


def metric_name(key: str) -> str:
    """The MLflow metric name of a score key: characters MLflow refuses (``@``) become ``_``."""
    return _NOT_IN_NAMES.sub("_", key)


def provenance_tags(provenance: Mapping[str, Any]) -> dict[str, str]:
    """Run tags from a result record's ``provenance``: git commit, host and library versions."""
    tags = {f"crlbench.lib.{name}": str(version) for name, version in (provenance.get("versions") or {}).items()}
    for key in ("git_commit", "host"):
        if provenance.get(key) is not None:
            tags[f"crlbench.{key}"] = str(provenance[key])
    return tags


def source_tags(source_name: str | None, git_commit: str | None = None) -> dict[str, str]:
    """MLflow's standard source tags, which its UI shows in the runs table's Source and User columns and
    filters on: ``mlflow.source.name`` (the suite or tune config, else ``crlbench``), ``mlflow.source.type``
    (``LOCAL``), ``mlflow.source.git.commit`` (when known) and ``mlflow.user`` (the user running crlbench).
    A run is created with them (MLflow reads the user only then)."""
    tags = {"mlflow.source.name": str(source_name or "crlbench"), "mlflow.source.type": "LOCAL"}
    if git_commit:
        tags["mlflow.source.git.commit"] = str(git_commit)
    with contextlib.suppress(Exception):  # no user name (a container without /etc/passwd entry): MLflow's default
        tags["mlflow.user"] = getpass.getuser()
    return tags


def check_tracking(uri: str, timeout_s: float = CHECK_TIMEOUT_S) -> None:
    """Fail fast, before any training, when MLflow cannot track to ``uri``.

    Accepts ``sqlite:///path``, ``http(s)://`` tracking servers and SQL databases
    (``postgresql+psycopg2://``, ``mysql``, ``mssql``); refuses ``file:`` stores, which MLflow 3
    keeps only in maintenance mode. A SQLite file is checked for being writable; a server or
    database for answering within ``timeout_s`` seconds, without MLflow's minutes of retries.
    Creates a new SQLite store's tables (a few seconds, once).

    Raises:
        TrackingUnavailable: naming the URI (password hidden) and what went wrong.
    """
    scheme = _scheme(uri)
    shown = _redacted(uri)
    if scheme in ("", "file"):
        raise TrackingUnavailable(
            f"tracking URI {shown!r}: MLflow 3 no longer writes file stores (./mlruns); use "
            f"sqlite:///path/to/mlflow.db, an http(s):// tracking server or postgresql+psycopg2://...")
    if scheme not in SCHEMES:
        raise TrackingUnavailable(f"tracking URI {shown!r}: unknown scheme {scheme!r}; accepted: {accepted(SCHEMES)}")
    if scheme == "sqlite":
        _check_sqlite_file(uri, timeout_s)
    elif scheme in SQL_PORTS:
        _check_database(uri, scheme, timeout_s)
    try:
        with _quick_http(timeout_s):
            _client(uri).search_experiments(max_results=1)
    except Exception as error:  # noqa: BLE001 - any failure here means the store is unusable
        raise TrackingUnavailable(f"tracking URI {shown!r}: MLflow cannot use the store: {_first_line(error)}") from error


def experiment_id(client: MlflowClient, uri: str, name: str, folder: str, artifact_location: str | None = None) -> str:
    """The id of experiment ``name``: restored if it was deleted, else created, with its artefacts in
    ``artifact_location`` or, on a SQLite store, in ``<store folder>/mlartifacts/<folder>``."""
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        if artifact_location is None and _scheme(uri) == "sqlite":
            store = _sqlite_path(uri).resolve().parent
            artifact_location = (store / ARTIFACTS / re.sub(r"[^\w.-]", "_", folder)).as_uri()
        try:
            return client.create_experiment(name, artifact_location=artifact_location)
        except Exception:  # another invocation may have created it meanwhile
            experiment = client.get_experiment_by_name(name)
            if experiment is None:
                raise
    if experiment.lifecycle_stage == "deleted":
        log.info("MLflow: restoring the deleted experiment %s", name)
        client.restore_experiment(experiment.experiment_id)
    return experiment.experiment_id


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
            self._client = _client(self.uri)
            self.experiment_id = self._experiment()
            self._start_parent()
        except Exception as error:  # noqa: BLE001 - reported as the user's URI being unusable
            _mark_broken(self._client, self.parent_run_id, error)
            raise TrackingUnavailable(
                f"tracking URI {_redacted(self.uri)!r}: cannot start the suite's run: {_first_line(error)}") from error
        log.info("MLflow: experiment %s, run %s%s", self.experiment_name, self.parent_run_id, self._link())
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        status = "FINISHED" if exc_type is None else "KILLED" if issubclass(exc_type, KeyboardInterrupt) else "FAILED"
        try:
            self._require().set_terminated(self.parent_run_id, status=status)
        except Exception as error:  # noqa: BLE001 - never mask the suite's own outcome
            log.warning("MLflow: could not end run %s as %s: %s", self.parent_run_id, status, _first_line(error))

    def log_cell(self, record: Mapping[str, Any], cell_dir: str | os.PathLike) -> str | None:
        """Log a finished cell as a child run; its id, or None (and a warning) if MLflow failed."""
        client, cell = self._require(), record.get("cell") or {}
        title = _cell_title(cell)
        run_id = None
        try:
            start_ms, end_ms = _cell_times(record)
            run = client.create_run(self.experiment_id, start_time=start_ms, run_name=title,
                                    tags={"mlflow.parentRunId": self.parent_run_id, **self.invocation_tags(),
                                          **self.source_tags((record.get("provenance") or {}).get("git_commit"))})
            run_id = run.info.run_id
            _log_batch(client, run_id, metrics=_cell_metrics(record, end_ms), params=_cell_params(cell),
                       tags=_cell_tags(record))
            _log_cell_files(client, run_id, record, Path(cell_dir))
            client.set_terminated(run_id, status=_run_status(record), end_time=end_ms)
        except Exception as error:  # noqa: BLE001 - the result files are the source of truth
            log.warning("MLflow: could not log cell %s (%s): %s", title, record.get("hash"), _first_line(error))
            _mark_broken(client, run_id, error)
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
            _log_batch(self._require(), self.parent_run_id, metrics=_metrics(counts, _now_ms()))
        except Exception as error:  # noqa: BLE001 - the summary is also printed and stored in files
            log.warning("MLflow: could not log the suite's cell counts: %s", _first_line(error))

    def _link(self) -> str:
        if _scheme(self.uri) not in ("http", "https"):
            return ""
        return f" at {_redacted(self.uri).rstrip('/')}/#/experiments/{self.experiment_id}/runs/{self.parent_run_id}"

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
        _log_batch(client, run_id, tags=_tags(tags))
        client.log_text(run_id, json.dumps(self.config, indent=1, default=str), "suite.json")
        if self.config_path is not None and self.config_path.is_file():
            client.log_artifact(run_id, str(self.config_path), "config")


# --- one cell -----------------------------------------------------------------------------------

def _cell_params(cell: Mapping[str, Any]) -> list:
    """The cell's params: every hyperparameter and dataset parameter as the cell resolved it (its
    ``identity``: the suite's overrides on top of the model's and dataset's defaults), not only the overrides."""
    from mlflow.entities import Param

    identity = cell.get("identity") or {}
    hyperparameters = {**(cell.get("hyperparameters") or {}), **((identity.get("model") or {}).get("hyperparameters") or {})}
    dataset_params = {**(cell.get("dataset_params") or {}), **((identity.get("dataset") or {}).get("params") or {})}
    values = {key: cell.get(key) for key in ("dataset", "model", "label", "seed", "suite")}
    values.update(_flat(cell.get("budget") or {}, "budget"))
    values.update(_flat(hyperparameters, "hp"))
    values.update(_flat(dataset_params, "data"))
    return [Param(metric_name(key), _clip(_text(value), keep="head", limit=PARAM_LIMIT)) for key, value in values.items()]


def _cell_metrics(record: Mapping[str, Any], timestamp_ms: int) -> list:
    from mlflow.entities import Metric

    history = record.get("history") or {}
    evaluations = [reading for reading in history.get("evaluations") or [] if isinstance(reading, Mapping)]
    validation = {name for reading in evaluations for name in (reading.get("scores") or {})}
    # the loss terms per epoch (step = epoch); the trainer also copies each epoch-end validation reading into
    # its epoch's entry: those are logged once, from ``evaluations``, below
    metrics = [Metric(metric_name(f"train/{term}"), float(value), timestamp_ms, epoch)
               for epoch, terms in enumerate(history.get("epochs") or [], start=1) for term, value in terms.items()
               if term not in validation and _is_number(value)]
    # the monitor's readings of the validation sample during training (step = training step)
    metrics += [Metric(metric_name(f"val/{name}"), float(value), timestamp_ms, int(reading.get("step") or 0))
                for reading in evaluations for name, value in (reading.get("scores") or {}).items() if _is_number(value)]
    metrics += _metrics({metric_name(key): value for key, value in (record.get("scores") or {}).items()}, timestamp_ms)
    timings = _flat(record.get("timings") or {}, "time", separator="/")
    metrics += _metrics({metric_name(key): value for key, value in timings.items()}, timestamp_ms)
    return metrics


def _cell_tags(record: Mapping[str, Any]) -> list:
    cell = record.get("cell") or {}
    tags = {"crlbench.cell_hash": record.get("hash") or cell.get("hash"), "crlbench.status": record.get("status"),
            "crlbench.suite": cell.get("suite"), TAG_FINISHED: (record.get("provenance") or {}).get("finished_at"),
            "crlbench.hp_overrides": cell.get("hyperparameters") or {},  # which hp.* the suite (or trial) set
            **provenance_tags(record.get("provenance") or {})}
    ran_on = record.get("ran_on") or {}
    tags.update({f"crlbench.ran_on.{key}": value for key, value in ran_on.items() if value is not None})
    error = record.get("error")
    if error:
        tags["crlbench.error"] = _clip(f"{error.get('type')}: {error.get('message')}", keep="head")
        if error.get("traceback"):
            tags["mlflow.note.content"] = _clip(f"```\n{error['traceback']}\n```", keep="tail")
    return _tags(tags)


def _log_cell_files(client: MlflowClient, run_id: str, record: Mapping[str, Any], folder: Path) -> None:
    if (folder / RESULT).is_file():
        client.log_artifact(run_id, str(folder / RESULT))
    else:  # a record handed over before (or without) its file
        plain = {key: value for key, value in record.items() if not key.startswith("_")}
        client.log_text(run_id, json.dumps(plain, indent=1, default=str), RESULT)
    for path in _cell_files(folder):
        parent = path.parent.relative_to(folder).as_posix()
        client.log_artifact(run_id, str(path), None if parent == "." else parent)
    _log_cell_images(client, run_id, record, folder)


def _log_cell_images(client: MlflowClient, run_id: str, record: Mapping[str, Any], folder: Path) -> None:
    """The cell's figures as images MLflow shows: the intervention grid drawn from ``interventions.npz``
    (artefact ``interventions.png``) and every ``*.png`` of the cell folder, each also as a keyed image
    (``log_image(key=...)``: the run's and the experiment's image charts). A figure that cannot be drawn
    or logged is a warning: the files above are logged already."""
    images = []
    grid = folder / "interventions.npz"
    if grid.is_file():
        try:
            cell = record.get("cell") or {}
            image = intervention_image(grid, f"{_cell_title(cell)}: true counterfactuals and the model's do()",
                                       str(cell.get("label") or "model"))
        except Exception as error:  # noqa: BLE001 - the npz is logged; its picture is a convenience
            log.warning("MLflow: could not draw the intervention grid of %s: %s", grid, _first_line(error))
        else:
            images.append(("interventions", image))
    for path in _cell_pngs(folder):
        with contextlib.suppress(Exception):  # an unreadable PNG stays a plain artefact
            from PIL import Image

            with Image.open(path) as opened:
                images.append((metric_name(path.relative_to(folder).with_suffix("").as_posix()), opened.convert("RGB")))
    try:
        if images and images[0][0] == "interventions":
            client.log_image(run_id, images[0][1], artifact_file=INTERVENTION_IMAGE)
        for key, image in images:
            client.log_image(run_id, image, key=key, step=0, synchronous=True)
    except Exception as error:  # noqa: BLE001 - the cell's files are logged; its pictures are a convenience
        log.warning("MLflow: could not log the images of %s: %s", folder, _first_line(error))


def intervention_image(path: str | os.PathLike, title: str, label: str = "model") -> Any:
    """The intervention grid of one cell's ``interventions.npz`` as a PIL image (a few hundred ms), drawn
    as the report draws a dataset's (:func:`crlbench.reports.figures.intervention_figure`)."""
    import io

    import numpy as np
    from PIL import Image

    from crlbench.reports.figures import DPI, INTERVENTION_ARRAYS, intervention_figure

    with np.load(path) as stored:
        missing = INTERVENTION_ARRAYS - set(stored.files)
        if missing:
            raise ValueError(f"it lacks {sorted(missing)}")
        arrays = {name: stored[name] for name in stored.files}
    buffer = io.BytesIO()
    intervention_figure({label: arrays}, title).savefig(buffer, format="png", dpi=DPI, bbox_inches="tight")
    buffer.seek(0)
    with Image.open(buffer) as image:
        return image.convert("RGB")


def _cell_title(cell: Mapping[str, Any]) -> str:
    return f"{cell.get('dataset')}/{cell.get('label')}/seed{cell.get('seed')}"


def _cell_files(folder: Path) -> Iterator[Path]:
    for name in CELL_FILES:
        if (folder / name).is_file():
            yield folder / name
    for pattern in ("*.json", "*.npz"):
        yield from sorted((folder / "metrics").glob(pattern))
    yield from _cell_pngs(folder)


def _cell_pngs(folder: Path) -> Iterator[Path]:
    for path in sorted(folder.rglob("*.png")):
        if path.relative_to(folder).parts[0] not in CELL_FOLDERS_SKIPPED:
            yield path


def _cell_times(record: Mapping[str, Any]) -> tuple[int, int]:
    """The cell's start and end (ms since the epoch), from its finishing time and total duration."""
    end_ms = _now_ms()
    finished = (record.get("provenance") or {}).get("finished_at")
    if finished:
        with contextlib.suppress(ValueError, TypeError):
            end_ms = int(datetime.datetime.fromisoformat(finished).timestamp() * 1000)
    total = (record.get("timings") or {}).get("total_s")
    return (end_ms - int(total * 1000) if _is_number(total) else end_ms), end_ms


def _mark_broken(client: MlflowClient | None, run_id: str | None, error: Exception) -> None:
    """End a half-logged run FAILED, so the UI does not show it running forever."""
    if client is None or run_id is None:
        return
    with contextlib.suppress(Exception):
        client.set_tag(run_id, TAG_TRACKING_ERROR, _clip(_first_line(error), keep="head"))
    with contextlib.suppress(Exception):
        client.set_terminated(run_id, status="FAILED")


# --- exactly once: dead invocations, logged records ----------------------------------------------

def invocation_tags(invocation: Holder, workdir: Path | None = None) -> dict[str, str]:
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
    client = _client(uri)
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
            client.set_tag(run.info.run_id, "crlbench.closed_by", _clip(f"{me.invocation}: {reason}", keep="head"))
            client.set_terminated(run.info.run_id, status="KILLED")
        except Exception as error:  # noqa: BLE001 - a later rerun tries again
            log.warning("MLflow: could not close run %s (%s): %s", name, run.info.run_id, _first_line(error))
            continue
        log.warning("MLflow: closed run %s (%s) as KILLED: %s", name, run.info.run_id, reason)
        closed.append(run.info.run_id)
    return closed


def logged_run(cell_dir: str | os.PathLike, uri: str, experiment_name: str, record: Mapping[str, Any]) -> str | None:
    """The run that holds ``record`` in ``experiment_name`` at ``uri``, as the cell folder's
    ``mlflow.json`` says (no MLflow call), or None."""
    for entry in _marker_entries(Path(cell_dir)):
        if (entry.get("tracking_uri"), entry.get("experiment"), entry.get("finished_at")) == \
                (_redacted(uri), experiment_name, _finished_at(record)):
            return entry.get("run_id")
    return None


def mark_logged(cell_dir: str | os.PathLike, uri: str, experiment_name: str, record: Mapping[str, Any],
                run_id: str) -> None:
    """Note in the cell folder's ``mlflow.json`` that ``run_id`` holds ``record`` (a warning if it cannot)."""
    folder = Path(cell_dir)
    entries = [entry for entry in _marker_entries(folder)
               if (entry.get("tracking_uri"), entry.get("experiment")) != (_redacted(uri), experiment_name)]
    entries.append({"tracking_uri": _redacted(uri), "experiment": experiment_name, "run_id": run_id,
                    "finished_at": _finished_at(record)})
    try:
        write_json(folder / MARKER, {"runs": entries})
    except OSError as error:
        log.warning("MLflow: could not note in %s that run %s holds the cell: %s", folder / MARKER, run_id, error)


def _run_status(record: Mapping[str, Any]) -> str:
    """The MLflow status of a cell's run: FINISHED for a cell that ran, or whose method does not apply to its
    dataset (the tag ``crlbench.status`` says which), FAILED otherwise."""
    return "FINISHED" if record.get("status") in ("ok", "not_applicable") else "FAILED"


def find_logged_run(client: MlflowClient, experiment_id: str, record: Mapping[str, Any]) -> str | None:
    """A complete run of ``record`` in the experiment: tagged with its hash and finishing time (or,
    logged before that tag, ending when it finished), ended FINISHED or FAILED as the record did,
    without a tracking error. None when there is none, or MLflow cannot be searched."""
    cell_hash, finished = record.get("hash"), _finished_at(record)
    status = _run_status(record)
    _, end_ms = _cell_times(record)
    try:
        runs = _search(client, experiment_id, f"tags.`crlbench.cell_hash` = '{cell_hash}'")
    except Exception as error:  # noqa: BLE001 - then it is logged (again)
        log.warning("MLflow: could not search the runs of cell %s: %s", cell_hash, _first_line(error))
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
    client = _client(uri)
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


# --- MLflow plumbing ----------------------------------------------------------------------------

def _client(uri: str) -> MlflowClient:
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    # MLflow logs every SQL error with its traceback before raising it; crlbench reports each in one line
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)
    # With a tracking server, MLflow writes two "View run" lines to stdout per ended run (a cell);
    # the suite's own run link is logged by SuiteTracker instead.
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    from mlflow import MlflowClient

    with _store_lock(uri):  # the client creates a new store's tables: one process at a time
        if _scheme(uri) == "sqlite":
            _create_sqlite_store(_sqlite_path(uri))
        return MlflowClient(tracking_uri=uri)


def _create_sqlite_store(path: Path) -> None:
    """Create a new SQLite store's tables in a temporary file renamed into place once complete (the caller
    holds the store's lock), when ``path`` is missing or empty (the writability check leaves an empty file): a
    process killed during MLflow's migrations (seconds) leaves only the temporary, never a half-migrated
    ``mlflow.db`` that every later client fails on (found by the chaos soak)."""
    if str(path) in ("", ".", ":memory:") or (path.exists() and path.stat().st_size > 0):
        return  # a store already (or someone's own file, which MLflow judges): never replaced
    from mlflow import MlflowClient

    for left in path.parent.glob(f".{path.name}.*.creating"):  # a killed creation's (we hold the lock)
        left.unlink(missing_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.creating")
    MlflowClient(tracking_uri=f"sqlite:///{temporary}").search_experiments(max_results=1)  # creates the tables
    os.replace(temporary, path)





@contextlib.contextmanager
def _store_lock(uri: str) -> Iterator[None]:
    """An exclusive file lock beside a SQLite store (``mlflow.db.lock``) for the block; nothing for
    other stores (a server or database serialises its own migrations), or where the lock file
    cannot be made (MLflow then reports the folder itself)."""
    with contextlib.ExitStack() as stack:
        path = _sqlite_path(uri) if _scheme(uri) == "sqlite" else None
        if path is not None and str(path) not in ("", ".", ":memory:"):
            with contextlib.suppress(OSError):
                path.parent.mkdir(parents=True, exist_ok=True)
                stack.enter_context(file_lock(path.with_name(path.name + ".lock")))
        yield


def _log_batch(client: MlflowClient, run_id: str, metrics: Sequence = (), params: Sequence = (), tags: Sequence = ()) -> None:
    """``log_batch`` in chunks within MLflow's per-request limits."""
    for kind, entities in (("metrics", metrics), ("params", params), ("tags", tags)):
        size = _BATCH[kind]
        for start in range(0, len(entities), size):
            client.log_batch(run_id, **{kind: list(entities[start:start + size])})


def _metrics(values: Mapping[str, Any], timestamp_ms: int) -> list:
    from mlflow.entities import Metric

    return [Metric(key, float(value), timestamp_ms, 0) for key, value in values.items() if _is_number(value)]


def _tags(values: Mapping[str, Any]) -> list:
    from mlflow.entities import RunTag

    return [RunTag(metric_name(key), _clip(_text(value), keep="head")) for key, value in values.items() if value is not None]


@contextlib.contextmanager
def _quick_http(timeout_s: float) -> Iterator[None]:
    """No retries and a short timeout for MLflow's HTTP requests, for the duration of a check."""
    settings = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": str(max(1, round(timeout_s)))}
    saved = {key: os.environ.get(key) for key in settings}
    os.environ.update(settings)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


# --- checks -------------------------------------------------------------------------------------

def _check_sqlite_file(uri: str, timeout_s: float) -> None:
    """The SQLite file can be created and written (MLflow itself would retry for minutes, and then fail with a
    long traceback on the first write): a file this user may not write, or one SQLite opens read-only, is
    refused in one message naming it."""
    path = _sqlite_path(uri)
    if str(path) in ("", ".", ":memory:"):
        raise TrackingUnavailable(f"tracking URI {uri!r}: give a database file, as in sqlite:///path/to/{DATABASE}")
    read_only = (f"the tracking database {path} is read-only for this user; make it (and its folder) writable, "
                 f"or give another --tracking-uri")
    if path.exists() and not os.access(path, os.W_OK):
        raise TrackingUnavailable(read_only)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.closing(sqlite3.connect(path, timeout=timeout_s, isolation_level=None)) as database:
            database.execute("PRAGMA schema_version")
            database.execute("BEGIN IMMEDIATE")  # the write lock
            database.execute(f"CREATE TABLE {WRITE_PROBE} (x INTEGER)")  # a write, rolled back: fails on a read-only file
            database.execute("ROLLBACK")
    except sqlite3.OperationalError as error:
        if "readonly" in str(error):
            raise TrackingUnavailable(f"{read_only} ({error})") from None
        raise TrackingUnavailable(f"tracking URI {uri!r}: cannot write the SQLite file {path}: {error}") from None
    except (OSError, sqlite3.Error) as error:
        raise TrackingUnavailable(f"tracking URI {uri!r}: cannot write the SQLite file {path}: {error}") from None


def _check_database(uri: str, scheme: str, timeout_s: float) -> None:
    """The database server answers and accepts the credentials (MLflow would retry for minutes)."""
    parts, shown = urlsplit(uri), _redacted(uri)
    if parts.hostname:
        address = (parts.hostname, parts.port or SQL_PORTS[scheme])
        try:
            socket.create_connection(address, timeout=timeout_s).close()
        except OSError as error:
            raise TrackingUnavailable(f"tracking URI {shown!r}: cannot reach {address[0]}:{address[1]}: {error}") from None
    try:
        import sqlalchemy

        timeout = {"connect_timeout": max(1, round(timeout_s))} if scheme in ("postgresql", "mysql") else {}
        engine = sqlalchemy.create_engine(uri, poolclass=sqlalchemy.pool.NullPool, connect_args=timeout)
        with engine.connect():
            pass
    except ImportError as error:
        raise TrackingUnavailable(f"tracking URI {shown!r}: the database driver is not installed ({error}); "
                                  f"for PostgreSQL: pip install 'crlbench[postgres]'") from None
    except Exception as error:  # noqa: BLE001 - sqlalchemy and driver errors alike
        raise TrackingUnavailable(f"tracking URI {shown!r}: cannot connect: {_first_line(error)}") from None


# --- small helpers ------------------------------------------------------------------------------

def _sqlite_uri(folder: Path) -> str:
    return f"sqlite:///{(folder / DATABASE).as_posix()}"


def _sqlite_path(uri: str) -> Path:
    """The file of a ``sqlite:///`` URI (relative after three slashes, absolute after four)."""
    return Path(uri.removeprefix("sqlite://").removeprefix("/").split("?", 1)[0])


def _scheme(uri: str) -> str:
    scheme = urlsplit(uri).scheme.lower()
    if len(scheme) == 1:  # a Windows drive letter: a plain path
        return ""
    return scheme.split("+", 1)[0]


def _redacted(uri: str) -> str:
    """``uri`` with its password, if any, replaced by ``***``."""
    parts = urlsplit(uri)
    if parts.password is None:
        return uri
    return uri.replace(f":{parts.password}@", ":***@", 1)


def _flat(values: Mapping[str, Any], prefix: str, separator: str = ".") -> dict[str, Any]:
    flat = {}
    for key, value in values.items():
        name = f"{prefix}{separator}{key}"
        if isinstance(value, Mapping):
            flat.update(_flat(value, name, separator))
        else:
            flat[name] = value
    return flat


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(value, default=str)
    return str(value)


def _clip(text: str, keep: str, limit: int = TAG_LIMIT) -> str:
    """``text`` within MLflow's tag length (or ``limit``), keeping its head (a message) or tail (a traceback)."""
    if len(text) <= limit:
        return text
    mark = "\n[...]\n"
    room = limit - len(mark)
    return text[:room] + mark if keep == "head" else mark + text[-room:]


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _first_line(error: BaseException) -> str:
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0][:500]


def _now_ms() -> int:
    return int(time.time() * 1000)
