"""DEAR's hyperparameters (``Config``) and ``version``, importable without torch: a suite's cells are
resolved and hashed from them before any training (see :func:`crlbench.core.registry.model_declaration`).
DEAR (in crlbench.baselines.dear) uses them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from crlbench.core.params import require

@dataclass(frozen=True)
class DEARConfig:
    """DEAR hyperparameters; defaults are the reference's Pendulum run (run_pendulum.sh)."""

    free_dims: int = 2  # latent 6 = 4 labelled + 2 free
    sup_coef: float = 5.0
    sup_type: Literal["ce", "l2"] = "ce"
    target_clip: float = 0.0  # reference: min-max targets may be exactly 0 or 1, pushing |mu| to infinity
    prior: Literal["linear", "nonlinear"] = "linear"  # linscm; nonlinear: monotone piecewise-linear f
    positive_gain: bool = False  # reference: the linear f's gain is unconstrained
    lr_d: float = 1e-4
    lr_e: float = 5e-5
    lr_g: float = 5e-5
    lr_prior: float = 5e-5
    lr_a: float = 1e-3
    adam_beta1: float = 0.0
    adam_beta2: float = 0.999
    score_clip: tuple = (0.5, 2.0)  # the density-ratio weight's clamp
    # conv: the shared backbone and a small joint D; reference: the Pendulum run's ResNet-50 Gaussian encoder,
    # SAGAN generator with noise injection and SAGAN joint D (64x64 only; ~50 M parameters, slow on a CPU)
    networks: Literal["conv", "reference"] = "conv"

    def __post_init__(self) -> None:
        owner = "model 'dear'"
        require(self.free_dims >= 0, owner, "free_dims", "a non-negative integer", self.free_dims)
        require(self.sup_coef >= 0, owner, "sup_coef", "non-negative", self.sup_coef)
        require(0 <= self.target_clip < 0.5, owner, "target_clip", "in [0, 0.5)", self.target_clip)
        for key in ("lr_d", "lr_e", "lr_g", "lr_prior", "lr_a"):
            require(getattr(self, key) > 0, owner, key, "positive", getattr(self, key))


VERSION = "1"  # in the cell hash: bump it when a change alters training

# What the registry reads for each model class of crlbench.baselines.dear, without importing it.
MODELS = {"DEAR": (DEARConfig, VERSION)}
