"""A line per finished trial of ``crlbench tune``, with the study's best value so far, the elapsed time and an ETA.

A study trains for minutes to hours and drew nothing on screen; now each trial this invocation ran logs,
as soon as the launching process sees it finished (after each of its own trials, and every second
once it waits for its other workers), one line to :data:`crlbench.suites.progress.PROGRESS_LOGGER` at
INFO, which ``crlbench tune`` prints on stdout::

    study icm_vae-pendulum: trial 4 complete (value 0.8123) in 4:12; best 0.85 at trial 2; 3/12 trials, 12:40 elapsed, ETA 37:48

The ETA is :func:`crlbench.suites.progress.estimate_eta` over one kind of work: the mean wall time of the
trials this invocation finished (pruned and failed ones included: what they cost) times the trials left
to it, divided by its workers (at most the trials left); "ETA unknown" before its first trial ends. A
trial's wall time is Optuna's, from its start to its completion.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

from crlbench.suites.progress import PROGRESS_LOGGER, duration, estimate_eta, wall_time

log = logging.getLogger(PROGRESS_LOGGER)

STATE_WORDS = {"COMPLETE": "complete", "PRUNED": "pruned", "FAIL": "failed"}
ERROR_ATTR = "crlbench.error"  # the user attribute a failed trial's reason is kept in (crlbench.tuning.tune)
ERROR_CHARS = 160  # of a failed trial's reason, on its line


class TrialProgress:
    """The progress of the ``total`` trials one invocation of a study runs on ``parallel`` workers."""

    def __init__(self, study_name: str, total: int, parallel: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.study_name, self.total, self.parallel = study_name, total, parallel
        self.clock = clock
        self.start = clock()
        self.seen: set[int] = set()
        self.times: list[float] = []

    def report(self, study: Any, trials: Iterable[Any]) -> list[str]:
        """Log (and return) the line of each finished trial of ``trials`` (Optuna ``FrozenTrial``s: this
        invocation's) not reported yet; ``study`` gives the best value so far."""
        fresh = sorted((trial for trial in trials if trial.state.name in STATE_WORDS and trial.number not in self.seen),
                       key=lambda trial: trial.number)
        if not fresh:
            return []
        best = _best(study)
        lines = []
        for trial in fresh:
            self.seen.add(trial.number)
            seconds = None
            if trial.datetime_start is not None and trial.datetime_complete is not None:
                seconds = (trial.datetime_complete - trial.datetime_start).total_seconds()
                self.times.append(seconds)
            lines.append(self.line(trial.number, trial.state.name, trial.value, seconds, best,
                                   trial.user_attrs.get(ERROR_ATTR)))
        for line in lines:
            log.info(line)
        return lines

    def line(self, number: int, state: str, value: float | None, seconds: float | None,
             best: tuple[float, int] | None, error: str | None = None) -> str:
        """One trial's line (the module docstring's), counting the trials reported so far as done."""
        done = len(self.seen)
        outcome = STATE_WORDS.get(state, state.lower())
        if value is not None and state == "COMPLETE":
            outcome += f" (value {value:.6g})"
        if error and state == "FAIL":
            outcome += f" ({_shortened(error)})"
        best_text = f"best {best[0]:.6g} at trial {best[1]}" if best is not None else "no complete trial yet"
        estimate = estimate_eta({"trial": self.times}, {"trial": max(0, self.total - done)}, self.parallel)
        return (f"study {self.study_name}: trial {number} {outcome} in {wall_time(seconds)}; {best_text}; "
                f"{done}/{self.total} trials, {duration(self.clock() - self.start)} elapsed, "
                f"{estimate.describe('trials')}")


def _best(study: Any) -> tuple[float, int] | None:
    """The study's best value and its trial's number (every invocation's trials), or None."""
    try:
        best = study.best_trial
    except ValueError:  # no complete trial
        return None
    return best.value, best.number


def _shortened(text: str) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= ERROR_CHARS else line[:ERROR_CHARS - 3] + "..."
