"""SCMVAE's hyperparameters (``Config``) and ``version``, importable without torch: a suite's cells are
resolved and hashed from them before any training (see :func:`crlbench.core.registry.model_declaration`).
SCMVAE (in crlbench.baselines.scmvae) uses them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from crlbench.core.params import require

@dataclass(frozen=True)
class SCMVAEConfig:
    """SCM-VAE hyperparameters; defaults are the reference code's (Akomand/SCM-VAE experiments/train_scm_vae.py,
    models/scm_vae/lightning_module.py)."""

    concept_dim: int = 4  # --z2_dim 4 (z_dim 16 = 4 concepts x 4)
    alpha: float = 0.1  # --alpha 0.1: weight of KL(q(eps | x) || N(0, I)) (SCM_VAE's own default 0.3 is overridden)
    beta: float = 1.0  # --beta 1: weight of the structural prior term
    # --lambda_v 1e-3: the decoder gets z + sqrt(lambda_v * v) N(0, I), v the encoder's variance
    sampling_variance: float = 1e-3
    lr: float = 1e-3  # experiments/utils.py get_default_parser --lr
    adam_beta1: float = 0.9  # SCM_VAE.configure_optimizers
    adam_beta2: float = 0.999
    # reference: one mechanism MLP (MaskLayer.net_g) for every non-root node; false: one per node
    shared_mechanism_net: bool = True
    # joint: z_i = g(z_pa(i), eps_i), the code (the mask A + I keeps the node's own noise block); additive:
    # z_i = g(z_pa(i)) + eps_i, the paper's additive-noise SCM
    mechanism: Literal["joint", "additive"] = "joint"
    # reference: BCE summed over the width, mean over batch, channel and height (log_bernoulli_with_logits
    # sums the last axis of the [B, C, H, W] logits, _get_loss takes the mean); sum: every pixel
    rec_reduction: Literal["width", "sum"] = "width"
    decoder: Literal["shared", "per_concept"] = "per_concept"  # the reference's, logits averaged; shared: one decoder
    # conv: the shared 64x64 backbone; reference: the code's MLP encoder and per-concept MLP decoders on RGBA
    # (an alpha channel of ones is appended, as the reference's PNGs have; ``decoder`` is then ignored)
    backbone: Literal["conv", "reference"] = "conv"

    def __post_init__(self) -> None:
        owner = "model 'scm_vae'"
        require(self.concept_dim > 0, owner, "concept_dim", "a positive integer", self.concept_dim)
        require(self.alpha >= 0, owner, "alpha", "non-negative", self.alpha)
        require(self.beta >= 0, owner, "beta", "non-negative", self.beta)
        require(self.sampling_variance >= 0, owner, "sampling_variance", "non-negative", self.sampling_variance)
        require(self.lr > 0, owner, "lr", "positive", self.lr)


VERSION = "1"  # in the cell hash: bump it when a change alters training

# What the registry reads for each model class of crlbench.baselines.scmvae, without importing it.
MODELS = {"SCMVAE": (SCMVAEConfig, VERSION)}
