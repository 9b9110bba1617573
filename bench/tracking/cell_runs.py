"""One finished cell as an MLflow run, from its result record and cell folder: its params
(:func:`cell_params`), metrics (:func:`cell_metrics`), tags (:func:`cell_tags`), files (:func:`log_cell_files`)
and the images MLflow shows (the intervention grid drawn from ``interventions.npz``:
:func:`intervention_image`, and every ``*.png``). A suite's cells (:class:`crlbench.tracking.mlflow_runs.SuiteTracker`)
and a tuning trial's (:mod:`crlbench.tuning.trial_runs`) are logged with these.

The intervention grid is drawn by the report's figure code (:mod:`crlbench.reports.figures`), imported inside
:func:`intervention_image` only. Importing this module does not import mlflow.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import logging
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from crlbench.suites.results import RESULT
from crlbench.tracking.entities import (PARAM_LIMIT, as_text, clip, flattened, is_number, metric_entities,
                                        metric_name, now_ms, provenance_tags, tag_entities)
from crlbench.tracking.store import first_line

if TYPE_CHECKING:
    from mlflow import MlflowClient

log = logging.getLogger(__name__)

CELL_FILES = ("history.json", "interventions.npz")
INTERVENTION_IMAGE = "interventions.png"  # the cell's intervention grid, drawn from interventions.npz
CELL_FOLDERS_SKIPPED = ("checkpoint",)
TAG_FINISHED = "crlbench.finished_at"


def cell_params(cell: Mapping[str, Any]) -> list:
    """The cell's params: every hyperparameter and dataset parameter as the cell resolved it (its
    ``identity``: the suite's overrides on top of the model's and dataset's defaults), not only the overrides."""
    from mlflow.entities import Param

    identity = cell.get("identity") or {}
    hyperparameters = {**(cell.get("hyperparameters") or {}), **((identity.get("model") or {}).get("hyperparameters") or {})}
    dataset_params = {**(cell.get("dataset_params") or {}), **((identity.get("dataset") or {}).get("params") or {})}
    values = {key: cell.get(key) for key in ("dataset", "model", "label", "seed", "suite")}
    values.update(flattened(cell.get("budget") or {}, "budget"))
    values.update(flattened(hyperparameters, "hp"))
    values.update(flattened(dataset_params, "data"))
    return [Param(metric_name(key), clip(as_text(value), keep="head", limit=PARAM_LIMIT)) for key, value in values.items()]


def cell_metrics(record: Mapping[str, Any], timestamp_ms: int) -> list:
    """The cell's metrics: the loss terms per epoch (``train/``), the validation readings per step (``val/``), every
    final score and the timings (``time/``)."""
    from mlflow.entities import Metric

    history = record.get("history") or {}
    evaluations = [reading for reading in history.get("evaluations") or [] if isinstance(reading, Mapping)]
    validation = {name for reading in evaluations for name in (reading.get("scores") or {})}
    # the loss terms per epoch (step = epoch); the trainer also copies each epoch-end validation reading into
    # its epoch's entry: those are logged once, from ``evaluations``, below
    metrics = [Metric(metric_name(f"train/{term}"), float(value), timestamp_ms, epoch)
               for epoch, terms in enumerate(history.get("epochs") or [], start=1) for term, value in terms.items()
               if term not in validation and is_number(value)]
    # the monitor's readings of the validation sample during training (step = training step)
    metrics += [Metric(metric_name(f"val/{name}"), float(value), timestamp_ms, int(reading.get("step") or 0))
                for reading in evaluations for name, value in (reading.get("scores") or {}).items() if is_number(value)]
    metrics += metric_entities({metric_name(key): value for key, value in (record.get("scores") or {}).items()}, timestamp_ms)
    timings = flattened(record.get("timings") or {}, "time", separator="/")
    metrics += metric_entities({metric_name(key): value for key, value in timings.items()}, timestamp_ms)
    return metrics


def cell_tags(record: Mapping[str, Any]) -> list:
    """The cell's tags: hash, status, suite, finishing time, the suite's overrides, provenance, where it ran, and
    for a failed cell its error (the traceback as the run's description)."""
    cell = record.get("cell") or {}
    tags = {"crlbench.cell_hash": record.get("hash") or cell.get("hash"), "crlbench.status": record.get("status"),
            "crlbench.suite": cell.get("suite"), TAG_FINISHED: (record.get("provenance") or {}).get("finished_at"),
            "crlbench.hp_overrides": cell.get("hyperparameters") or {},  # which hp.* the suite (or trial) set
            **provenance_tags(record.get("provenance") or {})}
    ran_on = record.get("ran_on") or {}
    tags.update({f"crlbench.ran_on.{key}": value for key, value in ran_on.items() if value is not None})
    error = record.get("error")
    if error:
        tags["crlbench.error"] = clip(f"{error.get('type')}: {error.get('message')}", keep="head")
        if error.get("traceback"):
            tags["mlflow.note.content"] = clip(f"```\n{error['traceback']}\n```", keep="tail")
    return tag_entities(tags)


