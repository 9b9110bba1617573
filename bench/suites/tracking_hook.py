"""The hook through which a suite reports its cells to a tracking store, given to
:func:`crlbench.suites.suite.run_suite` as ``tracking=``: the suite never imports a tracking library, and
:mod:`crlbench.tracking` (which reads the suites' records and leases) is never imported by the suites.

crlbench's own hook is :class:`crlbench.tracking.mlflow_runs.MlflowTracking` (MLflow: one experiment per
suite, a parent run per invocation, a child run per cell), which the command line wires in. The suite
calls the hook from the launcher only (worker processes and cluster tasks never do), holds a cell's lease
while it logs the cell, and decides when the store is opened at all: a rerun with nothing to run, nothing
left unlogged and no dead invocation opens nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol

from crlbench.suites.lease import Holder
from crlbench.suites.suite_config import SuiteConfig

FinishedCells = Sequence[tuple[Mapping[str, Any], Path]]  # (record, cell folder) pairs


class SuiteLog(Protocol):
    """One invocation's log in the store, as a context manager: leaving it ends the invocation's record
    (finished, or failed when an exception escaped)."""

    def __enter__(self) -> SuiteLog: ...

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None: ...

    def log_cell_once(self, record: Mapping[str, Any], cell_dir: str | Path) -> Any:
        """Log a landed cell unless the store already holds it (the caller holds the cell's lease)."""

    def log_cell_if_new(self, record: Mapping[str, Any], cell_dir: str | Path) -> tuple[Any, bool]:
        """:meth:`log_cell_once`, and whether this call logged it (False when the store held it already)."""

    def finish(self, ok: int, failed: int, cached: int, elsewhere: int = 0, not_applicable: int = 0) -> None:
        """The invocation's cell counts."""


class SuiteTracking(Protocol):
    """A tracking store a suite logs its cells to (:class:`crlbench.tracking.mlflow_runs.MlflowTracking`)."""

    def not_noted(self, suite: str, finished: FinishedCells) -> list[tuple[Mapping[str, Any], Path]]:
        """Of finished cells, those whose folder does not note them as logged to this store (no store call)."""

    def check(self) -> None:
        """Fail (a :class:`crlbench.core.errors.CrlbenchError`) before any training when the store is unusable."""

    def close_dead_runs(self, suite: str, me: Holder, workdir: Path) -> None:
        """End what invocations that died (their leases are stale) left open in the suite's record."""

    def unlogged(self, suite: str, finished: FinishedCells) -> list[tuple[Mapping[str, Any], Path]]:
        """Of finished cells, those the store holds no complete record of (one found is noted in its folder)."""

    def open(self, config: SuiteConfig, me: Holder, workdir: Path) -> SuiteLog:
        """This invocation's log of ``config``'s cells (enter it to start it)."""
