"""ICMVAE's hyperparameters (``Config``) and ``version``, importable without torch: a suite's cells are
resolved and hashed from them before any training (see :func:`crlbench.core.registry.model_declaration`).
ICMVAE (in crlbench.icmvae.model) uses them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from crlbench.core.params import require

@dataclass(frozen=True)
class ICMVAEConfig:
    """ICM-VAE hyperparameters; defaults are the reference code's (Pendulum / Flow settings)."""

    concept_dim: int = 4  # dims per concept block (the reference uses 32 on CausalCircuit)
    alpha: float = 0.1  # final weight of the noise term
    beta: float = 1.2  # final weight of the prior term (the reference uses 0.05 on CausalCircuit)
    warmup_epochs: int = 94  # linear warm-up of alpha and beta, zero in epochs 0 and 1
    # first epoch whose alpha/beta are non-zero; reference 2. 0 anchors the deterministic latent from the
    # first step (after 2 zero-weight epochs the prior's switch-on can collapse it: docs/models.md)
    warmup_start_epoch: int = 2
    # absolute: the warm-up counts training epochs, as the reference (full weight at epoch 94 of its 101);
    # budget: it counts the run's progress in reference epochs (step / total steps x reference_epochs), so
    # any budget ramps over the same fraction of the run (first 2/101 at zero, full weight after 94/101)
    schedule: Literal["absolute", "budget"] = "absolute"
    reference_epochs: int = 101  # the reference's run length (experiments/train_pendulum.py: epochs 0..100)
    lr: float = 1e-3
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    shared_mechanism_nets: bool = True  # reference: one s/t MLP pair for every node (posterior and prior)
    bounded_st: bool = True  # reference: sigmoid on s and t
    deterministic_z: bool = True  # reference: the decoder gets z without noise
    learned_encoder_variance: bool = False  # reference: the encoder's variance is replaced by ones
    rec_reduction: Literal["width", "sum"] = "width"  # reference: BCE summed over width, mean over the rest
    abs_at_intervention: bool = True  # reference: |z_3| after every intervention, whatever the dataset
    decoder: Literal["shared", "per_concept"] = "shared"  # deviation (measured, docs/models.md); per_concept: the reference's
    # conv: the shared 64x64 backbone; reference: the code's MLP encoder and per-concept MLP decoders on
    # RGBA (an alpha channel of ones is appended, as the reference's PNGs have), 96x96 in the reference
    backbone: Literal["conv", "reference"] = "conv"

    def __post_init__(self) -> None:
        owner = "model 'icm_vae'"
        require(self.concept_dim > 0, owner, "concept_dim", "a positive integer", self.concept_dim)
        require(self.alpha >= 0 and self.beta >= 0, owner, "alpha/beta", "non-negative", (self.alpha, self.beta))
        require(self.warmup_epochs >= 2, owner, "warmup_epochs", "at least 2", self.warmup_epochs)
        require(self.warmup_start_epoch >= 0, owner, "warmup_start_epoch", "non-negative", self.warmup_start_epoch)
        require(self.reference_epochs > 0, owner, "reference_epochs", "a positive integer", self.reference_epochs)
        require(self.lr > 0, owner, "lr", "positive", self.lr)


VERSION = "1"  # in the cell hash: bump it when a change alters training

# What the registry reads for each model class of crlbench.icmvae.model, without importing it.
MODELS = {"ICMVAE": (ICMVAEConfig, VERSION)}
