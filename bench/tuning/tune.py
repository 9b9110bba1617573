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
"""

from __future__ import annotations

import collections
import concurrent.futures as futures
import contextlib
import dataclasses
import datetime
import functools
import json
import logging
import multiprocessing
import os
import re
import socket
import textwrap
import time
import uuid
import warnings
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import yaml

from crlbench.core import registry
from crlbench.core.errors import ConfigError, CrlbenchError
from crlbench.core.files import atomic_write, ensure_folder, file_lock
from crlbench.suites.results import cell_dir, read_result, write_json
from crlbench.suites.suite_config import check_name
from crlbench.tracking.mlflow_runs import metric_name
from crlbench.tuning.progress import TrialProgress
from crlbench.tuning.tune_config import (TuneConfig, build_pruner, build_sampler, build_trial_sampler,
                                         experimental_features, load_tune)

if TYPE_CHECKING:
    import optuna

__all__ = ["TrialFailed", "TuneConfig", "default_storage", "export_best", "export_path", "exported_study", "load_tune",
           "open_storage", "state_counts", "stored_study", "study_folder", "study_report", "tune"]

log = logging.getLogger(__name__)

STORAGE_FILE = "optuna.db"
STORAGE_SCHEMES = ("sqlite", "postgresql", "mysql")
HEARTBEAT_INTERVAL_S = 10
GRACE_PERIOD_S = 30  # a RUNNING trial without a heartbeat for this long belongs to a dead worker
SQLITE_TIMEOUT_S = 60  # workers share one SQLite file: a writer waits for the lock rather than failing
STORAGE_ATTEMPTS = 3  # opening a storage whose tables another launch is creating at the same moment
POLL_S = 1.0  # how often the invoking process looks for trials to log while workers run
VALIDATION_SAMPLES = 256  # validation images whose reconstruction error the per-epoch pruners judge
RUN_STATUS = {"COMPLETE": "FINISHED", "PRUNED": "KILLED", "FAIL": "FAILED"}
STATES = ("COMPLETE", "PRUNED", "FAIL", "RUNNING", "WAITING")
# Trial user attributes written by the objective.
INVOCATION, WORKER, CELLS, SEED_VALUES, RUNNER_S, OBJECTIVE_S, ERROR = (
    "crlbench.invocation", "crlbench.worker", "crlbench.cells", "crlbench.seed_values", "crlbench.runner_s",
    "crlbench.objective_s", "crlbench.error")
INTERMEDIATE = "crlbench.intermediate"  # study user attribute: what the trials' intermediate values are
IMPORTANCE_MIN_TRIALS = 20  # below this many complete trials, parameter importances are noise


class TrialFailed(CrlbenchError):
    """A trial's cell failed, or its sampled hyperparameters do not fit the model: FAIL, and the study goes on."""


@dataclass(frozen=True)
class StudySettings:
    """What every worker of one invocation shares (sent to spawned workers)."""

    storage: str
    study_name: str
    n_trials: int  # in all, over every invocation and worker
    workdir: Path
    heartbeat_interval: int
    grace_period: int | None
    invocation: str  # tags the trials this invocation ran, so that it logs them (and only them)

    @property
    def cells_root(self) -> Path:
        return study_folder(self.workdir, self.study_name)


# --- the study ----------------------------------------------------------------------------------

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
        from crlbench.tracking.mlflow_runs import check_tracking

        check_tracking(tracking_uri)
    adopted: list[int] = []  # trials of dead workers that this invocation marked FAIL
    study = _open_study(config, url, study_name, open_storage(
        url, heartbeat_interval=heartbeat_interval, grace_period=grace_period, max_retry=config.trials.max_retry,
        on_stale=adopted.append))
    counted = _counted_trials(study)
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
            _share_data_cache(settings)
            _run_workers(config, settings, workers, missing, on_trial=log_finished, on_stale=adopted.append)
        log_finished()
        if tracker is not None:
            tracker.finish(study)
    return study


def study_folder(workdir: str | os.PathLike, study_name: str) -> Path:
    """``<workdir>/tune/<study>``, where a study keeps its cells and report; the name is checked
    (:func:`crlbench.suites.suite_config.check_name`), so the folder is always a child of ``<workdir>/tune``."""
    root = Path(workdir) / "tune"
    folder = root / check_name(study_name, "study name")
    if folder.parent != root:  # what the name rule guarantees, asserted where the path is built
        raise ConfigError(f"study name {study_name!r} would leave {root}")
    return folder


def default_storage(workdir: str | os.PathLike) -> str:
    """``sqlite:///<absolute workdir>/optuna.db``, creating the work directory."""
    folder = Path(workdir).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{(folder / STORAGE_FILE).as_posix()}"


