"""The MLflow tracking store: its URI (:func:`default_tracking_uri`, the schemes crlbench accepts, a password
never shown: :func:`redacted`), the check that it can be used before any training (:func:`check_tracking`),
the client (:func:`mlflow_client`, which creates a new SQLite store's tables whole, under a file lock beside
it), experiments (:func:`experiment_id`) and the command that serves its UI (:func:`ui_command`).

A new SQLite store's tables are created under a file lock (``mlflow.db.lock``), in a temporary file renamed
into place once complete, so launchers started together on a fresh work directory do not race MLflow's
migrations, and a process killed during them leaves no half-migrated store. With a SQLite store the
artefacts live beside the database, in ``<store folder>/mlartifacts``.

Importing this module does not import mlflow (seconds); it loads on first use.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import socket
import sqlite3
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from crlbench.core.errors import ConfigError, accepted
from crlbench.core.files import file_lock

if TYPE_CHECKING:
    from mlflow import MlflowClient

log = logging.getLogger(__name__)

DATABASE = "mlflow.db"
ARTIFACTS = "mlartifacts"
WRITE_PROBE = "crlbench_write_probe"  # a table created and rolled back to prove the tracking database is writable
CHECK_TIMEOUT_S = 5
SQL_PORTS = {"postgresql": 5432, "mysql": 3306, "mssql": 1433}
SCHEMES = ("sqlite", "http", "https", *SQL_PORTS)


class TrackingUnavailable(ConfigError):
    """The MLflow tracking URI cannot be used: refused, unreachable or not writable."""


def default_tracking_uri(workdir: str | os.PathLike) -> str:
    """``sqlite:///<absolute workdir>/mlflow.db``, creating the work directory."""
    folder = Path(workdir).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    return sqlite_uri(folder)


def ui_command(workdir: str | os.PathLike, port: int = 5000) -> list[str]:
    """The argv that starts the MLflow UI on 127.0.0.1:``port`` for ``workdir``'s SQLite store."""
    folder = Path(workdir).resolve()
    return [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", sqlite_uri(folder),
            "--artifacts-destination", str(folder / ARTIFACTS),
            "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]


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
    scheme = url_scheme(uri)
    shown = redacted(uri)
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
            mlflow_client(uri).search_experiments(max_results=1)
    except Exception as error:  # noqa: BLE001 - any failure here means the store is unusable
        raise TrackingUnavailable(f"tracking URI {shown!r}: MLflow cannot use the store: {first_line(error)}") from error


def experiment_id(client: MlflowClient, uri: str, name: str, folder: str, artifact_location: str | None = None) -> str:
    """The id of experiment ``name``: restored if it was deleted, else created, with its artefacts in
    ``artifact_location`` or, on a SQLite store, in ``<store folder>/mlartifacts/<folder>``."""
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        if artifact_location is None and url_scheme(uri) == "sqlite":
            store = sqlite_path(uri).resolve().parent
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


def mlflow_client(uri: str) -> MlflowClient:
    """An MLflow client of ``uri``; a new SQLite store's tables are created first, whole, under the store's lock."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    # MLflow logs every SQL error with its traceback before raising it; crlbench reports each in one line
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)
    # With a tracking server, MLflow writes two "View run" lines to stdout per ended run (a cell);
    # the suite's own run link is logged by SuiteTracker instead.
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    from mlflow import MlflowClient

    with _store_lock(uri):  # the client creates a new store's tables: one process at a time
        if url_scheme(uri) == "sqlite":
            _create_sqlite_store(sqlite_path(uri))
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
        path = sqlite_path(uri) if url_scheme(uri) == "sqlite" else None
        if path is not None and str(path) not in ("", ".", ":memory:"):
            with contextlib.suppress(OSError):
                path.parent.mkdir(parents=True, exist_ok=True)
                stack.enter_context(file_lock(path.with_name(path.name + ".lock")))
        yield


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


def _check_sqlite_file(uri: str, timeout_s: float) -> None:
    """The SQLite file can be created and written (MLflow itself would retry for minutes, and then fail with a
    long traceback on the first write): a file this user may not write, or one SQLite opens read-only, is
    refused in one message naming it."""
    path = sqlite_path(uri)
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
    parts, shown = urlsplit(uri), redacted(uri)
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
        raise TrackingUnavailable(f"tracking URI {shown!r}: cannot connect: {first_line(error)}") from None


def sqlite_uri(folder: Path) -> str:
    """The ``sqlite:///`` URI of the store ``mlflow.db`` in ``folder``."""
    return f"sqlite:///{(folder / DATABASE).as_posix()}"


def sqlite_path(uri: str) -> Path:
    """The file of a ``sqlite:///`` URI (relative after three slashes, absolute after four)."""
    return Path(uri.removeprefix("sqlite://").removeprefix("/").split("?", 1)[0])


def url_scheme(uri: str) -> str:
    """The scheme of a store URI without its driver (``postgresql+psycopg2`` is ``postgresql``); empty for a plain
    path."""
    scheme = urlsplit(uri).scheme.lower()
    if len(scheme) == 1:  # a Windows drive letter: a plain path
        return ""
    return scheme.split("+", 1)[0]


def redacted(uri: str) -> str:
    """``uri`` with its password, if any, replaced by ``***``."""
    parts = urlsplit(uri)
    if parts.password is None:
        return uri
    return uri.replace(f":{parts.password}@", ":***@", 1)


def first_line(error: BaseException) -> str:
    """The first line of ``error``'s message (its type when empty), at most 500 characters: warnings stay one line."""
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0][:500]
