"""One trial's objective (:class:`TrialObjective`): run the trial's cells (one per tuning seed) in this process
with :func:`crlbench.suites.runner.run_cell`, and return the mean over seeds of the objective on the val split.
A cell that fails (training diverged, ...) or sampled hyperparameters that do not fit the model fail the
trial (:class:`TrialFailed`, state FAIL), not the study. With a per-epoch pruner, the validation
reconstruction error is reported after every epoch; with Wilcoxon, each seed's value.

The trial's user attributes (``crlbench.*``) say which invocation and worker ran it, its cells, its value per
seed, its times and why it failed: progress lines, MLflow and the study report read them.
"""

from __future__ import annotations

import functools
import json
import os
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from crlbench.core import registry
from crlbench.core.errors import ConfigError, CrlbenchError
from crlbench.core.files import ensure_folder, file_lock
from crlbench.suites.results import cell_dir
from crlbench.tuning.tune_config import TuneConfig

if TYPE_CHECKING:
    import optuna

VALIDATION_SAMPLES = 256  # validation images whose reconstruction error the per-epoch pruners judge
# Trial user attributes written by the objective.
INVOCATION, WORKER, CELLS, SEED_VALUES, RUNNER_S, OBJECTIVE_S, ERROR = (
    "crlbench.invocation", "crlbench.worker", "crlbench.cells", "crlbench.seed_values", "crlbench.runner_s",
    "crlbench.objective_s", "crlbench.error")


class TrialFailed(CrlbenchError):
    """A trial's cell failed, or its sampled hyperparameters do not fit the model: FAIL, and the study goes on."""


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