def run_status(record: Mapping[str, Any]) -> str:
    """The MLflow status of a cell's run: FINISHED for a cell that ran, or whose method does not apply to its
    dataset (the tag ``crlbench.status`` says which), FAILED otherwise."""
    return "FINISHED" if record.get("status") in ("ok", "not_applicable") else "FAILED"


def log_cell_files(client: MlflowClient, run_id: str, record: Mapping[str, Any], folder: Path) -> None:
    """Log the cell's record, files and images as artefacts of run ``run_id`` (never its checkpoint or latents)."""
    if (folder / RESULT).is_file():
        client.log_artifact(run_id, str(folder / RESULT))
    else:  # a record handed over before (or without) its file
        plain = {key: value for key, value in record.items() if not key.startswith("_")}
        client.log_text(run_id, json.dumps(plain, indent=1, default=str), RESULT)
    for path in _cell_files(folder):
        parent = path.parent.relative_to(folder).as_posix()
        client.log_artifact(run_id, str(path), None if parent == "." else parent)
    _log_cell_images(client, run_id, record, folder)


def _log_cell_images(client: MlflowClient, run_id: str, record: Mapping[str, Any], folder: Path) -> None:
    """The cell's figures as images MLflow shows: the intervention grid drawn from ``interventions.npz``
    (artefact ``interventions.png``) and every ``*.png`` of the cell folder, each also as a keyed image
    (``log_image(key=...)``: the run's and the experiment's image charts). A figure that cannot be drawn
    or logged is a warning: the files above are logged already."""
    images = []
    grid = folder / "interventions.npz"
    if grid.is_file():
        try:
            cell = record.get("cell") or {}
            image = intervention_image(grid, f"{cell_title(cell)}: true counterfactuals and the model's do()",
                                       str(cell.get("label") or "model"))
        except Exception as error:  # noqa: BLE001 - the npz is logged; its picture is a convenience
            log.warning("MLflow: could not draw the intervention grid of %s: %s", grid, first_line(error))
        else:
            images.append(("interventions", image))
    for path in _cell_pngs(folder):
        with contextlib.suppress(Exception):  # an unreadable PNG stays a plain artefact
            from PIL import Image

            with Image.open(path) as opened:
                images.append((metric_name(path.relative_to(folder).with_suffix("").as_posix()), opened.convert("RGB")))
    try:
        if images and images[0][0] == "interventions":
            client.log_image(run_id, images[0][1], artifact_file=INTERVENTION_IMAGE)
        for key, image in images:
            client.log_image(run_id, image, key=key, step=0, synchronous=True)
    except Exception as error:  # noqa: BLE001 - the cell's files are logged; its pictures are a convenience
        log.warning("MLflow: could not log the images of %s: %s", folder, first_line(error))


def intervention_image(path: str | os.PathLike, title: str, label: str = "model") -> Any:
    """The intervention grid of one cell's ``interventions.npz`` as a PIL image (a few hundred ms), drawn
    as the report draws a dataset's (:func:`crlbench.reports.figures.intervention_figure`)."""
    import io

    import numpy as np
    from PIL import Image

    from crlbench.reports.figures import DPI, INTERVENTION_ARRAYS, intervention_figure

    with np.load(path) as stored:
        missing = INTERVENTION_ARRAYS - set(stored.files)
        if missing:
            raise ValueError(f"it lacks {sorted(missing)}")
        arrays = {name: stored[name] for name in stored.files}
    buffer = io.BytesIO()
    intervention_figure({label: arrays}, title).savefig(buffer, format="png", dpi=DPI, bbox_inches="tight")
    buffer.seek(0)
    with Image.open(buffer) as image:
        return image.convert("RGB")


def cell_title(cell: Mapping[str, Any]) -> str:
    """``<dataset>/<label>/seed<seed>``: the name of a cell's run."""
    return f"{cell.get('dataset')}/{cell.get('label')}/seed{cell.get('seed')}"


def _cell_files(folder: Path) -> Iterator[Path]:
    for name in CELL_FILES:
        if (folder / name).is_file():
            yield folder / name
    for pattern in ("*.json", "*.npz"):
        yield from sorted((folder / "metrics").glob(pattern))
    yield from _cell_pngs(folder)


def _cell_pngs(folder: Path) -> Iterator[Path]:
    for path in sorted(folder.rglob("*.png")):
        if path.relative_to(folder).parts[0] not in CELL_FOLDERS_SKIPPED:
            yield path


def cell_times(record: Mapping[str, Any]) -> tuple[int, int]:
    """The cell's start and end (ms since the epoch), from its finishing time and total duration."""
    end_ms = now_ms()
    finished = (record.get("provenance") or {}).get("finished_at")
    if finished:
        with contextlib.suppress(ValueError, TypeError):
            end_ms = int(datetime.datetime.fromisoformat(finished).timestamp() * 1000)
    total = (record.get("timings") or {}).get("total_s")
    return (end_ms - int(total * 1000) if is_number(total) else end_ms), end_ms
