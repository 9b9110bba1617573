"""One trainer for every model: a budget in epochs or steps, seeded, checkpointed, resumable.

Determinism on CPU: the initial weights come from the seed's own stream (:func:`build_model`), each
epoch's sample order from its own numpy stream (seed, epoch), the training noise from a third; the
torch random state is saved in every checkpoint, so a run resumed from its latest checkpoint ends with the same weights
as one that never stopped. A NaN or infinite loss term stops training with :class:`TrainingDiverged`.

Checkpoints hold tensors and plain values only (state dicts, the epoch, the loss history, the torch
random state) and are loaded with ``torch.load(weights_only=True)``: a file holding anything else
(a crafted pickle) is refused with :class:`crlbench.core.errors.UnsafeCheckpointError` and never executed.
Saving keeps the previous checkpoint as ``last.pt.prev``; an unreadable ``last.pt`` (truncated,
corrupted) is reported by path and training resumes from ``last.pt.prev``, or from scratch when that
is unreadable too (same weights either way: the run is deterministic). The unreadable file is removed.

A finished cell's checkpoint is *compacted* (:func:`compact_checkpoint`, called by the suite runner
unless ``--keep-checkpoints`` / ``$CRLBENCH_KEEP_CHECKPOINTS``): its optimiser state and ``last.pt.prev``
are dropped, the model weights, epoch, history and random state kept, so metrics added later are
computed from it and resuming it (budget reached) trains nothing. A compacted checkpoint resumed to
train further starts its optimisers afresh (noted in the history).
"""

from __future__ import annotations

import contextlib
import copy
import logging
import os
import pickle
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from crlbench.core.errors import ConfigError, CrlbenchError, DiskFullError, NotApplicable, UnsafeCheckpointError
from crlbench.core.files import atomic_write, disk_full
from crlbench.training.budget import KEEP_CHECKPOINTS, Budget  # noqa: F401  (defined without torch; imported from here too)
from crlbench.training.model import CausalModel, model_device
from crlbench.training.precision import Precision

log = logging.getLogger(__name__)

Callback = Callable[[int, dict[str, float]], None]  # (epoch, mean losses of that epoch)
Monitor = Callable[[CausalModel], dict[str, float]]  # the model at a reading -> its values (scores, held-out error)
CHECKPOINT = "last.pt"
PREVIOUS = ".prev"  # last.pt.prev: the checkpoint before the latest
INITIAL_WEIGHTS, SAMPLE_ORDER, TRAINING_NOISE = 0, 1, 2  # independent streams of a cell's seed
END_OF_TRAINING = 6  # the stream of on_train_end's rows (3-5 are the runner's: crlbench.suites.runner)
END_OF_TRAINING_ROWS = 1000  # training rows given to CausalModel.on_train_end (ILCM infers its graph from them)


def build_model(name: str, card: Any, seed: int, **hyperparameters: Any) -> CausalModel:
    """The registered model ``name``, its initial weights drawn from the seed's own stream."""
    from crlbench.core import registry

    torch.manual_seed(_torch_seed(seed, INITIAL_WEIGHTS))
    return registry.model(name, card, **hyperparameters)


def _torch_seed(seed: int, stream: int) -> int:
    return int(np.random.SeedSequence(seed, spawn_key=(stream,)).generate_state(1)[0])


class TrainingDiverged(CrlbenchError):
    """A loss term became NaN or infinite."""

    def __init__(self, step: int, term: str, value: float) -> None:
        super().__init__(f"training diverged at step {step}: loss term {term!r} is {value}")
        self.step, self.term, self.value = step, term, value


@dataclass
class History:
    """Mean loss terms per epoch, the number of optimisation steps taken, and the monitor's readings
    (``{"step", "epoch", "scores"}``, ``epoch`` = steps / batches per epoch); ``notes`` say what was
    recovered (an unreadable checkpoint) and are not stored in checkpoints."""

    epochs: list[dict[str, float]] = field(default_factory=list)
    steps: int = 0
    evaluations: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    compact: bool = False  # the checkpoint on disk is compacted (resumed from one and not saved since)
    # process CPU seconds of the training the history holds, summed across resumes (work lost to a kill after
    # the last checkpoint is not counted: it is redone and counted then)
    cpu_seconds: float = 0.0


