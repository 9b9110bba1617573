"""A study in its Optuna storage: the storage opened with a heartbeat (:func:`open_storage`; a worker that dies
mid-trial leaves a RUNNING trial marked FAIL once its heartbeat is older than the grace period), the study
created or resumed with its objective named (:func:`open_study`), read without running anything
(:func:`stored_study`), where it keeps its cells (:func:`study_folder`), and its trials counted by state
(:func:`state_counts`).
"""

from __future__ import annotations

import collections
import contextlib
import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from crlbench.core.errors import ConfigError, CrlbenchError
from crlbench.core.files import file_lock
from crlbench.suites.suite_config import check_name
from crlbench.tracking.store import first_line, redacted, sqlite_path, url_scheme
from crlbench.tuning.tune_config import TuneConfig, build_pruner, build_sampler, experimental_features

if TYPE_CHECKING:
    import optuna

log = logging.getLogger(__name__)

STORAGE_FILE = "optuna.db"
STORAGE_SCHEMES = ("sqlite", "postgresql", "mysql")
HEARTBEAT_INTERVAL_S = 10
GRACE_PERIOD_S = 30  # a RUNNING trial without a heartbeat for this long belongs to a dead worker
SQLITE_TIMEOUT_S = 60  # workers share one SQLite file: a writer waits for the lock rather than failing
STORAGE_ATTEMPTS = 3  # opening a storage whose tables another launch is creating at the same moment
STATES = ("COMPLETE", "PRUNED", "FAIL", "RUNNING", "WAITING")
INTERMEDIATE = "crlbench.intermediate"  # study user attribute: what the trials' intermediate values are


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

    scheme = url_scheme(url)
    if scheme not in STORAGE_SCHEMES:
        raise ConfigError(f"storage {redacted(url)!r}: unknown scheme {scheme!r}; accepted: sqlite:///path/to/"
                          f"{STORAGE_FILE}, postgresql+psycopg2://user:password@host/database, mysql://...")
    creating: Any = contextlib.nullcontext()
    if scheme == "sqlite":
        path = sqlite_path(url)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise ConfigError(f"storage {redacted(url)!r}: cannot create the folder {path.parent}: "
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
                    log.info("storage %s: another launch was creating its tables; trying again", redacted(url))
                    time.sleep(0.5 * (attempt + 1))
                    continue
                raise ConfigError(f"storage {redacted(url)!r}: cannot open it: {first_line(error)}") from error
    raise AssertionError("unreachable")


def _created_meanwhile(error: BaseException) -> bool:
    """Whether ``error`` is another process creating the storage's tables at the same moment."""
    text = str(error)
    return type(error).__name__ == "IntegrityError" or "already exists" in text or "UNIQUE constraint" in text


def open_study(config: TuneConfig, url: str, study_name: str, storage: Any) -> optuna.Study:
    """The study, created or loaded; its direction checked, the trials of dead workers marked FAIL."""
    import optuna

    study = optuna.create_study(storage=storage, study_name=study_name, direction=config.objective.direction,
                                load_if_exists=True, sampler=build_sampler(config.sampler, config.sampler.seed),
                                pruner=build_pruner(config.pruner))
    stored = study.direction.name.lower()
    if stored != config.objective.direction:
        raise ConfigError(f"study {study_name!r} in {redacted(url)!r} was created to {stored} its objective; "
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


def counted_trials(study: optuna.Study) -> int:
    """Trials that use up the budget: every state but WAITING (a waiting retry runs in place of a new trial)."""
    from optuna.trial import TrialState

    return len([t for t in study.get_trials(deepcopy=False) if t.state != TrialState.WAITING])


def _fail_stale_trials(study: optuna.Study) -> None:
    import optuna

    with experimental_features():
        optuna.storages.fail_stale_trials(study)


def stored_study(config: TuneConfig, *, storage: str | None = None, study_name: str | None = None,
                 workdir: str | os.PathLike = "runs") -> optuna.Study:
    """The study as its storage holds it, for an export that runs no trial (``crlbench tune --export-only``):
    nothing is created, sampled or trained. ``storage``, ``study_name`` and ``workdir`` as for :func:`tune`.

    :class:`ConfigError` when the SQLite file does not exist, the storage holds no study of that name (the
    message lists those it holds), or the study was created to optimise the other way than ``config`` asks."""
    import optuna

    workdir = Path(workdir).resolve()
    study_name = (check_name(config.name, f"{config.source or 'tune config'}: key 'name'") if study_name is None
                  else check_name(study_name, "tune: 'study_name'"))
    url = storage or f"sqlite:///{(workdir / STORAGE_FILE).as_posix()}"  # not default_storage: it creates the folder
    run_first = f"run `crlbench tune {config.source or '<tune file>'}` first"
    if url_scheme(url) == "sqlite" and not sqlite_path(url).is_file():
        raise ConfigError(f"study {study_name!r}: no study storage at {sqlite_path(url)}; {run_first} (or give the "
                          f"--workdir or --storage the study ran with)")
    opened = open_storage(url)
    names = sorted(optuna.get_all_study_names(opened))
    if study_name not in names:
        raise ConfigError(f"study {study_name!r} is not in the storage {redacted(url)!r} (it holds: "
                          f"{', '.join(names) or 'no study'}); {run_first}, or give its --study-name")
    study = optuna.load_study(study_name=study_name, storage=opened)
    stored = study.direction.name.lower()
    if stored != config.objective.direction:
        raise ConfigError(f"study {study_name!r} in {redacted(url)!r} was created to {stored} its objective; "
                          f"{config.source or config.name} asks to {config.objective.direction}: not its tune file")
    return study


def state_counts(study: optuna.Study) -> dict[str, int]:
    """Trials per state name (COMPLETE, PRUNED, FAIL, RUNNING, WAITING), zeros included."""
    counts = collections.Counter(trial.state.name for trial in study.get_trials(deepcopy=False))
    return {state: counts.get(state, 0) for state in STATES}


def best_trial(study: optuna.Study) -> optuna.trial.FrozenTrial:
    """The study's best trial; a :class:`CrlbenchError` when no trial has completed."""
    try:
        return study.best_trial
    except ValueError:
        raise CrlbenchError(f"study {study.study_name!r} has no complete trial yet") from None
