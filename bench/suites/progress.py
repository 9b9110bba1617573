"""Progress that reaches logs: a line per finished cell, with the suite's elapsed time and an ETA.

A progress bar draws nothing without a terminal (output to a file, CI, ``nohup``), so a suite also
logs one line per finished cell to the logger :data:`PROGRESS_LOGGER` at INFO::

    cell 3/42 pendulum/beta_vae/seed0: ok in 6.3 s; 0:19 elapsed, ETA 2:41

(its title, its status, its wall time, the suite's elapsed time, the cells finished out of those this
invocation runs, the ETA). ``crlbench suite`` and ``crlbench run`` print these lines on stdout unless
stdout and stderr are both terminals; on a terminal the bar of cells shows the same numbers.
``crlbench tune`` prints a line per trial the same way (:mod:`crlbench.tuning.progress`).

**The ETA** (:func:`estimate_eta`) comes from what finished cells measurably cost: for each (model
label, dataset) pair, the mean wall time of its finished cells times its cells left, summed over the
pairs and divided by the cells that run at once (the local executor's workers, at most the cells left;
a cluster executor runs every submitted cell at once as far as the launcher knows). A pair none of
whose cells has finished yet is costed at the median of all finished cells, and the line says for how
many cells: the median, not the mean, because the first cells of a run and of each dataset carry
one-off costs (generating the dataset, a worker's first imports) that a mean spreads over every cell
left (replayed on one smoke-suite run, the mean-based ETA was 55 s off on average over its lines, the
median-based one 43 s). The model itself holds: the remaining cells' recorded wall times summed and
divided by the workers came within 7 s of the time the smoke suite still took; the guess for pairs not
measured yet is what errs, long on the smoke suite, whose first cells (ICM-VAE on Pendulum, 13 s:
the dataset generated) cost more than its later ones (0.3-5 s): it said 7:02 with 1:27 left, and 1:31
with 0:46 left (2 workers, 106 s, 2 cores shared with another job). Before any cell has finished the
ETA is "unknown". A running cell counts as a whole cell left, so the estimate also errs long while
cells are part-way. A cell's wall time is its record's
``timings.total_s`` (the runner's, from its start to its record: data loading, training and metrics;
not a worker's start-up); a record without one (a worker that died) counts as finished but not towards
the means.
"""

from __future__ import annotations

import collections
import logging
import statistics
import time
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

PROGRESS_LOGGER = "crlbench.progress"

log = logging.getLogger(PROGRESS_LOGGER)


@dataclass(frozen=True)
class Estimate:
    """The time left (None: nothing has finished to measure it by), how many items are left, and how many
    of them were costed at the median of all finished items because none of their own kind had finished."""

    seconds: float | None
    left: int = 0
    assumed: int = 0

    def describe(self, items: str = "cells", short: bool = False) -> str:
        """``ETA 2:41``, ``ETA 2:41 (3 of 10 cells left at the median of all finished cells)`` or ``ETA unknown``;
        ``short``: ``ETA 2:41 (3 of 10 at the median cell)``, for a bar."""
        if self.seconds is None:
            return "ETA unknown"
        text = f"ETA {duration(self.seconds)}"
        if self.assumed and short:
            text += f" ({self.assumed} of {self.left} at the median cell)"
        elif self.assumed:
            text += f" ({self.assumed} of {self.left} {items} left at the median of all finished {items})"
        return text


def estimate_eta(finished: Mapping[Hashable, Sequence[float]], left: Mapping[Hashable, int], parallel: int) -> Estimate:
    """The time left to finish ``left`` (items left per kind), from ``finished`` (the wall times, in seconds,
    of the finished items of each kind), with ``parallel`` items running at once.

    Each kind costs the mean of its own finished items per item left; a kind with none finished costs the
    median over every finished item (counted in :attr:`Estimate.assumed`). The sum is divided by
    ``min(parallel, items left)`` (at least 1). Nothing left: 0 s. Nothing finished: ``seconds`` None.
    """
    left = {kind: count for kind, count in left.items() if count > 0}
    remaining = sum(left.values())
    if remaining == 0:
        return Estimate(0.0)
    measured = {kind: times for kind, times in finished.items() if times}
    if not measured:
        return Estimate(None, remaining)
    overall = statistics.median(value for times in measured.values() for value in times)
    seconds, assumed = 0.0, 0
    for kind, count in left.items():
        if kind in measured:
            seconds += statistics.fmean(measured[kind]) * count
        else:
            seconds += overall * count
            assumed += count
    return Estimate(seconds / max(1, min(parallel, remaining)), remaining, assumed)