def batch_tensors(images: np.ndarray, factors: np.ndarray, mean: np.ndarray, std: np.ndarray) -> dict[str, torch.Tensor]:
    """uint8 HWC images and raw factors -> the model's float CHW images in [0, 1] and standardised factors."""
    pixels = torch.from_numpy(images).permute(0, 3, 1, 2).float().div_(255.0)
    labels = torch.from_numpy((factors - mean) / np.where(std > 0, std, 1.0)).float()
    return {"images": pixels, "factors": labels}


def train(
    model: CausalModel,
    images: np.ndarray,
    factors: np.ndarray,
    *,
    budget: Budget,
    seed: int,
    checkpoint_dir: str | os.PathLike | None = None,
    checkpoint_every: int = 1,
    precision: str = "fp32",
    callbacks: Sequence[Callback] = (),
    progress: bool = True,
    device: str | torch.device = "cpu",
    monitor: Monitor | None = None,
    images_after: np.ndarray | None = None,
    monitor_every: int | None = None,
    environments: np.ndarray | None = None,
) -> History:
    """Train ``model`` on ``images`` uint8 [N, H, W, C] and ``factors`` [N, K] within ``budget``.

    With ``checkpoint_dir``, the state is saved every ``checkpoint_every`` epochs and training
    resumes from the latest checkpoint found there. ``monitor`` runs after every epoch, and with
    ``monitor_every`` also after every step that is a multiple of it, under its own copy of the random
    state (training continues exactly as without it); each reading joins ``History.evaluations``, and an
    epoch end's values also join that epoch's record (the runner's held-out scores and reconstruction
    error; checkpoints keep both). When the budget is reached, the model's
    ``on_train_end`` gets a seeded batch of training rows (:func:`end_of_training_batch`) before the last
    checkpoint is saved. Callbacks run after it and may raise
    to stop (Optuna pruning attaches here). Batches are moved to ``device``, where the model must be.
    ``precision`` (fp32, bf16, fp16) is the forward pass's autocast (:mod:`crlbench.training.precision`).
    ``images_after`` [N, H, W, C] uint8, the second image of each pair, is required by a model with
    ``needs_pairs`` and joins its batches as ``"images_after"`` (same rows as ``"images"``).
    ``environments`` [N] int, each row's environment (0 observational, 1..E interventional), is required by a
    model with ``needs_environments`` and joins its batches as ``"environment"`` (a LongTensor).
    """
    if len(images) != len(factors) or len(images) == 0:
        raise ConfigError(f"train: need as many images as factor rows, at least one; got {len(images)} and {len(factors)}")
    if monitor_every is not None and (not isinstance(monitor_every, int) or monitor_every < 1):
        raise ConfigError(f"train: monitor_every must be a positive number of steps or None; got {monitor_every!r}")
    if getattr(model, "needs_pairs", False):
        if images_after is None:
            raise NotApplicable(f"model {model.name!r} trains on pairs (an image and the same scene after an "
                                "intervention): train() needs images_after")
        if images_after.shape != images.shape:
            raise ConfigError(f"train: images_after must have the shape of images {images.shape}; got {images_after.shape}")
    if getattr(model, "needs_environments", False):
        if environments is None:
            raise NotApplicable(f"model {model.name!r} trains on interventional environments: train() needs environments "
                                "(a dataset with the parameter environments: true)")
        if np.shape(environments) != (len(images),):
            raise ConfigError(f"train: environments must hold one index per image ({len(images)}); got shape "
                              f"{np.shape(environments)}")
    stats = model.card.label_stats
    mean, std = np.asarray(stats["mean"]), np.asarray(stats["std"])
    batches_per_epoch = int(np.ceil(len(images) / budget.batch_size))
    total_steps = min(
        budget.steps if budget.steps is not None else np.inf,
        budget.epochs * batches_per_epoch if budget.epochs is not None else np.inf,
    )
    mixed = Precision(precision, device, model)  # a ConfigError before any work when it cannot run here
    torch.manual_seed(_torch_seed(seed, TRAINING_NOISE))
    model.on_train_start(int(total_steps), batches_per_epoch)
    optimizers = model.optimizers()
    history, epoch = History(), 0
    path = Path(checkpoint_dir) / CHECKPOINT if checkpoint_dir is not None else None
    if path is not None:
        epoch, history = resume(path, model, optimizers)
        if history.compact and history.steps < total_steps:
            note = (f"checkpoint {path} was compacted when its training finished (no optimiser state); "
                    f"training goes on from its weights with fresh optimisers")
            log.warning("%s", note)
            history.notes.append(note)
    bar = _progress(total_steps, history.steps, progress)
    cpu_start, cpu_before = time.process_time(), history.cpu_seconds
    while history.steps < total_steps:
        order = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(SAMPLE_ORDER, epoch))).permutation(len(images))
        model.on_epoch_start(epoch)
        sums: dict[str, float] = {}
        batches = 0
        for start in range(0, len(images), budget.batch_size):
            if history.steps >= total_steps:
                break
            rows = np.sort(order[start:start + budget.batch_size])
            batch = batch_tensors(images[rows], factors[rows], mean, std)
            batch.update(extra_inputs(model, rows, images_after, environments, factors, mean, std))
            batch = {key: value.to(device) for key, value in batch.items()}
            losses = optimisation_step(model, optimizers, batch, history.steps, mixed)
            history.steps += 1
            batches += 1
            for term, value in losses.items():
                sums[term] = sums.get(term, 0.0) + value
            bar.update(1)
            bar.set_postfix(loss=f"{losses.get('loss', float('nan')):.4g}", refresh=False)
            epoch_ends = start + budget.batch_size >= len(images) or history.steps >= total_steps
            if monitor is not None and monitor_every and history.steps % monitor_every == 0 and not epoch_ends:
                _read(monitor, model, history, batches_per_epoch, device)  # a mid-epoch reading
        epoch += 1
        if history.steps >= total_steps:  # the budget is reached: post-hoc inference, saved with the last checkpoint
            with torch.random.fork_rng(devices=_accelerators(device)):  # training's random state stays as it was
                model.on_train_end(end_of_training_batch(model, images, factors, images_after, mean, std, seed, device,
                                                         environments))
        record = {term: total / batches for term, total in sums.items()}
        if monitor is not None:
            record.update(_read(monitor, model, history, batches_per_epoch, device))
        history.epochs.append(record)
        history.cpu_seconds = cpu_before + time.process_time() - cpu_start
        if path is not None and (epoch % checkpoint_every == 0 or history.steps >= total_steps):
            _save(path, model, optimizers, epoch, history)
            history.compact = False  # the new checkpoint holds the optimiser state again
        for callback in callbacks:
            callback(epoch, record)
    bar.close()
    return history


