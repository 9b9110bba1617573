"""One trainer for every model: a budget in epochs or steps, seeded, checkpointed, resumable.

Determinism on CPU: the initial weights come from the seed's own stream (:func:`build_model`), each
epoch's sample order from its own numpy stream (seed, epoch), the training noise from a third; the
torch random state is saved in every checkpoint, so a run resumed from its latest checkpoint ends with the same weights
as one that never stopped. A NaN or infinite loss term stops training with :class:`TrainingDiverged`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.errors import ConfigError, CrlbenchError
from bench.files import atomic_write
from bench.model import CausalModel

log = logging.getLogger(__name__)

Callback = Callable[[int, dict[str, float]], None]  # (epoch, mean losses of that epoch)
CHECKPOINT = "last.pt"
INITIAL_WEIGHTS, SAMPLE_ORDER, TRAINING_NOISE = 0, 1, 2  # independent streams of a cell's seed


def build_model(name: str, card: Any, seed: int, **hyperparameters: Any) -> CausalModel:
    """The registered model ``name``, its initial weights drawn from the seed's own stream."""
    from bench import registry

    torch.manual_seed(_torch_seed(seed, INITIAL_WEIGHTS))
    return registry.model(name, card, **hyperparameters)


def _torch_seed(seed: int, stream: int) -> int:
    return int(np.random.SeedSequence(seed, spawn_key=(stream,)).generate_state(1)[0])


class TrainingDiverged(CrlbenchError):
    """A loss term became NaN or infinite."""

    def __init__(self, step: int, term: str, value: float) -> None:
        super().__init__(f"training diverged at step {step}: loss term {term!r} is {value}")
        self.step, self.term, self.value = step, term, value


@dataclass(frozen=True)
class Budget:
    """How long to train: ``epochs`` or ``steps`` (whichever comes first), in batches of ``batch_size``."""

    epochs: int | None = None
    steps: int | None = None
    batch_size: int = 64

    def __post_init__(self) -> None:
        if self.epochs is None and self.steps is None:
            raise ConfigError("budget: give 'epochs' or 'steps'")
        for key in ("epochs", "steps", "batch_size"):
            value = getattr(self, key)
            if value is not None and (not isinstance(value, int) or value <= 0):
                raise ConfigError(f"budget: {key!r} must be a positive integer; got {value!r}")


@dataclass
class History:
    """Mean loss terms per epoch, and the number of optimisation steps taken."""

    epochs: list[dict[str, float]] = field(default_factory=list)
    steps: int = 0


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
    callbacks: Sequence[Callback] = (),
    progress: bool = True,
    device: str | torch.device = "cpu",
) -> History:
    """Train ``model`` on ``images`` uint8 [N, H, W, C] and ``factors`` [N, K] within ``budget``.

    With ``checkpoint_dir``, the state is saved every ``checkpoint_every`` epochs and training
    resumes from the latest checkpoint found there. Callbacks run after every epoch and may raise
    to stop (Optuna pruning attaches here). Batches are moved to ``device``, where the model must be.
    """
    if len(images) != len(factors) or len(images) == 0:
        raise ConfigError(f"train: need as many images as factor rows, at least one; got {len(images)} and {len(factors)}")
    stats = model.card.label_stats
    mean, std = np.asarray(stats["mean"]), np.asarray(stats["std"])
    batches_per_epoch = int(np.ceil(len(images) / budget.batch_size))
    total_steps = min(
        budget.steps if budget.steps is not None else np.inf,
        budget.epochs * batches_per_epoch if budget.epochs is not None else np.inf,
    )
    torch.manual_seed(_torch_seed(seed, TRAINING_NOISE))
    model.on_train_start(int(total_steps), batches_per_epoch)
    optimizers = model.optimizers()
    history, epoch = History(), 0
    path = Path(checkpoint_dir) / CHECKPOINT if checkpoint_dir is not None else None
    if path is not None and path.exists():
        epoch, history = _restore(path, model, optimizers)
        log.info("resumed from %s at epoch %d", path, epoch)
    bar = _progress(total_steps, history.steps, progress)
    while history.steps < total_steps:
        order = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(SAMPLE_ORDER, epoch))).permutation(len(images))
        model.on_epoch_start(epoch)
        sums: dict[str, float] = {}
        batches = 0
        for start in range(0, len(images), budget.batch_size):
            if history.steps >= total_steps:
                break
            rows = np.sort(order[start:start + budget.batch_size])
            batch = {key: value.to(device) for key, value in batch_tensors(images[rows], factors[rows], mean, std).items()}
            losses = optimisation_step(model, optimizers, batch, history.steps)
            history.steps += 1
            batches += 1
            for term, value in losses.items():
                sums[term] = sums.get(term, 0.0) + value
            bar.update(1)
            bar.set_postfix(loss=f"{losses.get('loss', float('nan')):.4g}", refresh=False)
        epoch += 1
        record = {term: total / batches for term, total in sums.items()}
        history.epochs.append(record)
        if path is not None and (epoch % checkpoint_every == 0 or history.steps >= total_steps):
            _save(path, model, optimizers, epoch, history)
        for callback in callbacks:
            callback(epoch, record)
    bar.close()
    return history


def optimisation_step(model: CausalModel, optimizers, batch, step: int) -> dict[str, float]:
    """One training step: the model's own updates, or back-propagating "loss" through its one optimiser."""
    model.train()
    if model.manual_optimization:
        losses = model.training_step(batch, step)
    else:
        (optimizer,) = optimizers.values()
        optimizer.zero_grad(set_to_none=True)
        losses = model.training_step(batch, step)
        _check_finite(losses, step)
        losses["loss"].backward()
        optimizer.step()
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
        "epoch": epoch,
        "history": {"epochs": history.epochs, "steps": history.steps},
        "torch_rng": torch.get_rng_state(),
    }
    atomic_write(path, lambda handle: torch.save(state, handle))


def _restore(path: Path, model, optimizers) -> tuple[int, History]:
    state = torch.load(path, weights_only=False, map_location=next(model.parameters()).device)
    model.load_state_dict(state["model"])
    for name, optimizer in optimizers.items():
        optimizer.load_state_dict(state["optimizers"][name])
    torch.set_rng_state(state["torch_rng"].cpu())
    return state["epoch"], History(**state["history"])


def _progress(total: float, done: int, enabled: bool) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=None if total == np.inf else int(total), initial=done, desc="training", unit="step",
                disable=None if enabled else True, leave=False)
