"""A study in MLflow (``tracking_uri``): experiment ``crlbench-tune/<study>``, one parent run per study (reused
when resumed), a child run per trial (params, ``objective``, the intermediate values under a metric that names
them, the tag ``optuna.state`` and the run status FINISHED / KILLED / FAILED for complete / pruned / failed),
and each trial's cells as children of the trial's run (:class:`TuneTracker`). The invoking process logs the
trials its workers ran (and those it found dead) as they finish, so a SQLite store has one writer.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import logging
import time
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from crlbench.core.errors import CrlbenchError
from crlbench.suites.provenance import provenance
from crlbench.suites.results import cell_dir, read_result
from crlbench.tracking.cell_runs import cell_metrics, cell_params, cell_tags, cell_times, log_cell_files
from crlbench.tracking.entities import (as_text, log_batch, mark_broken, metric_entities, metric_name,
                                        provenance_tags, source_tags, tag_entities)
from crlbench.tracking.store import TrackingUnavailable, experiment_id, first_line, mlflow_client, redacted
from crlbench.tuning.objective import CELLS, ERROR, INVOCATION, RUNNER_S, SEED_VALUES
from crlbench.tuning.study import best_trial, state_counts
from crlbench.tuning.tune_config import TuneConfig

if TYPE_CHECKING:
    import optuna

log = logging.getLogger(__name__)

RUN_STATUS = {"COMPLETE": "FINISHED", "PRUNED": "KILLED", "FAIL": "FAILED"}


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
        try:
            self._client = mlflow_client(self.uri)
            self.experiment_id = self._experiment()
            self.parent_run_id = self._parent_run()
            self.logged = self._logged_trials()
        except Exception as error:  # noqa: BLE001 - reported as the user's URI being unusable
            raise TrackingUnavailable(f"tracking URI {redacted(self.uri)!r}: cannot start the study's run: "
                                      f"{first_line(error)}") from error
        log.info("MLflow: experiment %s, run %s", self.experiment_name, self.parent_run_id)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: Any) -> None:
        status = "FINISHED" if exc_type is None else "KILLED" if issubclass(exc_type, KeyboardInterrupt) else "FAILED"
        try:
            self._client.set_terminated(self.parent_run_id, status=status)
        except Exception as error:  # noqa: BLE001 - never mask the study's own outcome
            log.warning("MLflow: could not end run %s as %s: %s", self.parent_run_id, status, first_line(error))

    def log_finished(self, study: optuna.Study, invocation: str, adopted: Iterable[int] = ()) -> None:
        """Log the finished trials this invocation ran (or found dead) that are not logged yet."""
        adopted = set(adopted)
        for trial in study.get_trials(deepcopy=False):
            if (trial.state.name in RUN_STATUS and trial.number not in self.logged
                    and (trial.user_attrs.get(INVOCATION) == invocation or trial.number in adopted)):
                self.log_trial(trial)

    def log_trial(self, trial: optuna.trial.FrozenTrial) -> str | None:
        """Log a finished trial and its cells; the trial's run id, or None (and a warning) if MLflow failed."""
        self.logged.add(trial.number)
        client, run_id = self._client, None
        try:
            run = client.create_run(self.experiment_id, start_time=_ms(trial.datetime_start),
                                    run_name=f"trial-{trial.number}",
                                    tags={"mlflow.parentRunId": self.parent_run_id, **self.source})
            run_id = run.info.run_id
            log_batch(client, run_id, metrics=_trial_metrics(trial, self.config.intermediate_key),
                      params=_trial_params(trial),
                      tags=_trial_tags(trial, self.study_name))
            for cell_hash in trial.user_attrs.get(CELLS, []):
                record = read_result(cell_dir(self.cells_root, cell_hash))
                if record is not None:
                    _log_cell(client, self.experiment_id, run_id, record, cell_dir(self.cells_root, cell_hash),
                              self.source)
            client.set_terminated(run_id, status=RUN_STATUS[trial.state.name], end_time=_ms(trial.datetime_complete))
        except Exception as error:  # noqa: BLE001 - the study's storage is the source of truth
            log.warning("MLflow: could not log trial %d: %s", trial.number, first_line(error))
            mark_broken(client, run_id, error)
            return None
        return run_id

    def finish(self, study: optuna.Study) -> None:
        """The parent run's summary: trial counts, the best value, trial and hyperparameters."""
        counts = state_counts(study)
        metrics = {f"trials_{state.lower()}": count for state, count in counts.items()}
        tags: dict[str, Any] = {}
        with contextlib.suppress(CrlbenchError):
            best = best_trial(study)
            metrics["best_value"] = best.value
            tags = {"crlbench.best_trial": best.number, **{f"best.{key}": value for key, value in best.params.items()}}
        try:
            log_batch(self._client, self.parent_run_id, metrics=metric_entities(metrics, _ms(None)), tags=tag_entities(tags))
        except Exception as error:  # noqa: BLE001 - the summary is also in the storage and the report
            log.warning("MLflow: could not log the study's summary: %s", first_line(error))

    def _experiment(self) -> str:
        return experiment_id(self._client, self.uri, self.experiment_name, f"crlbench-tune-{self.study_name}")

    def _parent_run(self) -> str:

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
        tags = {"crlbench.kind": "study", "optuna.study": self.study_name, "crlbench.storage": redacted(self.storage_url),
                "crlbench.objective": self.config.objective.describe(), "crlbench.direction": self.config.objective.direction,
                "crlbench.intermediate": self.config.intermediate_name,
                "crlbench.config_path": self.config.source, **provenance_tags(here), **self.source}
        log_batch(client, run_id, tags=tag_entities(tags))
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

    return [Param(metric_name(name), as_text(value)) for name, value in trial.params.items()]