def _read(monitor: Monitor, model: CausalModel, history: History, batches_per_epoch: int, device) -> dict[str, float]:
    """One monitor reading, under a copy of the random state (training's stream stays as it was), added to
    ``history.evaluations``; the model's train/eval mode is restored."""
    training = model.training
    try:
        with torch.random.fork_rng(devices=_accelerators(device)):
            values = {name: float(value) for name, value in monitor(model).items()}
    finally:
        model.train(training)
    history.evaluations.append({"step": int(history.steps), "epoch": history.steps / batches_per_epoch, "scores": values})
    return values


def end_of_training_batch(model: CausalModel, images: np.ndarray, factors: np.ndarray, images_after: np.ndarray | None,
                          mean: np.ndarray, std: np.ndarray, seed: int, device,
                          environments: np.ndarray | None = None) -> dict[str, torch.Tensor]:
    """At most ``END_OF_TRAINING_ROWS`` training rows, drawn from the seed's own stream, batched as in training."""
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(END_OF_TRAINING,)))
    rows = np.sort(rng.choice(len(images), size=min(END_OF_TRAINING_ROWS, len(images)), replace=False))
    batch = batch_tensors(images[rows], factors[rows], mean, std)
    batch.update(extra_inputs(model, rows, images_after, environments, factors, mean, std))
    return {key: value.to(device) for key, value in batch.items()}


def extra_inputs(model: CausalModel, rows: np.ndarray, images_after: np.ndarray | None, environments: np.ndarray | None,
                 factors: np.ndarray, mean: np.ndarray, std: np.ndarray) -> dict[str, torch.Tensor]:
    """What a model's batch holds besides images and factors: the pairs' second images (``needs_pairs``) and
    the rows' environments (``needs_environments``)."""
    extra = {}
    if getattr(model, "needs_pairs", False):
        extra["images_after"] = batch_tensors(images_after[rows], factors[rows], mean, std)["images"]
    if getattr(model, "needs_environments", False):
        extra["environment"] = torch.as_tensor(np.asarray(environments)[rows], dtype=torch.long)
    return extra


