"""CausalVAE's hyperparameters (``Config``) and ``version``, importable without torch: a suite's cells are
resolved and hashed from them before any training (see :func:`crlbench.core.registry.model_declaration`).
CausalVAE (in crlbench.baselines.causalvae) uses them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from crlbench.core.params import require

@dataclass(frozen=True)
class CausalVAEConfig:
    """CausalVAE hyperparameters; defaults are the reference code's."""

    concept_dim: int = 4
    alpha: float = 0.3  # weight of the exogenous KL
    beta: float = 1.0  # weight of the causal-layer KL
    sampling_variance: float = 0.001  # lambda: noise added to z_final before decoding
    lr: float = 1e-3
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    # reference: REFERENCE_A0 in the original label order, mapped through the card's permutation (leaks graph
    # knowledge); zeros: the paper's claim of learning A from scratch
    a_init: Literal["reference", "zeros"] = "reference"
    attention: bool = True  # the code's attention residual (not in the paper)
    label_mechanism_on: Literal["raw", "standardised"] = "raw"  # reference: l_u on raw labels
    decoder: Literal["shared", "per_concept"] = "per_concept"  # the reference's, logits averaged; shared: one decoder
    graph_threshold: float = 0.3  # |A_ij| above it is an edge (the code's unused prune())
    # reference: the BCE summed over the width and averaged over batch, channel and height (utils.py's
    # log_bernoulli_with_logits sums the last axis; negative_elbo_bound takes the mean); sum: every pixel
    rec_reduction: Literal["width", "sum"] = "width"
    # conv: the shared 64x64 backbone; reference: the code's MLP encoder and per-concept MLP decoders on RGBA
    # (an alpha channel of ones is appended, as the reference's PNGs have; ``decoder`` is then ignored)
    backbone: Literal["conv", "reference"] = "conv"

    def __post_init__(self) -> None:
        owner = "model 'causal_vae'"
        require(self.concept_dim > 0, owner, "concept_dim", "a positive integer", self.concept_dim)
        require(self.alpha >= 0 and self.beta >= 0, owner, "alpha/beta", "non-negative", (self.alpha, self.beta))
        require(self.sampling_variance >= 0, owner, "sampling_variance", "non-negative", self.sampling_variance)
        require(self.lr > 0, owner, "lr", "positive", self.lr)


VERSION = "2"  # 2: reconstruction scaled as the reference (rec_reduction="width"); A0 in the card's order

# What the registry reads for each model class of crlbench.baselines.causalvae, without importing it.
MODELS = {"CausalVAE": (CausalVAEConfig, VERSION)}
