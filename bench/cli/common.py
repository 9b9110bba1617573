"""What every ``crlbench`` command shares: the exit statuses (and the help's epilog that lists them), the work
directory and tracking flags, the checks that a folder can be written before any work, ``KEY=VALUE`` flags,
``--keep-checkpoints``, and the progress lines the library logs, printed where logs of the run collect.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import logging
import os
import sqlite3
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

from crlbench.core.errors import ConfigError

# Exit statuses (the --help epilog and the README say the same).
EXIT_OK = 0
EXIT_INTERNAL = 1  # a bug: Python's own status for an uncaught exception, with its traceback
EXIT_INPUT = 2  # bad input or an unusable path: one message naming the file, key, flag or path
EXIT_PARTIAL = 3  # suite, run: no cell failed, but some finished partial (a metric failed, the other scores stand)
EXIT_FAILED = 10  # + the number of failed cells (or trials), at most 99
EXIT_FAILED_MAX = 99
EXIT_INTERRUPTED = 130  # Ctrl-C: 128 + SIGINT, as a shell reports a command stopped by it
EXIT_BROKEN_PIPE = 141  # the reader of stdout went away (| head): 128 + SIGPIPE, as for other Unix tools
EPILOG = f"""exit status:
  {EXIT_OK}       success
  {EXIT_INTERNAL}       internal error (a bug: Python prints a traceback)
  {EXIT_INPUT}       bad input (config file, flag, name) or an unusable path (a work directory or report
          folder that cannot be written, an unreachable tracking server): one message naming it;
          checked before any work (a path that turns unwritable later stops the run the same way)
  {EXIT_PARTIAL}       suite, run: no cell failed, but some are partial (a metric failed; the other scores stand)
  {EXIT_FAILED}-{EXIT_FAILED_MAX}   the command ran but N cells failed (suite, run): {EXIT_FAILED} + N, at most \
{EXIT_FAILED_MAX};
          tune: no trial completed, {EXIT_FAILED} + N failed trials ({EXIT_FAILED}: every trial was pruned)
  {EXIT_INTERRUPTED}     interrupted (Ctrl-C): run the same command again to resume
  {EXIT_BROKEN_PIPE}     the reader of the output closed it early (e.g. | head): output stops quietly"""
READ_ONLY = frozenset({errno.EACCES, errno.EPERM, errno.EROFS})


def failed_status(failed: int, partial: int = 0) -> int:
    """The exit status of a command that ran and saw ``failed`` cells (or trials) fail and ``partial`` cells
    finish with some metrics failed: failures first, then :data:`EXIT_PARTIAL`, else :data:`EXIT_OK`."""
    if failed > 0:
        return min(EXIT_FAILED + failed, EXIT_FAILED_MAX)
    return EXIT_PARTIAL if partial > 0 else EXIT_OK


def unwritable(error: BaseException) -> str | None:
    """The message for an error that says a path cannot be written (permission denied, read-only file
    system, read-only SQLite database), found in ``error`` or the errors it was raised from; else None."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, OSError) and error.errno in READ_ONLY and (error.filename or error.errno == errno.EROFS):
            place = f" {error.filename}" if error.filename else ""
            return f"cannot write{place}: {error.strerror or error}; the work directory, the report folder " \
                   f"and the databases in them must be writable"
        if isinstance(error, sqlite3.OperationalError) and any(
                text in str(error) for text in ("readonly database", "unable to open database file")):
            return f"cannot write a SQLite database ({error}); the work directory and the databases in it " \
                   f"must be writable"
        error = error.__cause__ or error.__context__
    return None


def writable_folder(path: Path, what: str) -> Path:
    """Create the folder ``path`` if missing and check that files can be created in it, before any work;
    a :class:`ConfigError` naming ``what`` and the path otherwise. Root ignores permission bits, so
    the check creates (and removes) a file rather than asking ``os.access``."""
    try:
        if path.exists() and not path.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, "it is a file, not a folder", str(path))
        path.mkdir(parents=True, exist_ok=True)
        descriptor, probe = tempfile.mkstemp(dir=path, prefix=".crlbench-", suffix=".probe")
        os.close(descriptor)
        os.unlink(probe)
    except OSError as error:
        raise ConfigError(f"cannot write to {what} {path}: {error.strerror or error}; give a folder where "
                          f"crlbench may create files") from None
    return path