def duration(seconds: float) -> str:
    """``M:SS`` under an hour, ``H:MM:SS`` from one: ``2:41``, ``1:02:03``."""
    whole = max(0, int(round(seconds)))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def wall_time(seconds: float | None) -> str:
    """A single item's wall time: ``6.3 s`` under a minute, else as :func:`duration`; ``?`` when unknown."""
    if seconds is None:
        return "?"
    return f"{seconds:.1f} s" if seconds < 60 else duration(seconds)


class CellProgress:
    """The progress of the ``cells`` one suite invocation runs: :meth:`finished` for each that finishes logs
    its line (module docstring) and moves the bar of cells, drawn when ``bar`` is true and stderr is a
    terminal. ``parallel``: how many cells run at once. Use it as a context manager (the bar is closed).

    The local executor shows its running cells (and their epochs) on this bar (:meth:`running`)."""

    def __init__(self, cells: Iterable[Any], parallel: int, *, bar: bool = True,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.left = collections.Counter((cell.label, cell.dataset) for cell in cells)
        self.total = sum(self.left.values())
        self.parallel = parallel
        self.done = 0
        self.times: dict[tuple[str, str], list[float]] = collections.defaultdict(list)
        self.clock = clock
        self.start = clock()
        self._running = ""
        self._last = ""
        self._bar = _bar(self.total, bar)
        self._show()

    @property
    def drawn(self) -> bool:
        """Whether the bar is on screen (a terminal)."""
        return self._bar is not None and not self._bar.disable

    def __enter__(self) -> CellProgress:
        return self

    def __exit__(self, *_: Any) -> None:
        self.close()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()

    def estimate(self) -> Estimate:
        return estimate_eta(self.times, self.left, self.parallel)

    def finished(self, record: dict[str, Any], note: str = "") -> str:
        """Count a finished cell's ``record`` (``note``: e.g. "ran elsewhere"); log and return its line."""
        cell = record.get("cell") or {}
        key = (str(cell.get("label")), str(cell.get("dataset")))
        seconds = (record.get("timings") or {}).get("total_s")
        if isinstance(seconds, (int, float)) and seconds >= 0:
            self.times[key].append(float(seconds))
        else:
            seconds = None
        if self.left[key] > 0:
            self.left[key] -= 1
        self.done += 1
        title = f"{cell.get('dataset')}/{cell.get('label')}/seed{cell.get('seed')}"
        status = _status(record) + (f", {note}" if note else "")
        elapsed = duration(self.clock() - self.start)
        line = (f"cell {self.done}/{self.total} {title}: {status} in {wall_time(seconds)}; {elapsed} elapsed, "
                f"{self.estimate().describe()}")
        log.info(line)
        self._last = f"last {title} {status} {wall_time(seconds)}"
        self._show(refresh=False)
        if self._bar is not None:
            self._bar.update(1)
            self._bar.refresh()  # the new count and postfix at once, however soon after the last refresh
        return line

    def running(self, text: str) -> None:
        """What runs now (the executor's cells and their epochs), shown on the bar."""
        self._running = text
        self._show()

    def executor_bar(self) -> _ExecutorView:
        """What the local executor draws on in place of a bar of its own: its running cells land on this bar;
        cells are counted here, from the records (:meth:`finished`), not by the executor."""
        return _ExecutorView(self)

    def _show(self, refresh: bool = True) -> None:
        if not self.drawn:
            return
        parts = [self.estimate().describe(short=True), self._last, self._running and f"running {self._running}"]
        self._bar.set_postfix_str("; ".join(part for part in parts if part), refresh=refresh)


class _ExecutorView:
    """The face of a tqdm bar the local executor uses (:func:`crlbench.suites.executor.run_cells`)."""

    def __init__(self, progress: CellProgress) -> None:
        self.progress = progress

    def set_postfix_str(self, text: str, refresh: bool = True) -> None:  # noqa: ARG002 - tqdm's signature
        self.progress.running(text)

    def update(self, n: int = 1) -> None:  # counted from the records instead
        pass

    def close(self) -> None:  # the suite closes its bar
        self.progress.running("")


def _status(record: dict[str, Any]) -> str:
    from crlbench.core.records import is_partial

    status = str(record.get("status", "?"))
    return "partial (a metric failed)" if is_partial(record) else status.replace("_", " ")


def _bar(total: int, enabled: bool) -> Any:
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="cells", unit="cell", disable=None,
                bar_format="{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} [{elapsed} elapsed{postfix}]")