def _accelerators(device: str | torch.device) -> list[int]:
    """The CUDA devices whose random state a monitor must not disturb (none on the CPU)."""
    device = torch.device(device)
    return [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else []


def optimisation_step(model: CausalModel, optimizers, batch, step: int,
                      precision: Precision | None = None) -> dict[str, float]:
    """One training step: the model's own updates, or back-propagating "loss" through its one optimiser.
    ``precision`` (default fp32) puts the forward pass under autocast: the whole ``training_step`` of a
    model that steps its own optimisers (without autocast's weight cache: it updates weights in between)."""
    precision = precision or Precision()
    model.train()
    if model.manual_optimization:
        with precision.autocast(cache=False):
            losses = model.training_step(batch, step)
    else:
        (optimizer,) = optimizers.values()
        optimizer.zero_grad(set_to_none=True)
        with precision.autocast():
            losses = model.training_step(batch, step)
        _check_finite(losses, step)
        precision.backward_step(losses["loss"], optimizer)
    _check_finite(losses, step)
    return {term: float(value.detach()) for term, value in losses.items()}


def _check_finite(losses: dict[str, torch.Tensor], step: int) -> None:
    for term, value in losses.items():
        value = float(value.detach())
        if not np.isfinite(value):
            raise TrainingDiverged(step, term, value)


def _save(path: Path, model, optimizers, epoch: int, history: History) -> None:
    state = {
        "model": model.state_dict(),
        "optimizers": {name: optimizer.state_dict() for name, optimizer in optimizers.items()},
        "epoch": int(epoch),
        "history": {"epochs": [{term: float(value) for term, value in record.items()} for record in history.epochs],
                    "steps": int(history.steps), "cpu_seconds": float(history.cpu_seconds),
                    "evaluations": [{"step": int(reading["step"]), "epoch": float(reading["epoch"]),
                                     "scores": {name: float(value) for name, value in reading["scores"].items()}}
                                    for reading in history.evaluations]},
        "torch_rng": torch.get_rng_state(),
    }
    device = model_device(model)
    if device.type == "cuda":  # the noise drawn on the GPU has its own generator: resumed runs continue it
        state["cuda_rng"] = torch.cuda.get_rng_state(device)
    if path.exists():
        _keep_previous(path)
    atomic_write(path, lambda handle: torch.save(state, handle))


def keep_checkpoints() -> bool:
    """Whether finished cells keep their full checkpoints (``$CRLBENCH_KEEP_CHECKPOINTS``, set by
    ``crlbench suite/run --keep-checkpoints``; inherited by worker processes)."""
    return os.environ.get(KEEP_CHECKPOINTS, "") not in ("", "0")


def compact_checkpoint(checkpoint_dir: str | os.PathLike) -> int:
    """Drop what only unfinished training needs from a finished run's checkpoint: the optimiser state
    of ``last.pt`` (rewritten in place, atomically, marked ``compact``) and ``last.pt.prev``. The model
    weights, epoch, history and random state stay. Returns the bytes freed (0 when there is nothing
    to drop or ``last.pt`` cannot be read: it is then left as it is for resume to judge)."""
    path = Path(checkpoint_dir) / CHECKPOINT
    previous = path.with_name(path.name + PREVIOUS)
    if not path.exists():
        return 0
    before = _size(path) + _size(previous)
    try:
        state = torch.load(path, weights_only=True, map_location="cpu")
    except Exception as error:  # noqa: BLE001 - unreadable: resume reports it and falls back to last.pt.prev
        log.warning("checkpoint %s is unreadable (%s); not compacted", path, _first_line(error))
        return 0
    if not isinstance(state, dict) or "model" not in state:
        return 0
    if state.get("optimizers"):
        state["optimizers"] = {}
        state["compact"] = True
        atomic_write(path, lambda handle: torch.save(state, handle))
    with contextlib.suppress(FileNotFoundError):
        previous.unlink()
    freed = before - _size(path)
    log.info("compacted %s: %.1f MB freed", path, freed / 1e6)
    return freed


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _keep_previous(path: Path) -> None:
    """``last.pt.prev`` becomes the current ``last.pt`` (a hard link, else a copy); ``last.pt`` stays
    in place throughout, so a process killed here still finds its latest checkpoint."""
    previous = path.with_name(path.name + PREVIOUS)
    try:
        temporary = previous.with_name(f".{previous.name}.{os.getpid()}.link.tmp")
        temporary.unlink(missing_ok=True)
        os.link(path, temporary)
        os.replace(temporary, previous)
    except OSError as error:
        if disk_full(error):
            raise DiskFullError(previous) from error
        atomic_write(previous, lambda handle: _copy_into(path, handle))  # no hard links on this file system


def _copy_into(source: Path, handle) -> None:
    with open(source, "rb") as stream:
        shutil.copyfileobj(stream, handle)


def resume(path: Path, model, optimizers) -> tuple[int, History]:
    """The epoch and history to continue from: ``path``'s, else ``path.prev``'s, else nothing (epoch 0).

    An unreadable checkpoint is named in a warning (and in the returned history's notes) and
    removed; one holding objects other than tensors and plain values raises
    :class:`UnsafeCheckpointError` and is left for the user to inspect.
    """
    notes = []
    for candidate in (path, path.with_name(path.name + PREVIOUS)):
        if not candidate.exists():
            continue
        try:
            epoch, history = _restore(candidate, model, optimizers)
        except UnsafeCheckpointError:
            raise
        except Exception as error:  # noqa: BLE001 - truncated, corrupted or not a checkpoint of this model
            note = f"checkpoint {candidate} is unreadable ({type(error).__name__}: {_first_line(error)}); removed it"
            log.warning("%s", note)
            notes.append(note)
            with contextlib.suppress(OSError):  # else the next save would keep it as last.pt.prev
                candidate.unlink()
            continue
        log.info("resumed from %s at epoch %d", candidate, epoch)
        if notes:
            notes[-1] += f" and resumed from {candidate.name} at epoch {epoch}"
        history.notes = notes
        return epoch, history
    if notes:
        notes[-1] += " and trained from scratch"
        log.warning("no readable checkpoint in %s: training from scratch", path.parent)
    return 0, History(notes=notes)


def _restore(path: Path, model, optimizers) -> tuple[int, History]:
    """Load ``path`` into ``model`` and ``optimizers``; on any failure they are left as they were."""
    device = model_device(model)
    try:
        state = torch.load(path, weights_only=True, map_location=device)
    except pickle.UnpicklingError as error:
        if "weights only load failed" in str(error).lower():
            raise UnsafeCheckpointError(
                f"checkpoint {path} holds objects other than tensors and plain values, which crlbench never "
                f"writes; it was not loaded (loading it could run code stored in it). Inspect or delete it, "
                f"then run the cell again. Refused: {_refused_global(error)}") from None
        raise
    if not isinstance(state, dict) or not {"model", "optimizers", "epoch", "history", "torch_rng"} <= set(state):
        raise ValueError("not a crlbench checkpoint (expected model, optimizers, epoch, history, torch_rng)")
    saved = copy.deepcopy(model.state_dict()), {name: copy.deepcopy(o.state_dict()) for name, o in optimizers.items()}
    try:
        model.load_state_dict(state["model"])
        for name, optimizer in optimizers.items():
            if state.get("compact") and name not in state["optimizers"]:
                continue  # compacted after it finished: this optimiser starts afresh if training goes on
            optimizer.load_state_dict(state["optimizers"][name])
        history = History(epochs=list(state["history"]["epochs"]), steps=int(state["history"]["steps"]),
                          evaluations=list(state["history"].get("evaluations", [])),  # older checkpoints: none
                          cpu_seconds=float(state["history"].get("cpu_seconds", 0.0)))
        history.compact = bool(state.get("compact"))
        torch.set_rng_state(state["torch_rng"].cpu())
        if "cuda_rng" in state and device.type == "cuda":
            torch.cuda.set_rng_state(state["cuda_rng"].cpu(), device)
    except Exception:
        model.load_state_dict(saved[0])
        for name, optimizer in optimizers.items():
            optimizer.load_state_dict(saved[1][name])
        raise
    return int(state["epoch"]), history


def _refused_global(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).splitlines() if "GLOBAL" in line or "global" in line]
    return lines[0] if lines else _first_line(error)


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else "(no message)"


def _progress(total: float, done: int, enabled: bool) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=None if total == np.inf else int(total), initial=done, desc="training", unit="step",
                disable=None if enabled else True, leave=False)
