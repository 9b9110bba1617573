"""A training budget, importable without torch: a suite's cells are built and hashed from it before
any training (a rerun with nothing to do imports no torch)."""

from __future__ import annotations

from dataclasses import dataclass

from crlbench.core.errors import ConfigError

KEEP_CHECKPOINTS = "CRLBENCH_KEEP_CHECKPOINTS"  # set (to anything but "" or "0"): finished cells keep everything


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
