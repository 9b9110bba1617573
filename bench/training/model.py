"""The model contract every registered method follows.

A model is a ``torch.nn.Module`` built from a dataset card and typed hyperparameters (a frozen
dataclass ``Config`` whose defaults are the reference values). The trainer feeds it batches of
``{"images": float [B, C, H, W] in [0, 1], "factors": float [B, K] standardised}``.

* ``optimizers()`` names its optimisers. With one optimiser the trainer back-propagates the
  ``"loss"`` entry of ``training_step``; a model with several (DEAR) sets ``manual_optimization``
  and steps them itself inside ``training_step``.
* ``on_train_start(total_steps, steps_per_epoch)`` and ``on_epoch_start(epoch)`` let a model follow a
  schedule (ICM-VAE's warm-up), which ``schedule()`` reports for the result record.
* ``encode(x)`` gives the representation ``[N, K, k]`` in concept blocks; an unaligned model
  (beta-VAE) sets ``aligned = False`` and returns ``[N, 1, d]``.
* ``reconstruct(x)`` and ``intervene(x, target, value)`` return images in [0, 1].
* ``supervision()`` and ``latent_size()`` tell the leaderboard what the method is given and learns.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from crlbench.core.params import parse_params


def adam(parameters, **options: Any) -> torch.optim.Optimizer:
    """Adam, fused where the installed torch offers it on this device (same algorithm, one kernel:
    on the 186 M-parameter reference backbone the CPU step drops from 1.6 s to 0.3 s)."""
    parameters = list(parameters)
    try:
        return torch.optim.Adam(parameters, fused=True, **options)
    except (RuntimeError, TypeError, ValueError):  # older torch, or no fused kernel for this device
        return torch.optim.Adam(parameters, **options)


class CausalModel(nn.Module):
    """Base class of the registered models."""

    name: ClassVar[str]
    Config: ClassVar[type]
    aligned: ClassVar[bool] = True
    manual_optimization: ClassVar[bool] = False

    def __init__(self, card: Any, **hyperparameters: Any) -> None:
        super().__init__()
        self.card = card
        self.config = parse_params(self.Config, hyperparameters, owner=f"model {self.name!r}")
        height, width, channels = card.image_shape
        self.image_size, self.channels = height, channels

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        raise NotImplementedError

    def on_train_start(self, total_steps: int, steps_per_epoch: int) -> None:
        """Called by the trainer before the first step (and again on resume) with the run's length, for
        schedules that scale with the budget."""
        self.total_steps, self.steps_per_epoch = total_steps, steps_per_epoch

    def on_epoch_start(self, epoch: int) -> None:
        """Called by the trainer before each epoch (0-based), e.g. for weight annealing."""

    def supervision(self) -> list[str] | None:
        """What the method is given besides the images, for the leaderboard: any of "labels", "true graph",
        "initial graph", "pairs"; [] for nothing; None when the method does not say."""
        return None

    def latent_size(self) -> int | None:
        """The number of latent dimensions the method learns (None: the size of ``encode``'s output)."""
        return None

    def schedule(self) -> dict | None:
        """The schedule the run followed (warm-ups, annealing) for the result record, or None if the
        model has none. A dict with ``"finished": bool``: whether every schedule completed within the budget."""
        return None

    def training_step(self, batch: dict[str, torch.Tensor], step: int) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def reconstruct(self, images: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def intervene(self, images: torch.Tensor, target: int, value: float | torch.Tensor) -> torch.Tensor:
        raise NotImplementedError