def open_storage(url: str, *, heartbeat_interval: int = HEARTBEAT_INTERVAL_S, grace_period: int | None = GRACE_PERIOD_S,
                 max_retry: int = 0, on_stale: Callable[[int], None] | None = None) -> optuna.storages.RDBStorage:
    """An Optuna RDB storage with a heartbeat; a stale trial is retried up to ``max_retry`` times and
    its number passed to ``on_stale``."""
    import optuna
    from crlbench.tracking.mlflow_runs import _first_line, _redacted, _scheme, _sqlite_path

    scheme = _scheme(url)
    if scheme not in STORAGE_SCHEMES:
        raise ConfigError(f"storage {_redacted(url)!r}: unknown scheme {scheme!r}; accepted: sqlite:///path/to/"
                          f"{STORAGE_FILE}, postgresql+psycopg2://user:password@host/database, mysql://...")
    creating: Any = contextlib.nullcontext()
    if scheme == "sqlite":
        path = _sqlite_path(url)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise ConfigError(f"storage {_redacted(url)!r}: cannot create the folder {path.parent}: "
                              f"{error.strerror or error}") from None
        # Local launches create Optuna's tables one at a time (two at once on a fresh file: a UNIQUE
        # constraint failure in the second); database servers are covered by the retry below.
        creating = file_lock(path.with_name(path.name + ".lock"))
        engine_kwargs: dict[str, Any] = {"connect_args": {"timeout": SQLITE_TIMEOUT_S}}
    else:
        engine_kwargs = {"pool_pre_ping": True}
    with experimental_features():
        retry = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=max_retry)

        def stale(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
            log.warning("study %s: trial %d had no heartbeat for %s s (its worker died); marked FAIL",
                        study.study_name, trial.number, grace_period or 2 * heartbeat_interval)
            if on_stale is not None:
                on_stale(trial.number)
            retry(study, trial)

        for attempt in range(STORAGE_ATTEMPTS):
            try:
                with creating:
                    return optuna.storages.RDBStorage(
                        url, engine_kwargs=engine_kwargs, heartbeat_interval=heartbeat_interval,
                        grace_period=grace_period, heartbeat_stale_trial_callback=stale)
            except Exception as error:  # noqa: BLE001 - sqlalchemy and driver errors alike
                if attempt + 1 < STORAGE_ATTEMPTS and _created_meanwhile(error):
                    log.info("storage %s: another launch was creating its tables; trying again", _redacted(url))
                    time.sleep(0.5 * (attempt + 1))
                    continue
                raise ConfigError(f"storage {_redacted(url)!r}: cannot open it: {_first_line(error)}") from error
    raise AssertionError("unreachable")


def _created_meanwhile(error: BaseException) -> bool:
    """Whether ``error`` is another process creating the storage's tables at the same moment."""
    text = str(error)
    return type(error).__name__ == "IntegrityError" or "already exists" in text or "UNIQUE constraint" in text


def _open_study(config: TuneConfig, url: str, study_name: str, storage: Any) -> optuna.Study:
    """The study, created or loaded; its direction checked, the trials of dead workers marked FAIL."""
    import optuna
    from crlbench.tracking.mlflow_runs import _redacted

    study = optuna.create_study(storage=storage, study_name=study_name, direction=config.objective.direction,
                                load_if_exists=True, sampler=build_sampler(config.sampler, config.sampler.seed),
                                pruner=build_pruner(config.pruner))
    stored = study.direction.name.lower()
    if stored != config.objective.direction:
        raise ConfigError(f"study {study_name!r} in {_redacted(url)!r} was created to {stored} its objective; "
                          f"{config.source or config.name} asks to {config.objective.direction}: use another study name")
    if "crlbench.config" not in study.user_attrs:
        study.set_user_attr("crlbench.config", json.loads(json.dumps(config.to_dict(), default=str)))
        study.set_user_attr("crlbench.objective", config.objective.describe())
    _name_values(study, config)
    _fail_stale_trials(study)
    return study


def _name_values(study: optuna.Study, config: TuneConfig) -> None:
    """Name the objective (optuna-dashboard and Optuna's plots show "Objective 0" otherwise) and note
    what the intermediate values are (the study's user attribute ``crlbench.intermediate``)."""
    if study.metric_names != [config.objective_name]:
        with experimental_features():
            study.set_metric_names([config.objective_name])
    if config.intermediate_name is not None and study.user_attrs.get(INTERMEDIATE) != config.intermediate_name:
        study.set_user_attr(INTERMEDIATE, config.intermediate_name)


def _counted_trials(study: optuna.Study) -> int:
    """Trials that use up the budget: every state but WAITING (a waiting retry runs in place of a new trial)."""
    from optuna.trial import TrialState

    return len([t for t in study.get_trials(deepcopy=False) if t.state != TrialState.WAITING])


def _fail_stale_trials(study: optuna.Study) -> None:
    import optuna

    with experimental_features():
        optuna.storages.fail_stale_trials(study)


def _optimize(config: TuneConfig, settings: StudySettings, tickets: Any, worker: int,
              callbacks: Sequence[Callable] = (), on_stale: Callable[[int], None] | None = None) -> None:
    """Run trials in this process while ``tickets`` (a shared ``multiprocessing.Value``) has some and
    the study has fewer than ``n_trials`` trials (workers of other invocations count too)."""
    import optuna

    registry.load_plugins(config.plugins)
    storage = open_storage(settings.storage, heartbeat_interval=settings.heartbeat_interval,
                           grace_period=settings.grace_period, max_retry=config.trials.max_retry, on_stale=on_stale)
    # Trial n draws with a sampler seeded from (sampler seed, n): distinct for every trial of the study
    # wherever and whenever it runs, and the same for trial n whichever worker or launch runs it.
    study = optuna.load_study(study_name=settings.study_name, storage=storage,
                              sampler=build_trial_sampler(config.sampler, config.sampler.seed),
                              pruner=build_pruner(config.pruner))
    objective = TrialObjective(config, settings.study_name, settings.cells_root, settings.invocation)
    deadline = None if config.trials.timeout_s is None else time.monotonic() + config.trials.timeout_s
    while ((deadline is None or time.monotonic() < deadline) and _counted_trials(study) < settings.n_trials
           and _take_ticket(tickets)):
        study.optimize(objective, n_trials=1, catch=(TrialFailed,), callbacks=callbacks)


def _take_ticket(tickets: Any) -> bool:
    """Claim one of the trials left to this invocation: an exact budget however fast each worker is."""
    with tickets.get_lock():
        if tickets.value <= 0:
            return False
        tickets.value -= 1
        return True


def _run_workers(config: TuneConfig, settings: StudySettings, workers: int, trials: int,
                 on_trial: Callable[..., None], on_stale: Callable[[int], None]) -> None:
    """Run ``trials`` trials in this process and ``workers - 1`` spawned ones, each taking the next
    trial when it is free.

    ``on_trial`` runs after each trial of this process and, once this process is done, every
    ``POLL_S`` seconds until the other workers are (MLflow logging: this process is the only writer).
    Every process gets ``cores // workers`` torch threads outside its cells (which compute on their own
    ``threads``); this one's are restored afterwards.
    """
    import optuna
    import torch
    from crlbench.suites.executor import threads_per_worker

    context = multiprocessing.get_context("spawn")
    tickets = context.Value("i", trials)
    if workers == 1:
        _optimize(config, settings, tickets, 0, callbacks=[on_trial], on_stale=on_stale)
        return
    threads = threads_per_worker(workers)
    pool = futures.ProcessPoolExecutor(workers - 1, mp_context=context, initializer=_start_worker,
                                       initargs=(threads, tickets, os.getpid()))
    finished = False
    try:
        pending = {pool.submit(_worker, config, settings, index, optuna.logging.get_verbosity())
                   for index in range(1, workers)}
        own_threads = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            _optimize(config, settings, tickets, 0, callbacks=[on_trial], on_stale=on_stale)
        finally:
            torch.set_num_threads(own_threads)
        while pending:
            done, pending = futures.wait(pending, timeout=POLL_S, return_when=futures.FIRST_COMPLETED)
            on_trial()
            for future in done:
                _worker_result(future, settings)
        finished = True
    finally:
        if not finished:  # the other workers finish the trials they are running and start no more
            with tickets.get_lock():
                tickets.value = 0
        # Every worker has returned when all went well; their interpreters then take a second or two
        # to exit (torch's teardown), which need not hold up this process.
        pool.shutdown(wait=not finished, cancel_futures=True)


def _worker_result(future: futures.Future, settings: StudySettings) -> None:
    """Raise what a spawned worker raised; a dead worker as a :class:`CrlbenchError` saying how to resume."""
    try:
        future.result()
    except BrokenProcessPool:
        raise CrlbenchError(
            f"study {settings.study_name}: a worker process ended abruptly (killed, or out of memory); run the "
            f"same command again to resume: the trial it was running is marked FAIL once "
            f"{settings.grace_period or 2 * settings.heartbeat_interval} s have passed") from None


_worker_tickets: Any = None  # a spawned worker's handle on the invocation's tickets


def _start_worker(threads: int, tickets: Any, parent_pid: int) -> None:
    """A spawned worker's initializer: it dies with the launcher ``parent_pid`` whatever kills it (as suite
    workers do: crlbench.suites.executor.die_with_parent), its share of the cores, and the tickets (shared
    memory, which can only be handed over when the process starts)."""
    from crlbench.suites.executor import _limit_threads, die_with_parent

    die_with_parent(parent_pid)
    global _worker_tickets
    _limit_threads(threads)
    _worker_tickets = tickets


def _worker(config: TuneConfig, settings: StudySettings, worker: int, verbosity: int) -> None:
    """A spawned worker: trials until the tickets run out; its cells use GPU ``worker mod GPUs`` (the
    launcher's own trials, worker 0, torch's current GPU: crlbench.suites.runner.resolve_device)."""
    import optuna
    from crlbench.suites.executor import WORKER_SLOT

    os.environ[WORKER_SLOT] = str(worker)

    optuna.logging.set_verbosity(verbosity)
    _optimize(config, settings, _worker_tickets, worker)


def _share_data_cache(settings: StudySettings) -> None:
    """Point the study's data cache at ``<workdir>/data``, where suites keep theirs, so that every
    study does not generate the datasets again (where symbolic links cannot be made, it keeps its own)."""
    shared, own = settings.workdir / "data", settings.cells_root / "data"
    if own.exists() or own.is_symlink():
        return
    settings.cells_root.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(OSError):
        shared.mkdir(parents=True, exist_ok=True)
        own.symlink_to(shared, target_is_directory=True)


# --- one trial ----------------------------------------------------------------------------------

class TrialObjective:
    """The objective: run the trial's cells (one per tuning seed), return the mean objective over seeds."""

    def __init__(self, config: TuneConfig, study_name: str, workdir: Path, invocation: str) -> None:
        self.config = config
        self.study_name = study_name
        self.workdir = Path(workdir)
        self.invocation = invocation

    def __call__(self, trial: optuna.Trial) -> float:
        import optuna
        from crlbench.suites.runner import run_cell

        start = time.perf_counter()
        sampled = {param.name: param.suggest(trial) for param in self.config.search_space}
        trial.set_user_attr(INVOCATION, self.invocation)
        trial.set_user_attr(WORKER, f"{socket.gethostname()}:{os.getpid()}")
        try:
            cells = self.config.suite(sampled, self.study_name).cells()
        except ConfigError as error:
            raise _failed(trial, f"the sampled hyperparameters do not fit the model: {error}") from None
        trial.set_user_attr(CELLS, [cell.hash for cell in cells])
        values: dict[str, float] = {}
        runner_s = 0.0
        for index, cell in enumerate(cells):
            hooks = [self._pruning_hook(trial, cell, index)] if self.config.pruner.per_epoch else []
            with file_lock(ensure_folder(cell_dir(self.workdir, cell.hash)) / ".lock"):  # another worker may have sampled the same values
                record = run_cell(cell, self.workdir, epoch_hooks=hooks, propagate=(optuna.TrialPruned,))
            runner_s += runner_seconds(record)
            trial.set_user_attr(RUNNER_S, runner_s)
            if record["status"] != "ok":
                error = record.get("error") or {}
                raise _failed(trial, f"cell {cell.title} ({cell.hash}) failed: {error.get('type')}: {error.get('message')}")
            values[str(cell.seed)] = self.config.objective.value(record["scores"], self.config.source or self.config.name)
            trial.set_user_attr(SEED_VALUES, values)
            if self.config.pruner.type == "wilcoxon":
                trial.report(values[str(cell.seed)], index)
                if trial.should_prune():
                    raise optuna.TrialPruned(f"pruned after {cell.title}")
        trial.set_user_attr(OBJECTIVE_S, time.perf_counter() - start)
        return float(np.mean(list(values.values())))

    def _pruning_hook(self, trial: optuna.Trial, cell: Any, index: int) -> Callable[[Any, int, dict], None]:
        """After each epoch, report the validation reconstruction error (negated when the objective is
        maximised, so that higher is better for the pruner as for the study) and prune if told to.
        Steps run on across seeds: seed ``index`` reports ``index * epochs + epoch``."""
        import optuna
        from crlbench.suites.runner import reconstruction_error

        images, epochs = _validation_sample(self.workdir, cell.dataset, json.dumps(cell.dataset_params, sort_keys=True),
                                            cell.budget)
        sign = -1.0 if self.config.objective.direction == "maximize" else 1.0

        def hook(model: Any, epoch: int, losses: dict[str, float]) -> None:
            trial.report(sign * reconstruction_error(model, images), index * epochs + epoch)
            if trial.should_prune():
                raise optuna.TrialPruned(f"pruned after epoch {epoch} of {cell.title}")

        return hook


def _failed(trial: optuna.Trial, message: str) -> TrialFailed:
    """The exception that fails ``trial``, its message kept as the user attribute ``crlbench.error``."""
    trial.set_user_attr(ERROR, message)
    return TrialFailed(message)


def runner_seconds(record: dict[str, Any]) -> float:
    """The time the runner recorded for training, encoding and metrics of one cell."""
    timings = record.get("timings") or {}
    metrics = timings.get("metrics_s") or {}
    return float(timings.get("train_s", 0.0) + timings.get("encode_s", 0.0) + sum(metrics.values()))


@functools.lru_cache(maxsize=8)
def _validation_sample(workdir: Path, dataset: str, params_json: str, budget: Any) -> tuple[np.ndarray, int]:
    """A fixed sample of the validation images the runner evaluates on, and the epochs of ``budget``."""
    from crlbench.suites.runner import training_and_evaluation_splits

    data = registry.dataset(dataset, cache_dir=workdir / "data", **json.loads(params_json))
    train_split, val_split = training_and_evaluation_splits(data, "val")
    rows = np.random.default_rng(0).choice(len(val_split), size=min(VALIDATION_SAMPLES, len(val_split)), replace=False)
    batches = -(-len(train_split) // budget.batch_size)
    epochs = [-(-budget.steps // batches)] if budget.steps is not None else []
    epochs += [budget.epochs] if budget.epochs is not None else []
    return val_split.images[np.sort(rows)], min(epochs)


# --- results ------------------------------------------------------------------------------------

def export_path(config: TuneConfig, study_name: str, out_dir: str | os.PathLike = "configs/tuned") -> Path:
    """Where :func:`export_best` writes study ``study_name``'s best hyperparameters: ``<out_dir>/<study>.yaml``
    when the study's name starts with ``<model>-<dataset>`` (as the shipped configs' names do, so
    ``icm_vae-pendulum`` exports ``icm_vae-pendulum.yaml``), else ``<out_dir>/<model>-<dataset>-<study>.yaml``:
    the file always names the pair and the study, and two studies of one pair export two files."""
    pair = f"{config.model.name}-{config.dataset.name}"
    check_name(study_name, "study name")
    stem = study_name if study_name == pair or study_name.startswith(f"{pair}-") else f"{pair}-{study_name}"
    return Path(out_dir) / f"{stem}.yaml"


def exported_study(path: str | os.PathLike) -> str | None:
    """The study an exported model file came from (its header line), or None (a file written otherwise)."""
    with contextlib.suppress(OSError, UnicodeDecodeError):
        with open(path, encoding="utf-8") as handle:
            for line in handle:
                if not line.startswith("#"):
                    break
                match = _EXPORT_HEADER.match(line)
                if match:
                    return match.group(1)
    return None


_EXPORT_HEADER = re.compile(r"# Exported by `crlbench tune` from study '([^']*)'")


def stored_study(config: TuneConfig, *, storage: str | None = None, study_name: str | None = None,
                 workdir: str | os.PathLike = "runs") -> optuna.Study:
    """The study as its storage holds it, for an export that runs no trial (``crlbench tune --export-only``):
    nothing is created, sampled or trained. ``storage``, ``study_name`` and ``workdir`` as for :func:`tune`.

    :class:`ConfigError` when the SQLite file does not exist, the storage holds no study of that name (the
    message lists those it holds), or the study was created to optimise the other way than ``config`` asks."""
    import optuna
    from crlbench.tracking.mlflow_runs import _redacted, _scheme, _sqlite_path

    workdir = Path(workdir).resolve()
    study_name = (check_name(config.name, f"{config.source or 'tune config'}: key 'name'") if study_name is None
                  else check_name(study_name, "tune: 'study_name'"))
    url = storage or f"sqlite:///{(workdir / STORAGE_FILE).as_posix()}"  # not default_storage: it creates the folder
    run_first = f"run `crlbench tune {config.source or '<tune file>'}` first"
    if _scheme(url) == "sqlite" and not _sqlite_path(url).is_file():
        raise ConfigError(f"study {study_name!r}: no study storage at {_sqlite_path(url)}; {run_first} (or give the "
                          f"--workdir or --storage the study ran with)")
    opened = open_storage(url)
    names = sorted(optuna.get_all_study_names(opened))
    if study_name not in names:
        raise ConfigError(f"study {study_name!r} is not in the storage {_redacted(url)!r} (it holds: "
                          f"{', '.join(names) or 'no study'}); {run_first}, or give its --study-name")
    study = optuna.load_study(study_name=study_name, storage=opened)
    stored = study.direction.name.lower()
    if stored != config.objective.direction:
        raise ConfigError(f"study {study_name!r} in {_redacted(url)!r} was created to {stored} its objective; "
                          f"{config.source or config.name} asks to {config.objective.direction}: not its tune file")
    return study


def export_best(study: optuna.Study, config: TuneConfig, out_dir: str | os.PathLike = "configs/tuned",
                force: bool = False) -> Path:
    """Write :func:`export_path` (``<out_dir>/<model>-<dataset>[-<study>].yaml``): a model file with the
    best trial's hyperparameters.

    A suite uses it as ``{config: ../tuned/<file>.yaml, label: <model> (tuned)}``. The
    hyperparameters are the tune config's model entry (for the tuned dataset) with the best values
    on top, so the file reproduces the best trial's cells. The same study's earlier export is
    replaced; a file exported by another study (or not by ``crlbench tune``) only with ``force``,
    else :class:`ConfigError`.
    """
    best = _best_trial(study)
    path = export_path(config, study.study_name, out_dir)
    if path.exists() and not force:
        owner = exported_study(path)
        if owner != study.study_name:
            made_by = f"study {owner!r}" if owner is not None else "something other than `crlbench tune`"
            raise ConfigError(f"{path} was exported by {made_by}, not study {study.study_name!r}: not overwritten; "
                              f"use --force to replace it, or another --study-name")
    finished = best.datetime_complete or datetime.datetime.now()
    counts = state_counts(study)
    budget = ", ".join(f"{key} {value}" for key, value in dataclasses.asdict(config.budget).items() if value is not None)
    description = (f"{config.model.name} tuned on {config.dataset.name} by Optuna study {study.study_name!r}: "
                   f"{config.objective.describe()} ({config.objective.direction}, val split, mean over seeds "
                   f"{list(config.seeds)}) = {best.value:.6g} at trial {best.number} of {sum(counts.values())} "
                   f"({finished:%Y-%m-%d}); budget {budget}")
    data = {"name": config.model.name, "description": description,
            "hyperparameters": _plain(config.hyperparameters(best.params))}
    header = (f"# Exported by `crlbench tune` from study {study.study_name!r}. Use it in a suite as\n"
              f"#   models: [{{config: ../tuned/{path.name}, label: {config.model.name} (tuned)}}]\n")
    text = header + yaml.safe_dump(data, sort_keys=False, width=100)
    atomic_write(path, lambda handle: handle.write(text.encode()))
    return path


def study_report(study: optuna.Study, out_dir: str | os.PathLike, storage_url: str | None = None) -> Path:
    """Write ``summary.json`` and Optuna's plots (``optimization_history.png``, ``param_importances.png``,
    ``parallel_coordinate.png``, and ``intermediate_values.png`` when trials reported some) to ``out_dir``;
    a plot that cannot be drawn is skipped with a note. Returns the path of ``summary.json``.

    The plots name the objective (the study's metric name) and the intermediate values (the study's
    ``crlbench.intermediate``) rather than "Objective Value". With fewer than
    :data:`IMPORTANCE_MIN_TRIALS` complete trials, ``importance_note`` (and the importance plot's
    title) says that the importances are noise."""
    import optuna
    from crlbench.tracking.mlflow_runs import _redacted

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    names = sorted({name for trial in complete for name in trial.params})
    states = state_counts(study)
    url = storage_url or _storage_url(study)
    target = (study.metric_names or [None])[0] or study.user_attrs.get("crlbench.objective") or "Objective Value"
    intermediate = study.user_attrs.get(INTERMEDIATE) or "intermediate value"
    importance_note = None
    if len(complete) < IMPORTANCE_MIN_TRIALS:
        importance_note = (f"only {len(complete)} complete trial(s): parameter importances from fewer than "
                           f"{IMPORTANCE_MIN_TRIALS} are noise; do not read them as which hyperparameter matters")
    summary: dict[str, Any] = {
        "study": study.study_name,
        "direction": study.direction.name.lower(),
        "objective": study.user_attrs.get("crlbench.objective"),
        "objective_name": target,
        "intermediate": study.user_attrs.get(INTERMEDIATE),
        "storage": _redacted(url) if url else None,
        "trials": sum(states.values()),
        "states": states,
        "best": None, "importances": None, "importance_note": importance_note, "figures": [], "notes": [],
    }
    if complete:
        best = _best_trial(study)
        summary["best"] = {"value": best.value, "params": best.params, "trial": best.number,
                           "seed_values": best.user_attrs.get(SEED_VALUES)}
    plotting = optuna.visualization.matplotlib
    plots: list[tuple[str, Callable | None, str | None]] = [
        ("optimization_history", lambda s: plotting.plot_optimization_history(s, target_name=target),
         "no complete trial" if not complete else None),
        ("parallel_coordinate", lambda s: plotting.plot_parallel_coordinate(s, target_name=target),
         "no complete trial" if not complete else None)]
    if any(trial.intermediate_values for trial in study.get_trials(deepcopy=False)):
        plots.append(("intermediate_values", lambda s: _labelled(plotting.plot_intermediate_values(s), intermediate),
                      None))
    importance_skip = ("fewer than 2 complete trials" if len(complete) < 2 else
                       "only one searched hyperparameter" if len(names) < 2 else None)
    if importance_skip is None:
        evaluator = optuna.importance.FanovaImportanceEvaluator(seed=0)
        with experimental_features():
            summary["importances"] = optuna.importance.get_param_importances(study, evaluator=evaluator)
        plots.insert(1, ("param_importances", lambda s: _noted(plotting.plot_param_importances(
            s, evaluator=evaluator, target_name=target), importance_note), None))
    else:
        plots.insert(1, ("param_importances", None, importance_skip))
    if importance_note is not None and importance_skip is None:
        summary["notes"].append(f"param_importances.png: {importance_note}")
    for name, plot, skip in plots:
        if skip is None:
            skip = _save_plot(plot, study, out / f"{name}.png")
        if skip is None:
            summary["figures"].append(f"{name}.png")
        else:
            summary["notes"].append(f"{name}.png skipped: {skip}")
    path = out / "summary.json"
    write_json(path, summary)
    return path


def _labelled(axes: Any, label: str) -> Any:
    """Optuna's intermediate-values plot with ``label`` on its value axis (it has no ``target_name``)."""
    axes.set_ylabel(label)
    return axes


def _noted(axes: Any, note: str | None) -> Any:
    """A plot with ``note`` (a warning about what it shows) under its title."""
    if note is not None:
        title = axes.get_title(loc="left") or axes.get_title()  # Optuna's style sets it on the left
        axes.set_title("")
        axes.set_title(f"{title}\n{textwrap.fill(note, 70)}", loc="left", fontsize=9)
    return axes


def _save_plot(plot: Callable, study: optuna.Study, path: Path) -> str | None:
    """Draw ``plot(study)`` to ``path``; the reason when it could not be drawn."""
    import matplotlib.pyplot as plt

    try:
        with warnings.catch_warnings():  # a single trial draws flat axes, which matplotlib warns about
            warnings.simplefilter("ignore")
            axes = plot(study)
    except Exception as error:  # noqa: BLE001 - a plot is a convenience; the summary is what matters
        return f"{type(error).__name__}: {error}"
    figure = (axes.flat[0] if isinstance(axes, np.ndarray) else axes).figure
    try:
        figure.savefig(path, dpi=110, bbox_inches="tight")
    finally:
        plt.close(figure)
    return None


def _storage_url(study: optuna.Study) -> str | None:
    """The URL of the study's RDB storage (Optuna wraps it in a cache), if it has one."""
    storage = getattr(study, "_storage", None)
    return getattr(getattr(storage, "_backend", storage), "url", None)


def _best_trial(study: optuna.Study) -> optuna.trial.FrozenTrial:
    try:
        return study.best_trial
    except ValueError:
        raise CrlbenchError(f"study {study.study_name!r} has no complete trial yet") from None


def state_counts(study: optuna.Study) -> dict[str, int]:
    """Trials per state name (COMPLETE, PRUNED, FAIL, RUNNING, WAITING), zeros included."""
    counts = collections.Counter(trial.state.name for trial in study.get_trials(deepcopy=False))
    return {state: counts.get(state, 0) for state in STATES}


def _plain(value: Any) -> Any:
    """Tuples as lists and numpy scalars as Python numbers, for YAML."""
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


# --- MLflow -------------------------------------------------------------------------------------

class TuneTracker:
    """The MLflow record of a study, as a context manager (see the module docstring).

    The parent run is the study's: found by its tag ``crlbench.kind = study`` when the study is
    resumed, else created. Trials already logged (tag ``optuna.trial_number``) are not logged again.
    """

    def __init__(self, uri: str, study_name: str, config: TuneConfig, storage_url: str, cells_root: Path) -> None:
        self.uri = uri
        self.study_name = study_name
        self.config = config
        self.storage_url = storage_url
        self.cells_root = Path(cells_root)
        self.experiment_name = f"crlbench-tune/{study_name}"
        self.experiment_id: str | None = None
        self.parent_run_id: str | None = None
        self.logged: set[int] = set()
        self.source: dict[str, str] = {}  # MLflow's source tags, on every run
        self._client: Any = None

    def __enter__(self) -> TuneTracker:
        from crlbench.tracking.mlflow_runs import TrackingUnavailable, _client, _first_line, _redacted

        try:
            self._client = _client(self.uri)
            self.experiment_id = self._experiment()
            self.parent_run_id = self._parent_run()
            self.logged = self._logged_trials()
        except Exception as error:  # noqa: BLE001 - reported as the user's URI being unusable
            raise TrackingUnavailable(f"tracking URI {_redacted(self.uri)!r}: cannot start the study's run: "
                                      f"{_first_line(error)}") from error
        log.info("MLflow: experiment %s, run %s", self.experiment_name, self.parent_run_id)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: Any) -> None:
        from crlbench.tracking.mlflow_runs import _first_line

        status = "FINISHED" if exc_type is None else "KILLED" if issubclass(exc_type, KeyboardInterrupt) else "FAILED"
        try:
            self._client.set_terminated(self.parent_run_id, status=status)
        except Exception as error:  # noqa: BLE001 - never mask the study's own outcome
            log.warning("MLflow: could not end run %s as %s: %s", self.parent_run_id, status, _first_line(error))

    def log_finished(self, study: optuna.Study, invocation: str, adopted: Iterable[int] = ()) -> None:
        """Log the finished trials this invocation ran (or found dead) that are not logged yet."""
        adopted = set(adopted)
        for trial in study.get_trials(deepcopy=False):
            if (trial.state.name in RUN_STATUS and trial.number not in self.logged
                    and (trial.user_attrs.get(INVOCATION) == invocation or trial.number in adopted)):
                self.log_trial(trial)

    def log_trial(self, trial: optuna.trial.FrozenTrial) -> str | None:
        """Log a finished trial and its cells; the trial's run id, or None (and a warning) if MLflow failed."""
        from crlbench.tracking.mlflow_runs import _first_line, _log_batch, _mark_broken

        self.logged.add(trial.number)
        client, run_id = self._client, None
        try:
            run = client.create_run(self.experiment_id, start_time=_ms(trial.datetime_start),
                                    run_name=f"trial-{trial.number}",
                                    tags={"mlflow.parentRunId": self.parent_run_id, **self.source})
            run_id = run.info.run_id
            _log_batch(client, run_id, metrics=_trial_metrics(trial, self.config.intermediate_key),
                       params=_trial_params(trial),
                       tags=_trial_tags(trial, self.study_name))
            for cell_hash in trial.user_attrs.get(CELLS, []):
                record = read_result(cell_dir(self.cells_root, cell_hash))
                if record is not None:
                    _log_cell(client, self.experiment_id, run_id, record, cell_dir(self.cells_root, cell_hash),
                              self.source)
            client.set_terminated(run_id, status=RUN_STATUS[trial.state.name], end_time=_ms(trial.datetime_complete))
        except Exception as error:  # noqa: BLE001 - the study's storage is the source of truth
            log.warning("MLflow: could not log trial %d: %s", trial.number, _first_line(error))
            _mark_broken(client, run_id, error)
            return None
        return run_id

    def finish(self, study: optuna.Study) -> None:
        """The parent run's summary: trial counts, the best value, trial and hyperparameters."""
        from crlbench.tracking.mlflow_runs import _first_line, _log_batch, _metrics, _tags

        counts = state_counts(study)
        metrics = {f"trials_{state.lower()}": count for state, count in counts.items()}
        tags: dict[str, Any] = {}
        with contextlib.suppress(CrlbenchError):
            best = _best_trial(study)
            metrics["best_value"] = best.value
            tags = {"crlbench.best_trial": best.number, **{f"best.{key}": value for key, value in best.params.items()}}
        try:
            _log_batch(self._client, self.parent_run_id, metrics=_metrics(metrics, _ms(None)), tags=_tags(tags))
        except Exception as error:  # noqa: BLE001 - the summary is also in the storage and the report
            log.warning("MLflow: could not log the study's summary: %s", _first_line(error))

    def _experiment(self) -> str:
        from crlbench.tracking.mlflow_runs import experiment_id

        return experiment_id(self._client, self.uri, self.experiment_name, f"crlbench-tune-{self.study_name}")

    def _parent_run(self) -> str:
        from crlbench.suites.runner import provenance
        from crlbench.tracking.mlflow_runs import _log_batch, _redacted, _tags, provenance_tags, source_tags

        client = self._client
        here = provenance()
        self.source = source_tags(self.config.source or f"crlbench-tune/{self.study_name}", here.get("git_commit"))
        found = client.search_runs([self.experiment_id], filter_string="tags.`crlbench.kind` = 'study'",
                                   max_results=1, order_by=["attributes.start_time ASC"])
        if found:
            run_id = found[0].info.run_id
            client.update_run(run_id, status="RUNNING")
        else:
            run_id = client.create_run(self.experiment_id, run_name=self.study_name, tags=self.source).info.run_id
        tags = {"crlbench.kind": "study", "optuna.study": self.study_name, "crlbench.storage": _redacted(self.storage_url),
                "crlbench.objective": self.config.objective.describe(), "crlbench.direction": self.config.objective.direction,
                "crlbench.intermediate": self.config.intermediate_name,
                "crlbench.config_path": self.config.source, **provenance_tags(here), **self.source}
        _log_batch(client, run_id, tags=_tags(tags))
        client.log_text(run_id, json.dumps(self.config.to_dict(), indent=1, default=str), "tune.json")
        if self.config.source and Path(self.config.source).is_file():
            client.log_artifact(run_id, self.config.source, "config")
        return run_id

    def _logged_trials(self) -> set[int]:
        runs = self._client.search_runs([self.experiment_id], filter_string="tags.`crlbench.kind` = 'trial'",
                                        max_results=50000)
        return {int(run.data.tags["optuna.trial_number"]) for run in runs if "optuna.trial_number" in run.data.tags}


def _trial_params(trial: optuna.trial.FrozenTrial) -> list:
    from mlflow.entities import Param
    from crlbench.tracking.mlflow_runs import _text

    return [Param(metric_name(name), _text(value)) for name, value in trial.params.items()]


def _trial_metrics(trial: optuna.trial.FrozenTrial, intermediate: str = "intermediate") -> list:
    """A trial's objective (``objective``, ``objective/seed<n>``), times, and its intermediate values under the
    metric ``intermediate`` (:attr:`TuneConfig.intermediate_key`, which says what they are)."""
    from mlflow.entities import Metric
    from crlbench.tracking.mlflow_runs import _metrics

    end = _ms(trial.datetime_complete)
    values: dict[str, Any] = {"objective": trial.value} if trial.value is not None else {}
    values.update({f"objective/seed{seed}": value for seed, value in (trial.user_attrs.get(SEED_VALUES) or {}).items()})
    values["time/runner_s"] = trial.user_attrs.get(RUNNER_S)
    if trial.datetime_start and trial.datetime_complete:
        values["time/trial_s"] = (trial.datetime_complete - trial.datetime_start).total_seconds()
    steps = [Metric(intermediate, float(value), end, int(step)) for step, value in trial.intermediate_values.items()]
    return _metrics(values, end) + steps


def _trial_tags(trial: optuna.trial.FrozenTrial, study_name: str) -> list:
    from crlbench.tracking.mlflow_runs import _tags

    tags = {"crlbench.kind": "trial", "optuna.study": study_name, "optuna.state": trial.state.name,
            "optuna.trial_number": trial.number}
    if trial.state.name == "FAIL":
        tags["crlbench.error"] = trial.user_attrs.get(ERROR) or (
            "the worker running this trial stopped sending heartbeats (killed, or out of memory)")
    return _tags(tags)


def _log_cell(client: Any, experiment_id: str, parent_id: str, record: dict[str, Any], folder: Path,
              source: dict[str, str] | None = None) -> None:
    """A cell's run under its trial's run, as :meth:`crlbench.tracking.mlflow_runs.SuiteTracker.log_cell` logs
    one under a suite."""
    from crlbench.tracking.mlflow_runs import (_cell_metrics, _cell_params, _cell_tags, _cell_times, _log_batch,
                                               _log_cell_files)

    cell = record.get("cell") or {}
    start_ms, end_ms = _cell_times(record)
    run = client.create_run(experiment_id, start_time=start_ms, run_name=f"{cell.get('dataset')}/{cell.get('label')}/"
                            f"seed{cell.get('seed')}", tags={"mlflow.parentRunId": parent_id, **(source or {})})
    run_id = run.info.run_id
    _log_batch(client, run_id, metrics=_cell_metrics(record, end_ms), params=_cell_params(cell), tags=_cell_tags(record))
    _log_cell_files(client, run_id, record, folder)
    client.set_terminated(run_id, status="FINISHED" if record.get("status") == "ok" else "FAILED", end_time=end_ms)


def _ms(moment: datetime.datetime | None) -> int:
    return int((moment.timestamp() if moment is not None else time.time()) * 1000)