def work_arguments(command: argparse.ArgumentParser) -> None:
    """``--workdir`` and the tracking flags (``--tracking-uri`` or ``--no-tracking``)."""
    command.add_argument("--workdir", type=Path, default=None, help="work directory (default: $CRLBENCH_WORKDIR or runs)")
    tracking = command.add_mutually_exclusive_group()
    tracking.add_argument("--tracking-uri", help="MLflow tracking URI (default: sqlite:///WORKDIR/mlflow.db)")
    tracking.add_argument("--no-tracking", action="store_true", help="do not log to MLflow")


def keep_checkpoints_argument(command: argparse.ArgumentParser) -> None:
    """``--keep-checkpoints``."""
    command.add_argument("--keep-checkpoints", action="store_true",
                         help="keep finished cells' full checkpoints (optimiser state, last.pt.prev); by default "
                              "only what later metrics need, the model weights, is kept")


def chosen_workdir(args: argparse.Namespace) -> Path:
    """The work directory: ``--workdir``, else ``$CRLBENCH_WORKDIR``, else ``runs``."""
    return args.workdir if args.workdir is not None else Path(os.environ.get("CRLBENCH_WORKDIR", "runs"))


def writable_workdir(args: argparse.Namespace) -> Path:
    """The work directory, checked writable before any work (see :func:`writable_folder`)."""
    source = ("--workdir" if args.workdir is not None else
              "$CRLBENCH_WORKDIR" if "CRLBENCH_WORKDIR" in os.environ else "the default, runs")
    return writable_folder(chosen_workdir(args), f"the work directory ({source})")


def chosen_tracking_uri(args: argparse.Namespace, workdir: Path) -> str | None:
    """The MLflow tracking URI: ``--tracking-uri``, else the work directory's SQLite store; None with
    ``--no-tracking``."""
    if args.no_tracking:
        return None
    if args.tracking_uri:
        return args.tracking_uri
    from crlbench.tracking.mlflow_runs import default_tracking_uri

    return default_tracking_uri(workdir)


@contextlib.contextmanager
def keeping_checkpoints(keep: bool):
    """``--keep-checkpoints``: $CRLBENCH_KEEP_CHECKPOINTS for the run (worker processes inherit it)."""
    from crlbench.training.budget import KEEP_CHECKPOINTS  # no torch

    if not keep:
        yield
        return
    before = os.environ.get(KEEP_CHECKPOINTS)
    os.environ[KEEP_CHECKPOINTS] = "1"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(KEEP_CHECKPOINTS, None)
        else:
            os.environ[KEEP_CHECKPOINTS] = before


@contextlib.contextmanager
def progress_lines(terminal_bar: bool):
    """Print the progress lines the library logs (crlbench.suites.progress: one per finished cell or trial) on
    stdout, where logs of the run collect; with ``terminal_bar``, not when stdout and stderr are both
    terminals, where the bar shows the same numbers."""
    from crlbench.suites.progress import PROGRESS_LOGGER

    logger = logging.getLogger(PROGRESS_LOGGER)
    terminal = all(getattr(stream, "isatty", lambda: False)() for stream in (sys.stdout, sys.stderr))
    handler = logging.NullHandler() if terminal_bar and terminal else logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(message)s"))
    before = logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False  # once, here: not again through --verbose's handler on stderr
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(before[0])
        logger.propagate = before[1]


def key_values(items: list[str], flag: str) -> dict[str, Any]:
    """``KEY=VALUE`` flags as a dict, each value read as YAML (``--set lr=1e-3``: a float)."""
    values = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"{flag} {item!r}: expected KEY=VALUE")
        values[key] = yaml.safe_load(text)
    return values
