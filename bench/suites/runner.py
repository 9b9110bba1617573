"""Run one cell: train, encode the evaluation sample, compute each metric, write the result record.

Every stage reads the previous stage's stored output when it is there: the trainer resumes from
``checkpoint/last.pt`` (a finished budget trains nothing), the latents are reused when the evaluation
settings match, and a metric whose stored result has the same options is not recomputed. A rerun therefore finishes a killed cell, and a metric added to a
finished suite is computed from the stored latents without retraining.

Random streams of a cell's seed (spawn keys of ``numpy.random.SeedSequence``): 0-2 and 6 belong to the
trainer (:mod:`crlbench.training.train`; 6 picks the rows given to ``on_train_end``), 3 picks the
evaluation sample, 4 seeds the metrics and the intervention grid. Stream 5 of seed 0 picks the
monitor's validation sample: the same images for every cell of a dataset (the stream numbers are
in :mod:`crlbench.suites.representation`).

After every epoch (and every k steps in runs of fewer than 20 epochs) the trainer reads DCI, MCC and
the reconstruction error of that validation sample, never the test split (:mod:`crlbench.suites.monitor`),
into the history's ``evaluations``; it never stops or selects anything, and the record's
``convergence`` is judged from it (:mod:`crlbench.training.convergence`).

Latent metrics read one representation, the same for every model
(:func:`crlbench.suites.representation.evaluation_representation`, docs/protocol.md). The record's ``checks`` say which scores a degenerate run invalidates
(:mod:`crlbench.suites.checks`).
Any exception becomes a ``failed`` record naming the error; the caller goes on with
other cells. A method that does not apply to the dataset (:class:`crlbench.core.errors.NotApplicable`:
ILCM on a dataset without pairs, found before any training) gives a ``not_applicable`` record with the
reason, which a suite counts as finished, not failed; a metric that does not apply (``graph@card`` for a
model that learns no graph) is listed under the record's ``not_applicable`` and is not an error. A
metric that raises fails alone: the record keeps status ``ok`` and every score that was computed, and
adds ``"partial": true`` and ``metric_errors`` (metric name -> ``{type, message, traceback}``; the
intervention grid's failure under ``intervention_grid``, e.g. a do() refused on a learned graph with a
cycle); the suite plans such a cell as *partial*, and ``--retry-failed`` computes the failed metrics again
(the stored latents and the other metrics' results are reused, nothing is trained).
A reference row (a model with ``reference_for``: docs/protocol.md, "Reference rows") is scored only on what
it stands for: its other metrics are listed under ``not_applicable`` and not computed, ``reconstruction.mse``
only where it stands for ``reconstruction``, the intervention grid only where it stands for
``counterfactual@probe``; its record's ``reference`` says what it stands for and runs (None for a method).
A full disk (:class:`crlbench.core.errors.DiskFullError`) is raised instead: no record is written,
so the files of a finished cell stay as they were and a rerun after freeing space picks the cell up.

The record's ``model_source`` (``{module, file, sha256}``) fingerprints the file that defines the model's
class, so a suite can warn when a plugin's code changed since its cells were computed.

A stored file that cannot be read costs only what it holds: unreadable latents are encoded again from
the model, an unreadable metric result (JSON or matrices) or intervention grid is computed again, an
unreadable checkpoint falls back to the previous one or to training from scratch
(:func:`crlbench.training.train.resume`). Each is named in a logged warning and in the record's ``notes``; the
other stored results (a finished cell's scores) are kept.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from crlbench.core import registry
from crlbench.core.errors import (ConfigError, DiskFullError, FencedOut, NotApplicable, UnsafeCheckpointError,
                                  unknown_name)
from crlbench.core.fencing import Fence, fenced
from crlbench.core.files import ensure_folder, sweep_temporaries
from crlbench.metrics import compute, compute_with_model
from crlbench.metrics.interventional import concept_value
from crlbench.suites.cell import VALIDATION_FRACTION, Cell
from crlbench.suites.cell_resources import cell_threads, device_index, worker_slot
from crlbench.suites.checks import cell_checks
from crlbench.suites.monitor import MONITOR_METRICS, ValidationMonitor, validation_sample
from crlbench.suites.provenance import (  # noqa: F401 - git_commit: re-exported
    git_commit, placement, provenance)
from crlbench.suites.representation import (  # noqa: F401 - ENCODE_BATCH, MONITOR_STREAM: re-exported
    ENCODE_BATCH, EVALUATION_STREAM, METRIC_STREAM, MONITOR_STREAM, VALIDATION_SEED, Representation,
    as_model_images, encode, evaluation_representation, factor_alignment, reconstruction_error)
from crlbench.suites.results import NOT_APPLICABLE, RESULT, SCHEMA, cell_dir, read_json, write_json, write_npz
from crlbench.training.convergence import reading_cadence, verdict
from crlbench.training.model import RECONSTRUCTION, model_device, source_fingerprint, stands_for, stood_for
from crlbench.training.train import build_model, compact_checkpoint, keep_checkpoints, train

log = logging.getLogger(__name__)

RECONSTRUCTION_SAMPLES = 256
INTERVENTION_GRID = "intervention_grid"  # its failure is recorded beside the metrics' in metric_errors
DEFAULT_FACTOR_BINS = 20  # disentanglement_lib's binning of continuous factors for discrete-only metrics
EpochHook = Callable[[str, int, int], None]  # (cell hash, epochs done, epochs in the budget)
ModelHook = Callable[[Any, int, dict[str, float]], None]  # (model, epochs done, mean losses of that epoch)


def run_cell(cell: Cell, workdir: str | Path, *, progress: bool = False, on_epoch: EpochHook | None = None,
             epoch_hooks: Sequence[ModelHook] = (), propagate: tuple[type[BaseException], ...] = (),
             ran_on: dict[str, Any] | None = None, fence: Fence | None = None) -> dict[str, Any]:
    """Run ``cell`` under ``workdir`` and return its record (also written to ``cells/<hash>/result.json``).

    ``epoch_hooks`` see the model after every epoch (Optuna's pruning reports from there); an
    exception of a type in ``propagate`` (``optuna.TrialPruned``) is re-raised, not recorded.
    ``ran_on`` is the record's ``ran_on`` (:func:`placement`: executor, host, task id); by default the
    local executor in this process. ``fence`` is the token of the lease this run holds
    (crlbench.core.fencing): every write to the cell's folder is committed through it, and the token is
    checked after every epoch, so a run whose lease was taken over raises
    :class:`~crlbench.core.errors.FencedOut` within one epoch and writes nothing more (not even a failed
    record: the new holder finishes the cell).
    """
    with fenced(fence):
        return _run_cell(cell, workdir, progress, on_epoch, epoch_hooks, propagate, ran_on, fence)


def _run_cell(cell: Cell, workdir: str | Path, progress: bool, on_epoch: EpochHook | None,
              epoch_hooks: Sequence[ModelHook], propagate: tuple[type[BaseException], ...],
              ran_on: dict[str, Any] | None, fence: Fence | None) -> dict[str, Any]:
    directory = ensure_folder(cell_dir(workdir, cell.hash))
    sweep_temporaries(directory, recursive=True, min_age_s=0)  # left by killed writes; this cell is ours now
    start = time.perf_counter()
    timings: dict[str, Any] = {}
    registry.load_plugins(cell.plugins)  # a worker process imports the suite's plugins itself
    record: dict[str, Any] = {"schema": SCHEMA, "hash": cell.hash, "status": "ok", "cell": cell.to_dict(), "error": None}
    try:
        with cell_threads(cell.threads):  # the cell's own thread count, wherever it runs: same numbers on any machine
            if fence is not None:  # a superseded run stops within an epoch, written checkpoint or not
                epoch_hooks = (*epoch_hooks, lambda model, epoch, losses: fence.check())
            record.update(_evaluate(cell, Path(workdir), directory, timings, progress, on_epoch, epoch_hooks,
                                    (*propagate, FencedOut)))
    except Exception as error:  # noqa: BLE001 - a failed cell is recorded, the suite goes on
        if isinstance(error, (*propagate, DiskFullError, FencedOut)):  # a full disk, a lost lease: write nothing
            raise
        previous = _finished_record(directory, cell)
        if isinstance(error, UnsafeCheckpointError) and previous is not None:
            return _keep_scores(previous, cell, error, directory, fence)
        if isinstance(error, NotApplicable):  # the method does not apply to this dataset: not a failure
            log.info("cell %s is not applicable: %s", cell.title, error)
            record.update(status=NOT_APPLICABLE, error={"type": type(error).__name__, "message": str(error)})
        else:
            log.warning("cell %s failed: %s: %s", cell.title, type(error).__name__, error)
            record.update(status="failed", error={"type": type(error).__name__, "message": str(error),
                                                  "traceback": traceback.format_exc()})
    timings["total_s"] = time.perf_counter() - start
    record["timings"] = timings
    record["provenance"] = provenance()
    record["ran_on"] = ran_on or placement("local", str(os.getpid()))
    if fence is not None:
        record["lease_token"] = fence.token  # the fencing token of the lease it was written under
    write_json(directory / RESULT, record)
    return record


def _finished_record(directory: Path, cell: Cell) -> dict[str, Any] | None:
    """The cell's ok record from an earlier run, if there is one (read before this run replaces it)."""
    try:
        record = read_json(directory / RESULT)
    except Exception:  # noqa: BLE001 - absent or unreadable: nothing to keep
        return None
    return record if isinstance(record, dict) and record.get("status") == "ok" and record.get("hash") == cell.hash \
        else None


def _keep_scores(previous: dict[str, Any], cell: Cell, error: Exception, directory: Path,
                 fence: Fence | None) -> dict[str, Any]:
    """A finished cell whose checkpoint is unsafe (crlbench.core.errors.UnsafeCheckpointError: it was never
    loaded) keeps every score it has; what this run was to add (a metric new to the suite) fails with the
    reason, so the record is partial and ``--retry-failed`` tries again once the file is dealt with."""
    log.warning("cell %s: %s; its %d scores are kept, the metrics it lacks failed", cell.title, error,
                len(previous.get("scores") or {}))
    scores = previous.get("scores") or {}
    stored = set(previous.get("metrics") or {}) | set(previous.get("not_applicable") or {})
    missing = [spec.name for spec in cell.metrics
               if spec.name not in stored and not any(key.startswith(spec.name + ".") for key in scores)]
    errors = dict(previous.get("metric_errors") or {})
    for name in missing or ["checkpoint"]:
        errors[name] = {"type": type(error).__name__, "message": str(error), "traceback": ""}
    record = {**previous, "cell": cell.to_dict(), "partial": True, "metric_errors": errors,
              "provenance": provenance()}
    if fence is not None:
        record["lease_token"] = fence.token  # written now, under this run's lease
    write_json(directory / RESULT, record)
    return record


def _evaluate(cell: Cell, workdir: Path, directory: Path, timings: dict, progress: bool,
              on_epoch: EpochHook | None, epoch_hooks: Sequence[ModelHook],
              propagate: tuple[type[BaseException], ...] = ()) -> dict[str, Any]:
    dataset = registry.dataset(cell.dataset, cache_dir=workdir / "data", **cell.dataset_params)
    pairs = getattr(registry.registry("model").get(cell.model), "needs_pairs", False)
    train_split, eval_split = training_and_evaluation_splits(dataset, cell.evaluation.split, pairs=pairs)
    device = resolve_device(cell.device)
    model = build_model(cell.model, dataset.card, cell.seed, **cell.hyperparameters).to(device)
    source = source_fingerprint(type(model))

    start = time.perf_counter()
    batches_per_epoch = -(-len(train_split) // cell.budget.batch_size)
    epochs = cell.budget.epochs or -(-cell.budget.steps // batches_per_epoch)
    if cell.budget.steps is not None and cell.budget.epochs is not None:
        epochs = min(epochs, -(-cell.budget.steps // batches_per_epoch))
    callbacks = [lambda epoch, losses: on_epoch(cell.hash, epoch, epochs)] if on_epoch else []
    callbacks += [lambda epoch, losses, hook=hook: hook(model, epoch, losses) for hook in epoch_hooks]
    monitor, monitor_sample = heldout_monitor(cell, dataset, train_split, eval_split, device)
    total_steps = min(epochs * batches_per_epoch, cell.budget.steps or epochs * batches_per_epoch)
    cadence = reading_cadence(total_steps, batches_per_epoch)
    history = train(model, train_split.images, train_split.factors, budget=cell.budget, seed=cell.seed,
                    checkpoint_dir=directory / "checkpoint", checkpoint_every=cell.checkpoint_every,
                    callbacks=callbacks, progress=progress, device=device, precision=cell.precision,
                    monitor=monitor, monitor_every=cadence, images_after=train_split.extras.get("images_after"),
                    environments=environments_of(model, train_split, dataset))
    timings["train_s"] = time.perf_counter() - start
    timings["monitor_s"] = monitor.seconds  # of train_s: the readings of the validation sample
    timings["train_cpu_s"] = history.cpu_seconds  # process CPU seconds, summed across resumes
    evaluation_cpu_start = time.process_time()
    # a finished cell keeps its weights, not its optimiser state (--keep-checkpoints); an already compacted
    # checkpoint (a rerun that trained nothing) is not read again
    if not keep_checkpoints() and not history.compact:
        compact_checkpoint(directory / "checkpoint")
    history_data = {"epochs": history.epochs, "steps": history.steps, "evaluations": history.evaluations,
                    "monitor": {**monitor_sample, "every_steps": cadence, "epoch_ends": True}}
    write_json(directory / "history.json", history_data)
    model = model.cpu().eval()
    notes = list(history.notes)  # what was stored but unreadable, and redone

    start = time.perf_counter()
    latents = _latents(cell, model, train_split, eval_split, directory, notes)
    timings["encode_s"] = time.perf_counter() - start
    alignment = _align(model, latents)
    representation = evaluation_representation(latents, alignment, cell.evaluation.representation)
    scores = {}
    metrics, metric_times, metric_errors, not_applicable = {}, {}, {}, {}
    if stands_for(model, RECONSTRUCTION):  # a reference row is scored only on what it stands for
        try:
            scores["reconstruction.mse"] = reconstruction_error(
                model, eval_split.images[latents["test_rows"][:RECONSTRUCTION_SAMPLES]])
        except NotApplicable as error:  # a method without a decoder (Contrastive CRL)
            not_applicable[RECONSTRUCTION] = str(error)

    metric_seed = _stream_seed(cell.seed, METRIC_STREAM)
    for spec in cell.metrics:
        if not stands_for(model, spec.name):  # a reference row's other metrics are not computed
            not_applicable[spec.name] = _not_standing_for(model)
            continue
        start = time.perf_counter()
        try:
            metrics[spec.name] = _metric(spec, cell, model, dataset, train_split, eval_split, latents, representation,
                                         metric_seed, directory, notes)
        except Exception as error:  # noqa: BLE001 - one metric's failure keeps the other scores
            if isinstance(error, (*propagate, DiskFullError)):
                raise
            if isinstance(error, NotApplicable):  # e.g. a graph metric for a model that learns no graph
                not_applicable[spec.name] = str(error)
                continue
            log.warning("cell %s: metric %s failed: %s: %s", cell.title, spec.name, type(error).__name__, error)
            metric_errors[spec.name] = {"type": type(error).__name__, "message": str(error),
                                        "traceback": traceback.format_exc()}
            continue
        finally:
            metric_times[spec.name] = time.perf_counter() - start
        scores.update({f"{spec.name}.{key}": value for key, value in metrics[spec.name]["scores"].items()})
    timings["metrics_s"] = metric_times
    try:
        if stands_for(model, "counterfactual@probe"):  # the grid draws do(); a reference row without one has none
            _intervention_grid(cell, model, dataset, eval_split, latents["test_rows"], metric_seed, directory, notes)
    except Exception as error:  # noqa: BLE001 - a do() the model refuses (a cyclic learned graph) keeps the scores
        if isinstance(error, (*propagate, DiskFullError)):
            raise
        if isinstance(error, NotApplicable):  # a method without a decoder draws no do() images (Contrastive CRL)
            not_applicable[INTERVENTION_GRID] = str(error)
        else:
            log.warning("cell %s: the intervention grid failed: %s: %s", cell.title, type(error).__name__, error)
            metric_errors[INTERVENTION_GRID] = {"type": type(error).__name__, "message": str(error),
                                                "traceback": traceback.format_exc()}
    start = time.perf_counter()  # the degeneracy checks (docs/protocol.md): what a score cannot mean
    names = [spec.name for spec in cell.metrics]
    checks = cell_checks(model, train_images=train_split.images, codes=representation.z_test, scores=scores,
                         reconstruction_images=eval_split.images[latents["test_rows"][:RECONSTRUCTION_SAMPLES]],
                         evaluation_images=eval_split.images[latents["test_rows"]], suite_metrics=names,
                         latent_metrics=[name for name in names if not registry.metric(name).needs_model],
                         metric_errors=metric_errors, not_applicable=not_applicable)
    timings["checks_s"] = time.perf_counter() - start
    # the cell's process CPU: training (summed across resumes) and this run's evaluation (encoding, metrics,
    # checks); a worker runs one cell at a time, so its process time is the cell's
    timings["cpu_s"] = history.cpu_seconds + time.process_time() - evaluation_cpu_start
    return {
        "factors": list(dataset.card.factor_names),
        "adjacency": np.asarray(dataset.card.adjacency).tolist(),
        **({"unidentifiable": dict(dataset.unidentifiable)} if getattr(dataset, "unidentifiable", None) else {}),
        **({"assumptions_broken": broken} if (broken := broken_assumptions(model, dataset)) else {}),
        "alignment": alignment,
        "representation": representation.description(),
        "given": model.supervision(),
        "latent_size": model.latent_size() or int(np.prod(latents["blocks"])),
        "schedule": model.schedule(),
        "convergence": verdict(history.epochs, model.schedule(), history.evaluations),
        "budget_fraction": budget_fraction(cell, history.steps, len(train_split)),
        "device": device,
        "scores": scores,
        "checks": checks,
        "metrics": metrics,
        "history": history_data,
        "model_source": source,
        "reference": reference_row(model),
        **({"partial": True, "metric_errors": metric_errors} if metric_errors else {}),
        **({"not_applicable": not_applicable} if not_applicable else {}),
        **({"notes": notes} if notes else {}),
    }


def broken_assumptions(model, dataset) -> dict[str, str]:
    """The model's assumptions (``CausalModel.assumptions``) that the dataset's data do not satisfy, with their
    descriptions: the report marks the cell's scores as obtained outside the method's assumptions."""
    satisfied = dataset.satisfied() if hasattr(dataset, "satisfied") else frozenset()
    return {key: text for key, text in getattr(model, "assumptions", {}).items() if key not in satisfied}


def reference_row(model) -> dict[str, Any] | None:
    """The record's ``reference``: None for a method; for a reference row (docs/protocol.md, "Reference
    rows") the scores it stands for and what it runs."""
    reference_for = stood_for(model)
    return {"for": list(reference_for), "architecture": model.architecture()} if reference_for else None


def _not_standing_for(model) -> str:
    return f"reference row {model.name!r} stands for {', '.join(stood_for(model))} only"


def training_and_evaluation_splits(dataset, split: str, pairs: bool = False):
    """The training split and the evaluation split ``split``. For ``val`` on a dataset without one
    (Pendulum, Flow), a seeded ``VALIDATION_FRACTION`` of the training split is held out and
    training uses the rest; the cell hash records the holdout (:meth:`crlbench.suites.cell.Cell.identity`).
    With ``pairs``, each split's extras also hold its pairs (:meth:`crlbench.datasets.base.SCMDataset.pairs`;
    :class:`~crlbench.core.errors.NotApplicable` on a dataset without them)."""
    if split not in dataset.split_names and split != "val":
        raise unknown_name("evaluation split", split, dataset.split_names, where=f"dataset {dataset.name!r}: ")

    def load(name: str):
        loaded = dataset.split(name)
        if pairs:
            loaded.extras.update(dataset.pairs(name))
        return loaded

    if split in dataset.split_names:
        return load("train"), load(split)
    full = load("train")
    order = np.random.default_rng(np.random.SeedSequence(VALIDATION_SEED, spawn_key=(EVALUATION_STREAM,))).permutation(len(full))
    held = int(round(VALIDATION_FRACTION * len(full)))
    return _subset(full, np.sort(order[held:]), "train"), _subset(full, np.sort(order[:held]), "val")


def environments_of(model, split, dataset) -> np.ndarray | None:
    """The environment of every training row for a model that trains on environments (None for any other);
    :class:`~crlbench.core.errors.NotApplicable` when the dataset is not in the environments mode."""
    if not getattr(model, "needs_environments", False):
        return None
    if "environment" not in split.extras:
        raise NotApplicable(f"model {model.name!r} trains on interventional environments; dataset {dataset.name!r} gives "
                            "them with the parameter environments: true (pendulum, flow, causal_circuit, chamber_f3, chamber)")
    return split.extras["environment"]


def _subset(split, rows: np.ndarray, name: str):
    extras = {key: value[rows] for key, value in split.extras.items() if len(value) == len(split)}
    return dataclasses.replace(split, name=name, images=split.images[rows], factors=split.factors[rows],
                               noise=split.noise[rows], extras=extras)


def resolve_device(device: str) -> str:
    """The device a cell trains on. ``auto`` is CUDA when torch sees a GPU, else the CPU. CUDA without an
    index (``cuda``, or ``auto`` on a GPU machine) is, in worker i of a launcher, ``cuda:(i mod GPUs)``
    (:func:`crlbench.suites.cell_resources.worker_slot`), so that workers spread over a machine's GPUs; in the
    launcher's own process it is ``cuda`` (torch's current GPU). Other names (``cpu``, ``cuda:1``) pass
    through. The cell's hash keeps the device as the suite names it, never the one resolved here."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.split(":")[0] == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r}: torch {torch.__version__} sees no CUDA device (a CPU build of torch, "
                          "or no GPU visible); use device auto or cpu, or install a CUDA build of torch")
    slot = worker_slot()
    if device == "cuda" and slot is not None:
        return f"cuda:{device_index(slot, torch.cuda.device_count())}"
    return device


def _latents(cell: Cell, model, train_split, eval_split, directory: Path, notes: list[str]) -> dict[str, np.ndarray]:
    """Encoded latents on a seeded sample of the training split and of the evaluation split (cached)."""
    path = directory / "latents.npz"
    settings = np.array([cell.evaluation.split, cell.evaluation.n_train, cell.evaluation.n_test], dtype=str)
    if path.exists():
        try:
            with np.load(path, allow_pickle=False) as stored:
                if np.array_equal(stored["settings"], settings):
                    return {name: stored[name] for name in stored.files}  # reading checks each array's CRC
        except Exception as error:  # noqa: BLE001 - truncated or corrupted: encode again
            _unreadable(notes, path, error, "encoded the latents again from the model")
    rng = np.random.default_rng(np.random.SeedSequence(cell.seed, spawn_key=(EVALUATION_STREAM,)))
    train_rows = np.sort(rng.choice(len(train_split), size=min(cell.evaluation.n_train, len(train_split)), replace=False))
    test_rows = np.sort(rng.choice(len(eval_split), size=min(cell.evaluation.n_test, len(eval_split)), replace=False))
    latents = {
        "settings": settings,
        "train_rows": train_rows, "test_rows": test_rows,
        "z_train": encode(model, train_split.images[train_rows]), "y_train": train_split.factors[train_rows],
        "z_test": encode(model, eval_split.images[test_rows]), "y_test": eval_split.factors[test_rows],
        "blocks": np.asarray(_block_shape(model, eval_split.images[:2])),
    }
    write_npz(path, latents)
    return latents


def _unreadable(notes: list[str], path: Path, error: BaseException, action: str) -> None:
    """Name a stored file that could not be read, and what was done instead, in the log and the record."""
    message = str(error).strip().splitlines()[0] if str(error).strip() else "no message"
    note = f"{path} was unreadable ({type(error).__name__}: {message}); {action}"
    log.warning("%s", note)
    notes.append(note)


@torch.no_grad()
def _block_shape(model, images: np.ndarray) -> tuple[int, int]:
    return tuple(model.encode(as_model_images(images).to(model_device(model))).shape[1:])


def heldout_monitor(cell: Cell, dataset, train_split, eval_split, device: str) -> tuple[Any, dict[str, Any]]:
    """The trainer's monitor (:mod:`crlbench.suites.monitor`: DCI, MCC and the reconstruction error of a fixed
    validation sample, never the test split) and its description for the record's history."""
    sample = validation_sample(dataset, cell.evaluation.split, train_split, eval_split)
    options = {spec.name: dict(spec.options) for spec in cell.metrics if spec.name in MONITOR_METRICS}
    monitor = ValidationMonitor(sample, device, seed=_stream_seed(cell.seed, METRIC_STREAM),
                                representation=cell.evaluation.representation, options=options)
    return monitor, sample.description()


def _align(model, latents: dict[str, np.ndarray]) -> dict[str, Any]:
    """Which codes go with which factor (:func:`factor_alignment`); an unaligned model's matching is also
    given to its do()."""
    alignment = factor_alignment(model.aligned, latents)
    if alignment["kind"] == "matched" and hasattr(model, "set_alignment"):
        model.set_alignment(alignment["codes"])
    return alignment


def budget_fraction(cell: Cell, steps: int, train_size: int) -> dict[str, Any] | None:
    """The training images the cell saw against its method's reference run (None when none is declared)."""
    reference = cell.reference_budget
    if not reference:
        return None
    batch = cell.budget.batch_size
    epochs, rest = divmod(steps, -(-train_size // batch))  # an epoch's last batch is short
    seen = epochs * train_size + rest * batch
    if reference.get("epochs") is not None:
        reference_images = reference["epochs"] * train_size
    else:
        reference_images = reference["steps"] * reference.get("batch_size", cell.budget.batch_size)
    return {"images": seen, "reference_images": int(reference_images), "fraction": seen / reference_images,
            "reference": dict(reference)}


def _metric(spec, cell: Cell, model, dataset, train_split, eval_split, latents, representation: Representation,
            seed: int, directory: Path, notes: list[str]) -> dict[str, Any]:
    """One metric's result, from ``metrics/<name>.json`` when it was computed with the same settings
    (and its matrices, ``metrics/<name>.npz``, can be read)."""
    variant = registry.metric(spec.name)
    options = _options(variant, spec.options, representation.block_size)
    settings = {"options": options, "evaluation": latents["settings"].tolist(), "seed": seed,
                "representation": representation.kind}
    path = directory / "metrics" / f"{spec.name}.json"
    if path.exists():
        checked = path
        try:
            stored = read_json(path)
            if not isinstance(stored, dict) or not isinstance(stored.get("scores"), dict):
                raise ValueError("not a metric result (no 'scores' object)")
            if stored.get("settings") == settings:
                if stored.get("matrices"):
                    checked = directory / "metrics" / f"{spec.name}.npz"
                    with np.load(checked, allow_pickle=False) as matrices:
                        for name in stored["matrices"]:
                            matrices[name]  # reading checks the array's CRC
                return stored
        except Exception as error:  # noqa: BLE001 - truncated or corrupted: compute again
            _unreadable(notes, checked, error, f"computed {spec.name} again")
    if variant.needs_model:
        result = compute_with_model(spec.name, model, dataset, train_split, eval_split, seed=seed, **options)
    else:
        z_train, z_test = representation.z_train, representation.z_test
        if variant.needs_test:
            result = compute(spec.name, z_train, latents["y_train"], z_test, latents["y_test"], seed=seed, **options)
        else:
            result = compute(spec.name, z_test, latents["y_test"], seed=seed, **options)
    if not variant.needs_model:
        result.info["representation"] = representation.description()
    if result.matrices:
        write_npz(directory / "metrics" / f"{spec.name}.npz", result.matrices)
    stored = {"scores": result.scores, "notes": result.notes, "info": result.info,
              "matrices": sorted(result.matrices), "settings": settings}
    write_json(path, stored)
    return read_json(path)  # the JSON form, identical to what a rerun reads back


def _options(variant, given: dict[str, Any], block_size: int) -> dict[str, Any]:
    """The suite's options plus what the runner fills in per model: concept block size, factor
    bins for discrete-only variants, and scikit-learn's ``n_jobs`` = the cell's threads (joblib runs
    on threads inside a cell: crlbench.suites.cell_resources.cell_threads)."""
    options = dict(given)
    defaults = variant.defaults
    if "block_size" in defaults:
        options.setdefault("block_size", block_size)
    if getattr(variant, "discrete_factors", False) and "factor_bins" not in defaults:
        options.setdefault("factor_bins", DEFAULT_FACTOR_BINS)
    if "n_jobs" in defaults:
        options.setdefault("n_jobs", max(1, torch.get_num_threads()))
    return options


@torch.no_grad()
def _intervention_grid(cell: Cell, model, dataset, split, test_rows: np.ndarray, seed: int, directory: Path,
                       notes: list[str]) -> None:
    """Source images; per factor k, the true counterfactual do(k = v_s) and the model's do() (concept k
    set to what its encoder gives the true counterfactual, as in ``counterfactual@probe``)."""
    path = directory / "interventions.npz"
    if path.exists():
        try:
            with np.load(path, allow_pickle=False) as stored:
                for name in stored.files:
                    stored[name]  # reading checks the array's CRC
            return
        except Exception as error:  # noqa: BLE001 - truncated or corrupted: draw it again
            _unreadable(notes, path, error, "drew the intervention grid again")
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(test_rows, size=min(cell.evaluation.interventions, len(test_rows)), replace=False))
    factors, noise = split.factors[rows], split.noise[rows]
    truth, predicted, values = [], [], []
    device = model_device(model)
    for k, factor in enumerate(dataset.card.factors):
        targets = factor.sweep(len(rows)) if len(rows) > 1 else np.array([factor.sweep(3)[1]])
        true_images = dataset.render(dataset.intervene(factors, noise, k, targets), noise)
        x_hat = model.intervene(as_model_images(split.images[rows]).to(device), k,
                                concept_value(model, as_model_images(true_images).to(device), k))
        truth.append(true_images)
        predicted.append((x_hat.clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).cpu().numpy())
        values.append(targets)
    write_npz(path, {"source": split.images[rows], "truth": np.stack(truth), "model": np.stack(predicted),
                     "values": np.stack(values), "factor_names": np.array(dataset.card.factor_names)})


def _stream_seed(seed: int, stream: int) -> int:
    return int(np.random.SeedSequence(seed, spawn_key=(stream,)).generate_state(1)[0])