def _trial_metrics(trial: optuna.trial.FrozenTrial, intermediate: str = "intermediate") -> list:
    """A trial's objective (``objective``, ``objective/seed<n>``), times, and its intermediate values under the
    metric ``intermediate`` (:attr:`TuneConfig.intermediate_key`, which says what they are)."""
    from mlflow.entities import Metric

    end = _ms(trial.datetime_complete)
    values: dict[str, Any] = {"objective": trial.value} if trial.value is not None else {}
    values.update({f"objective/seed{seed}": value for seed, value in (trial.user_attrs.get(SEED_VALUES) or {}).items()})
    values["time/runner_s"] = trial.user_attrs.get(RUNNER_S)
    if trial.datetime_start and trial.datetime_complete:
        values["time/trial_s"] = (trial.datetime_complete - trial.datetime_start).total_seconds()
    steps = [Metric(intermediate, float(value), end, int(step)) for step, value in trial.intermediate_values.items()]
    return metric_entities(values, end) + steps


def _trial_tags(trial: optuna.trial.FrozenTrial, study_name: str) -> list:
    tags = {"crlbench.kind": "trial", "optuna.study": study_name, "optuna.state": trial.state.name,
            "optuna.trial_number": trial.number}
    if trial.state.name == "FAIL":
        tags["crlbench.error"] = trial.user_attrs.get(ERROR) or (
            "the worker running this trial stopped sending heartbeats (killed, or out of memory)")
    return tag_entities(tags)


def _log_cell(client: Any, experiment_id: str, parent_id: str, record: dict[str, Any], folder: Path,
              source: dict[str, str] | None = None) -> None:
    """A cell's run under its trial's run, as :meth:`crlbench.tracking.mlflow_runs.SuiteTracker.log_cell` logs
    one under a suite."""
    cell = record.get("cell") or {}
    start_ms, end_ms = cell_times(record)
    run = client.create_run(experiment_id, start_time=start_ms, run_name=f"{cell.get('dataset')}/{cell.get('label')}/"
                            f"seed{cell.get('seed')}", tags={"mlflow.parentRunId": parent_id, **(source or {})})
    run_id = run.info.run_id
    log_batch(client, run_id, metrics=cell_metrics(record, end_ms), params=cell_params(cell), tags=cell_tags(record))
    log_cell_files(client, run_id, record, folder)
    client.set_terminated(run_id, status="FINISHED" if record.get("status") == "ok" else "FAILED", end_time=end_ms)


def _ms(moment: datetime.datetime | None) -> int:
    return int((moment.timestamp() if moment is not None else time.time()) * 1000)
