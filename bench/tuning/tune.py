"""Hyperparameter tuning with Optuna: a study whose objective is "run these cells, return the selection metric".

Each trial samples the search space of a :class:`~crlbench.tuning.tune_config.TuneConfig`, builds the suite of
one model on one dataset over the tuning seeds (:meth:`TuneConfig.suite`) and runs its cells in this
process with :func:`crlbench.suites.runner.run_cell` under ``<workdir>/tune/<study>``. Its value is the mean
over seeds of the objective on the val split. A cell that fails (training diverged, ...) fails the
trial (state FAIL), not the study.

Storage and workers. A study lives in an RDB storage (default ``sqlite:///<workdir>/optuna.db``;
``postgresql+psycopg2://...`` for workers on several machines) opened with a heartbeat: a worker that
dies mid-trial leaves a RUNNING trial that is marked FAIL (and retried ``trials.max_retry`` times)
once its heartbeat is older than the grace period, by the next trial start of any worker or by the
next invocation. Rerunning with the same study name resumes: an invocation runs only what is
missing to reach ``n_trials`` trials in all (complete, pruned or failed). ``workers`` local
processes (this one and ``workers - 1`` spawned ones) share the missing trials exactly, each taking
the next trial when it is free; a trial's cells compute on their own ``threads`` (1 by default,
:func:`crlbench.suites.executor.cell_threads`), the process's ``cores // workers`` threads serve the rest.

Progress. The invoking process logs a line per finished trial of this invocation (its value, state, wall
time, the best so far, the elapsed time and an ETA: :mod:`crlbench.tuning.progress`), after each of its own
trials and, once it waits for its workers, every ``POLL_S``. :func:`stored_study` reads a study without
running anything (``crlbench tune --export-only``).

Names. The study's objective is named (``Study.set_metric_names``: :attr:`TuneConfig.objective_name`), so
optuna-dashboard and Optuna's plots show it rather than "Objective 0"; the study's user attribute
``crlbench.intermediate`` says what the intermediate values are (:attr:`TuneConfig.intermediate_name`).

Randomness. Trial ``n`` is sampled with a sampler of its own seeded from ``(sampler.seed, n)``
(:func:`crlbench.tuning.tune_config.build_trial_sampler`): trial numbers are unique in a study, so two launches
on one study, local workers and workers on other machines never sample with the same randomness,
and a study is reproducible: trial ``n`` draws the same randomness whoever runs it, so a resumed
study samples what one uninterrupted launch would have (the random sampler: the same values; TPE:
the same values given the same earlier results).
Workers on other machines joining the same study stop at ``n_trials`` in all too (each checks the
count before it starts a trial), give or take trials started at the same moment. Datasets are
cached in ``<workdir>/data``, shared with suites and other studies.

MLflow (``tracking_uri``): experiment ``crlbench-tune/<study>``, one parent run per study (reused
when resumed), a child run per trial (params, ``objective``, the intermediate values under a metric
that names them (:attr:`TuneConfig.intermediate_key`, e.g. ``intermediate/neg_val_reconstruction_mse``),
the tag ``optuna.state`` and the run status FINISHED / KILLED / FAILED for complete / pruned / failed),
and each trial's cells as children of the trial's run; every run carries MLflow's source tags
(:func:`crlbench.tracking.mlflow_runs.source_tags`). Worker processes never talk to MLflow: the
invoking process logs the trials its workers ran (and those it found dead) as they finish, so a
SQLite store has one writer.

This module owns :func:`tune`, which puts the parts together; each part has its module, and every public
name is re-exported here: the storage and the study (:mod:`crlbench.tuning.study`), one trial's objective
(:mod:`crlbench.tuning.objective`), the worker processes (:mod:`crlbench.tuning.workers`), the export of the
best hyperparameters (:mod:`crlbench.tuning.export`), the study's report (:mod:`crlbench.tuning.study_report`)
and MLflow (:mod:`crlbench.tuning.trial_runs`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from crlbench.core.errors import ConfigError
from crlbench.suites.suite_config import check_name
from crlbench.tracking.store import check_tracking
from crlbench.tuning.export import export_best, export_path, exported_study
from crlbench.tuning.objective import (CELLS, ERROR, INVOCATION, OBJECTIVE_S, RUNNER_S, SEED_VALUES, VALIDATION_SAMPLES,
                                       WORKER, TrialFailed, TrialObjective, runner_seconds)
from crlbench.tuning.progress import TrialProgress
from crlbench.tuning.study import (GRACE_PERIOD_S, HEARTBEAT_INTERVAL_S, INTERMEDIATE, SQLITE_TIMEOUT_S, STATES,
                                   STORAGE_ATTEMPTS, STORAGE_FILE, STORAGE_SCHEMES, StudySettings, counted_trials,
                                   default_storage, open_storage, open_study, state_counts, stored_study,
                                   study_folder)
from crlbench.tuning.study_report import IMPORTANCE_MIN_TRIALS, study_report
from crlbench.tuning.trial_runs import RUN_STATUS, TuneTracker
from crlbench.tuning.tune_config import TuneConfig, load_tune
from crlbench.tuning.workers import POLL_S, run_workers, share_data_cache

if TYPE_CHECKING:
    import optuna

__all__ = ["TrialFailed", "TuneConfig", "default_storage", "export_best", "export_path", "exported_study", "load_tune",
           "open_storage", "state_counts", "stored_study", "study_folder", "study_report", "tune",
           # the parts' other names, where they were before the parts had modules of their own
           "CELLS", "ERROR", "GRACE_PERIOD_S", "HEARTBEAT_INTERVAL_S", "IMPORTANCE_MIN_TRIALS", "INTERMEDIATE",
           "INVOCATION", "OBJECTIVE_S", "POLL_S", "RUNNER_S", "RUN_STATUS", "SEED_VALUES", "SQLITE_TIMEOUT_S",
           "STATES", "STORAGE_ATTEMPTS", "STORAGE_FILE", "STORAGE_SCHEMES", "VALIDATION_SAMPLES", "WORKER",
           "StudySettings", "TrialObjective", "TuneTracker", "runner_seconds"]

log = logging.getLogger(__name__)


def tune(config: TuneConfig, *, storage: str | None = None, study_name: str | None = None,
         n_trials: int | None = None, workers: int = 1, workdir: str | os.PathLike = "runs",
         tracking_uri: str | None = None, heartbeat_interval: int = HEARTBEAT_INTERVAL_S,
         grace_period: int | None = GRACE_PERIOD_S) -> optuna.Study:
    """Create or resume the study and run its missing trials; returns the study (reading the storage).

    Args:
        config: the validated tuning config (:func:`load_tune`).
        storage: an RDB URL; default ``sqlite:///<workdir>/optuna.db``.
        study_name: default ``config.name``; a name of :data:`crlbench.suites.suite_config.NAME_RULE` (it names
            the folder ``<workdir>/tune/<study>``), else :class:`ConfigError`.
        n_trials: trials in all (complete + pruned + failed), default ``config.trials.n_trials``.
        workers: local worker processes; 1 runs the trials in this process.
        workdir: cells go to ``<workdir>/tune/<study>``.
        tracking_uri: MLflow tracking URI, or None for no tracking.
        heartbeat_interval, grace_period: seconds; a trial whose worker has sent no heartbeat for
            ``grace_period`` is marked FAIL.
    """
    if not isinstance(workers, int) or workers < 1:
        raise ConfigError(f"tune: 'workers' must be a positive integer; got {workers!r}")
    total = config.trials.n_trials if n_trials is None else n_trials
    if not isinstance(total, int) or total < 1:
        raise ConfigError(f"tune: 'n_trials' must be a positive integer; got {total!r}")
    workdir = Path(workdir).resolve()
    study_name = (check_name(config.name, f"{config.source or 'tune config'}: key 'name'") if study_name is None
                  else check_name(study_name, "tune: 'study_name'"))
    url = storage or default_storage(workdir)
    if tracking_uri is not None:
        check_tracking(tracking_uri)
    adopted: list[int] = []  # trials of dead workers that this invocation marked FAIL
    study = open_study(config, url, study_name, open_storage(
        url, heartbeat_interval=heartbeat_interval, grace_period=grace_period, max_retry=config.trials.max_retry,
        on_stale=adopted.append))
    counted = counted_trials(study)
    settings = StudySettings(url, study_name, total, workdir, heartbeat_interval, grace_period, uuid.uuid4().hex)
    missing = max(0, total - counted)
    workers = min(workers, missing)
    log.info("study %s: %d of %d trials there, %d to run on %d worker(s)", study_name, counted, total, missing, workers)
    tracker = TuneTracker(tracking_uri, study_name, config, url, settings.cells_root) if tracking_uri else None
    progress = TrialProgress(study_name, missing, max(1, workers))
    with tracker if tracker is not None else contextlib.nullcontext():
        def log_finished(*_: Any) -> None:
            progress.report(study, [trial for trial in study.get_trials(deepcopy=False)
                                    if trial.user_attrs.get(INVOCATION) == settings.invocation])
            if tracker is not None:
                tracker.log_finished(study, settings.invocation, adopted)

        log_finished()
        if missing:
            share_data_cache(settings)
            run_workers(config, settings, workers, missing, on_trial=log_finished, on_stale=adopted.append)
        log_finished()
        if tracker is not None:
            tracker.finish(study)
    return study
