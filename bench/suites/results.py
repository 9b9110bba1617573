"""The result store: one folder per cell, keyed by the cell's content hash, and its JSON record.

Layout under a work directory (``./runs`` by default; ``--workdir`` or ``CRLBENCH_WORKDIR``)::

    WORKDIR/cells/<hash>/
        result.json          the CellResult record; the cell is done when this file exists
        checkpoint/last.pt   the trainer's latest checkpoint (resume, model-based metrics)
        latents.npz          z_train, y_train, z_test, y_test on the evaluation sample
        metrics/<variant>.json, metrics/<variant>.npz   one metric's result and its matrices
        interventions.npz    a small grid: the model's do() next to the true counterfactual:
                             source uint8 [S, H, W, C], truth and model uint8 [K, S, H, W, C]
                             (factor k set to values float [K, S]), factor_names [K]
        history.json         mean loss terms per epoch, the monitor's readings (``evaluations``) and its sample

The record (``schema`` 1) is plain JSON::

    {"schema": 1, "hash": str, "status": "ok" | "failed" | "not_applicable",
     "cell": {"suite", "dataset", "dataset_params", "model", "label", "hyperparameters", "seed",
              "budget": {"epochs", "steps", "batch_size"}, "metrics", "evaluation", "code_version"},
     "factors": [names in the card's topological order], "adjacency": [[0/1]],
     "unidentifiable": {"<factor>": reason},  # only on a dataset whose images cannot carry some factors (a control)
     "assumptions_broken": {"<key>": description},  # only when the data break an assumption of the method
     "error": null | {"type", "message", "traceback"},   # not_applicable: {"type": "NotApplicable", "message"}
     "scores": {"<variant>.<score>": float},   # flat, e.g. "dci@reg.disentanglement"
     "metrics": {"<variant>": {"scores", "notes", "info", "matrices": [names in the .npz]}},
     "history": {"epochs": [{"loss": float, ...}], "steps": int,
                 "evaluations": [{"step", "epoch", "scores": {name: float}}], "monitor": {...}},  # readings
                 # of the validation sample during training (crlbench.suites.monitor); absent in older records
     "convergence": {"converged": bool | null, "reason", "rule", "schedule_finished", "scores", "reconstruction", ...},
     "checks": {"<check>": {"flagged", "value", "threshold", "reference_value", "invalidates", "reason"}},
               # degeneracy checks (crlbench.suites.checks); absent in older records: not recorded
     "reference": null | {"for": [metric names, "reconstruction"], "architecture": str},  # a reference row
     "partial": true, "metric_errors": {"<variant>": {"type", "message", "traceback"}},  # only when a metric failed
     "timings": {"train_s", "monitor_s", "encode_s", "metrics_s", "checks_s", "total_s",  # wall, this run
                 "train_cpu_s", "cpu_s"},  # process CPU of training (summed across resumes) and of the cell
     "provenance": {"versions": {...}, "git_commit": str | null, "host": str, "finished_at": ISO 8601},
     "ran_on": {"executor": "local" | "slurm" | "ray", "host": str, "task_id": str | null, ...},
     "lease_token": int,  # the fencing token of the lease it was written under (crlbench.core.fencing);
                          # absent when the cell ran without a lease (crlbench.suites.runner.run_cell alone)
     "not_applicable": {"<variant>": reason},   # only when a metric does not apply (graph@card, no graph)
     "notes": [str]}   # only when something was recovered: a stored file that was unreadable and redone

``label`` names the model as reports show it (``icm_vae``, or ``icm_vae (tuned)``); reports group
cells by (dataset, label) and pair them across labels by seed.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from crlbench.core.files import atomic_write

SCHEMA = 1
RESULT = "result.json"
# folders where MLflow keeps copies of the records it logged as artefacts (a SQLite store's mlartifacts/, a file
# store's mlruns/): read from a work directory, they would count every cell twice
TRACKING_COPIES = frozenset({"mlartifacts", "mlruns"})
# A cell's status: trained and evaluated; failed (its error says why); or its method does not apply to its
# dataset (a method that trains on pairs, on a dataset without them), decided before any training.
NOT_APPLICABLE = "not_applicable"
STATUSES = ("ok", "failed", NOT_APPLICABLE)


def cell_dir(workdir: str | os.PathLike, cell_hash: str) -> Path:
    return Path(workdir) / "cells" / cell_hash


def write_json(path: str | os.PathLike, data: Any) -> None:
    """Write ``data`` as JSON atomically: a temporary file in the same folder, then a rename."""
    text = json.dumps(data, indent=1, sort_keys=False, default=_plain)
    atomic_write(path, lambda handle: handle.write(text.encode()))


def write_npz(path: str | os.PathLike, arrays: dict[str, np.ndarray]) -> None:
    """Write numpy arrays atomically (temporary file, then rename)."""
    atomic_write(path, lambda handle: np.savez_compressed(handle, **arrays))


def read_json(path: str | os.PathLike) -> Any:
    return json.loads(Path(path).read_text())


class UnreadableRecordWarning(UserWarning):
    """A ``result.json`` could not be read; its cell counts as not finished."""


def read_result(directory: str | os.PathLike) -> dict[str, Any] | None:
    """The record in a cell folder, or None when the cell has not finished.

    A record that cannot be read (truncated, not JSON, not a record) is reported with an
    :class:`UnreadableRecordWarning` naming the file and counts as not finished: the suite runs the
    cell again (from its stored checkpoint, latents and metrics) and writes a good record over it.
    """
    path = Path(directory) / RESULT
    if not path.exists():
        return None
    return read_record(path)


def read_record(path: str | os.PathLike) -> dict[str, Any] | None:
    """The record in ``path``, or None (and a warning naming the file and the error) if unreadable."""
    try:
        record = read_json(path)
        problem = _record_problem(record)
    except FileNotFoundError:  # removed meanwhile
        return None
    except (OSError, ValueError) as error:  # ValueError: JSONDecodeError, UnicodeDecodeError
        problem = f"{type(error).__name__}: {error}"
    if problem is None:
        return record
    warnings.warn(f"{path}: unreadable result record ({problem}); the cell counts as not finished",
                  UnreadableRecordWarning, stacklevel=3)
    return None


def _record_problem(record: Any) -> str | None:
    if not isinstance(record, dict):
        return f"a JSON {type(record).__name__}, not an object"
    missing = [key for key in ("hash", "status", "cell") if key not in record]
    if missing:
        return f"no {', '.join(map(repr, missing))}"
    if record["status"] not in STATUSES or not isinstance(record["cell"], dict):
        return f"'status' is not one of {', '.join(STATUSES)}, or 'cell' is not an object"
    return None


def load_records(root: str | os.PathLike) -> list[dict[str, Any]]:
    """Every readable ``result.json`` below ``root`` (a work directory, its ``cells`` folder or one
    cell), except MLflow's artefact copies of them (:data:`TRACKING_COPIES`); an unreadable one is left out
    with an :class:`UnreadableRecordWarning` naming it."""
    records = []
    root = Path(root)
    for path in sorted(root.rglob(RESULT)):
        if TRACKING_COPIES.intersection(path.relative_to(root).parts[:-1]):
            continue
        record = read_record(path)
        if record is not None:
            record["_dir"] = str(path.parent)
            records.append(record)
    return records


def _plain(value: Any) -> Any:
    """JSON for numpy scalars and arrays, tuples and paths."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
