"""BetaVAE's hyperparameters (``Config``) and ``version``, importable without torch: a suite's cells are
resolved and hashed from them before any training (see :func:`crlbench.core.registry.model_declaration`).
BetaVAE (in crlbench.baselines.betavae) uses them."""

from __future__ import annotations

from dataclasses import dataclass

from crlbench.core.params import require

@dataclass(frozen=True)
class BetaVAEConfig:
    """beta-VAE hyperparameters; defaults from disentanglement_lib's shared.gin unless noted."""

    beta: float = 4.0  # dlib sweeps {1, 2, 4, 6, 8, 16}; 4 is the middle of the usual report
    latent_dim: int = 16  # 4 x 4 as CausalVAE / ICM-VAE on Pendulum and Flow (dlib: 10)
    lr: float = 1e-4
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_eps: float = 1e-8

    def __post_init__(self) -> None:
        require(self.beta >= 0, "model 'beta_vae'", "beta", "non-negative", self.beta)
        require(self.latent_dim > 0, "model 'beta_vae'", "latent_dim", "a positive integer", self.latent_dim)
        require(self.lr > 0, "model 'beta_vae'", "lr", "positive", self.lr)


VERSION = "1"  # in the cell hash: bump it when a change alters training

# What the registry reads for each model class of crlbench.baselines.betavae, without importing it.
MODELS = {"BetaVAE": (BetaVAEConfig, VERSION)}
