"""BetaVAE's hyperparameters (``Config``) and ``version``, importable without torch: a suite's cells are
resolved and hashed from them before any training (see :func:`crlbench.core.registry.model_declaration`).
BetaVAE (in crlbench.baselines.betavae) uses them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from crlbench.core.params import legacy_field, require

# disentanglement_lib trains on 64x64 images: the image side its beta was chosen at (crlbench.training.pixel_scale)
REFERENCE_IMAGE_SIZE = 64

@dataclass(frozen=True)
class BetaVAEConfig:
    """beta-VAE hyperparameters; defaults from disentanglement_lib's shared.gin unless noted."""

    beta: float = 4.0  # dlib sweeps {1, 2, 4, 6, 8, 16}; 4 is the middle of the usual report
    latent_dim: int = 16  # 4 x 4 as CausalVAE / ICM-VAE on Pendulum and Flow (dlib: 10)
    lr: float = 1e-4
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_eps: float = 1e-8
    # reference: the summed BCE times (64 x 64) / (this image's pixels), so beta weighs the KL against the
    # reconstruction as in dlib's 64x64 runs at any size (identical at 64x64); sum: the plain sum, under which
    # beta = 4 weighs 4x more at 32x32 (the standard suite's committed cells, which pin it). Added in version 1:
    # "sum" stays out of the cell hash (legacy_field)
    pixel_scale: Literal["reference", "sum"] = legacy_field("reference", legacy="sum")

    def __post_init__(self) -> None:
        require(self.beta >= 0, "model 'beta_vae'", "beta", "non-negative", self.beta)
        require(self.latent_dim > 0, "model 'beta_vae'", "latent_dim", "a positive integer", self.latent_dim)
        require(self.lr > 0, "model 'beta_vae'", "lr", "positive", self.lr)


VERSION = "1"  # in the cell hash: bump it when a change alters training

# What the registry reads for each model class of crlbench.baselines.betavae, without importing it.
MODELS = {"BetaVAE": (BetaVAEConfig, VERSION)}
