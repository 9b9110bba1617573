"""Mixed precision for training, importable without torch: a suite's ``precision`` key is checked
before any training (torch is imported only when a :class:`Precision` is built).

``fp32`` (the default) trains exactly as crlbench always has: no autocast, no gradient scaler. ``bf16``
and ``fp16`` run each training step's forward pass and loss under ``torch.autocast`` on the cell's
device type; the backward pass and the optimiser step run outside it (torch's advice), in fp32 master
weights. ``fp16`` also scales the loss with ``torch.amp.GradScaler`` (it underflows otherwise).

Where each is accepted (:data:`ACCEPTED`): on the CPU ``fp32`` and ``bf16`` (torch has no fp16
autocast worth using there, and no scaler is needed for bf16); on CUDA all three; on MPS ``fp32`` only
(untested there). ``fp16`` is refused for a model that steps its own optimisers
(``manual_optimization``, DEAR): the scaler would have to wrap every ``backward`` and ``step`` inside the
model's ``training_step``, which the trainer does not see. Such a model runs ``bf16`` with its whole
``training_step`` under autocast, the autocast weight cache off (the model updates weights between
forward passes of one step, and a cached bf16 copy would be stale).

Evaluation (encoding, reconstruction, metrics, the intervention grid) always runs in fp32: the
precision is a training setting, recorded in the cell and, when not ``fp32``, part of its hash.
"""

from __future__ import annotations

import contextlib
from typing import Any

from crlbench.core.errors import ConfigError, accepted

PRECISIONS = ("fp32", "bf16", "fp16")
DEFAULT_PRECISION = "fp32"
ACCEPTED = {"cpu": ("fp32", "bf16"), "cuda": PRECISIONS, "mps": ("fp32",)}  # by device type


def device_type(device: Any) -> str:
    """``"cuda"`` for ``"cuda:1"``, a ``torch.device`` or ``"cuda"``; ``"auto"`` stays ``"auto"``."""
    return str(getattr(device, "type", device)).split(":")[0]


def precision_problem(precision: Any, device: Any, model: Any = None) -> str | None:
    """Why ``precision`` cannot train ``model`` on ``device`` (None when it can). ``device`` ``"auto"``
    accepts what CUDA accepts (checked again once it is resolved); ``model`` (a class or an instance)
    is checked only when given."""
    if precision not in PRECISIONS:
        return f"must be one of {accepted(PRECISIONS)}; got {precision!r}"
    kind = device_type(device)
    allowed = ACCEPTED["cuda"] if kind == "auto" else ACCEPTED.get(kind, (DEFAULT_PRECISION,))
    if precision not in allowed:
        return (f"{precision!r} is not available on device {str(device)!r}: accepted there: {accepted(allowed)}"
                + (" (fp16 needs device cuda)" if precision == "fp16" else ""))
    if precision == "fp16" and model is not None and getattr(model, "manual_optimization", False):
        name = getattr(model, "name", type(model).__name__)
        return (f"'fp16' is refused for model {name!r}: it steps its own optimisers (manual_optimization), so "
                f"the trainer cannot apply fp16's gradient scaler; use bf16 or fp32")
    return None


class Precision:
    """What the trainer needs of a cell's precision on its (resolved) device: the autocast context of a
    forward pass and the backward-and-step of one optimiser. Raises :class:`ConfigError` when the
    combination is not accepted (:func:`precision_problem`)."""

    def __init__(self, precision: str = DEFAULT_PRECISION, device: Any = "cpu", model: Any = None) -> None:
        problem = precision_problem(precision, device, model)
        if problem is not None:
            raise ConfigError(f"precision: {problem}")
        import torch

        self.name, self.device_type = precision, device_type(device)
        self.dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
        self.scaler = torch.amp.GradScaler(self.device_type) if precision == "fp16" else None

    def autocast(self, cache: bool = True):
        """The forward pass's context: nothing for fp32; ``cache=False`` for models that update weights
        between forward passes of one step."""
        if self.dtype is None:
            return contextlib.nullcontext()
        import torch

        return torch.autocast(self.device_type, dtype=self.dtype, cache_enabled=cache)

    def backward_step(self, loss, optimizer) -> None:
        """Back-propagate ``loss`` and step ``optimizer`` (through the gradient scaler for fp16)."""
        if self.scaler is None:
            loss.backward()
            optimizer.step()
            return
        self.scaler.scale(loss).backward()
        self.scaler.step(optimizer)  # skipped when the scaled gradients hold inf or NaN
        self.scaler.update()

