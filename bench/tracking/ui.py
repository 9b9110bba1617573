"""The MLflow UI of a work directory (``crlbench ui``): which experiments it shows, the URL of each in
MLflow 3's model-training view, and when its server is ready.

MLflow 3 opens on its GenAI pages, where crlbench's runs are not. Two things take a browser to the runs
table instead: the experiment tag ``mlflow.experimentKind = custom_model_development``
(:func:`mark_model_training`) and the URL's ``workflowType=machine_learning`` (:func:`experiment_url`), which
the UI reads from the address (``WorkflowTypeProvider`` in MLflow 3's ``mlflow/server/js``). The same URL
sorts the runs by name: the runs table nests child runs (one per cell) under their parent run (one per
invocation), collapsed, only when it is sorted by creation time and unfiltered, so sorted by name the cells are
listed flat, in dataset/model/seed order.

The server takes tens of seconds to start on a loaded machine: :func:`wait_until_answering` polls it over HTTP
so that a URL is printed only once it opens.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import sqlite3
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from crlbench.core.errors import ConfigError, CrlbenchError

log = logging.getLogger(__name__)

EXPERIMENT_KIND = "mlflow.experimentKind"  # MLflow 3's UI asks "GenAI or model training?" where it is missing
MODEL_TRAINING = "custom_model_development"
RUNS_VIEW = {"workflowType": "machine_learning",  # the sidebar's "Model training", not GenAI
             "orderByKey": "tags.`mlflow.runName`", "orderByAsc": "true"}  # cells listed flat, by name
READY_TIMEOUT_S = 180.0  # the server answered after 19 to 27 s on a loaded 2-core machine
HEALTH = "/health"  # MLflow's server answers "OK" here


class ServerNotReady(CrlbenchError):
    """The UI's server exited, or did not answer in time, before any URL was printed."""


def experiment_url(base: str, experiment_id: str | None = None) -> str:
    """The UI page of experiment ``experiment_id`` (its runs table in the model-training view, cells flat and
    sorted by name), or of the experiments list when None. ``base`` is ``http://HOST:PORT``."""
    path = "/experiments" if experiment_id is None else f"/experiments/{experiment_id}/runs"
    query = RUNS_VIEW if experiment_id is not None else {"workflowType": RUNS_VIEW["workflowType"]}
    return f"{base.rstrip('/')}/#{path}?{urllib.parse.urlencode(query, quote_via=urllib.parse.quote)}"


def wait_until_answering(url: str, server: subprocess.Popen, timeout_s: float = READY_TIMEOUT_S,
                         poll_s: float = 0.5) -> float:
    """Seconds until ``url`` answers an HTTP request (any status) while ``server`` runs, polled every ``poll_s``.

    Raises :class:`ServerNotReady` when ``server`` exits first (its own messages say why) or when ``timeout_s``
    seconds pass without an answer (the server is left running: the caller stops it)."""
    start = time.monotonic()
    while True:
        if _answers(url, timeout_s=max(poll_s, 1.0)):
            return time.monotonic() - start
        status = server.poll()
        if status is not None:
            raise ServerNotReady(f"the MLflow server exited (status {status}) before it answered at {url}; its "
                                 "messages above say why")
        waited = time.monotonic() - start
        if waited >= timeout_s:
            raise ServerNotReady(f"the MLflow server did not answer at {url} within {timeout_s:g} s; it was stopped "
                                 "(a loaded machine may need longer: --start-timeout SECONDS)")
        time.sleep(min(poll_s, max(timeout_s - waited, 0.0)))


def _answers(url: str, timeout_s: float) -> bool:
    """Whether an HTTP server answers ``url`` (an error status is an answer too)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:  # noqa: S310 - our own localhost URL
            response.read(64)
        return True
    except urllib.error.HTTPError:
        return True
    except (OSError, ValueError):  # refused, reset, timed out, or not HTTP yet
        return False


def check_port_free(port: int, host: str = "127.0.0.1") -> None:
    """A :class:`ConfigError` when ``host:port`` cannot be bound (another server holds it): the UI would
    otherwise print URLs that open that other server."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a port in TIME_WAIT is free; a listener is not
        try:
            probe.bind((host, port))
        except OSError as error:
            raise ConfigError(f"port {port} on {host} is in use ({error.strerror or error}); stop what holds it "
                              f"or choose another with --port") from None


def stop_group(server: subprocess.Popen, grace_s: float = 5.0) -> None:
    """SIGTERM to the server's process group (its supervisor leads it, :mod:`crlbench.core.supervisor`),
    SIGKILL after ``grace_s`` seconds."""
    for signum, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, grace_s)):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(server.pid, signum)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            server.send_signal(signum)  # before the supervisor has made its group, the group is not there yet
        try:
            server.wait(wait_s)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(server.pid, signal.SIGKILL)  # workers the server left behind
            return
        except subprocess.TimeoutExpired:
            continue


def mark_model_training(workdir: Path, experiments: list[tuple[str, str]]) -> None:
    """Tag crlbench's experiments as model training (``custom_model_development``) where they carry no
    kind yet, so MLflow 3's UI opens them on their runs, not on its GenAI pages."""
    if not experiments:
        return
    try:
        with contextlib.closing(sqlite3.connect(f"file:{Path(workdir) / 'mlflow.db'}?mode=ro", uri=True)) as db:
            tagged = {str(row[0]) for row in db.execute("SELECT experiment_id FROM experiment_tags WHERE key = ?",
                                                        (EXPERIMENT_KIND,))}
        untagged = [experiment_id for experiment_id, _ in experiments if experiment_id not in tagged]
        if not untagged:
            return
        from mlflow import MlflowClient

        from crlbench.tracking.mlflow_runs import default_tracking_uri

        client = MlflowClient(tracking_uri=default_tracking_uri(workdir))
        for experiment_id in untagged:
            client.set_experiment_tag(experiment_id, EXPERIMENT_KIND, MODEL_TRAINING)
    except Exception as error:  # noqa: BLE001 - the UI works without the tag (it asks once per experiment)
        log.warning("could not tag the experiments as model training: %s", error)


def ui_experiments(workdir: Path) -> list[tuple[str, str]]:
    """(id, name) of the active ``crlbench/...`` experiments in the work directory's MLflow store, read
    from its SQLite file (no MLflow import); empty when there is no store yet."""
    database = Path(workdir) / "mlflow.db"
    if not database.is_file():
        return []
    try:
        with contextlib.closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as connection:
            rows = connection.execute("SELECT experiment_id, name FROM experiments WHERE name LIKE 'crlbench/%' "
                                      "AND lifecycle_stage = 'active' ORDER BY experiment_id").fetchall()
    except sqlite3.Error:
        return []
    return [(str(experiment_id), name) for experiment_id, name in rows]
