"""Contrastive CRL's hyperparameters (``Config``) and ``version``, importable without torch: a suite's cells are
resolved and hashed from them before any training (see :func:`crlbench.core.registry.model_declaration`).
ContrastiveCRL (in crlbench.baselines.contrastive_crl) uses them.

Defaults are the reference code's as CRLSanityCheck runs it on the Causal Chamber's ``lt_crl_benchmark_v1``
(simonbing/CRLSanityCheck @2532cd4: ``crc/contrastive_crl_experiment.py``'s flags and ``training_kwargs``, which
``crc/baselines/contrastive_crl/src/training.py: train_model`` reads, with ``src/models.py``'s
``ImageEncoderChambers`` and ``ParametricPart``); docs/models.md, "Contrastive CRL", lists the deviations.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from crlbench.core.params import require

OWNER = "model 'contrastive_crl'"


@dataclass(frozen=True)
class ContrastiveCRLConfig:
    """Contrastive CRL hyperparameters; defaults from CRLSanityCheck's chamber run (module docstring).

    The latent size d is not an option: it is the number of factors K of the card, one latent per
    interventional environment (environment e intervenes on latent e - 1), as the reference's ``lat_dim 5``
    is its 5 environments.
    """

    # Adam (optim adam, contrastive_crl_experiment.py) over two parameter groups, training.py: train_model.
    # lr: the encoder's (flag lr 0.0005, passed as lr_nonparametric); lr_parametric: the parametric part's
    # (c, b, lambda, s, A), None = lr as train_model's default (the wrapper never sets it)
    lr: float = 5e-4
    lr_parametric: float | None = None
    weight_decay: float = 0.0  # training_kwargs weight_decay 0.0 (Adam's L2 term, both groups)
    # the loss's weights (contrastive_crl_experiment.py flags): kappa on sum_k (batch mean of z_obs)_k^2, eta on the
    # L1 norm of A, mu on the NOTEARS acyclicity term tr(expm(A * A)) - d
    kappa: float = 0.1
    eta: float = 1e-4
    mu: float = 1e-5
    # reference: models.py ImageEncoderChambers (2 blocks of conv 3x3 stride 2 / conv 3x3 stride 1, no bias, each
    # followed by GroupNorm(8, 64) and SiLU; Flatten, Linear -> 1024, LayerNorm, SiLU, Linear -> d), its hard-coded
    # 64 px generalised (the first Linear reads a (size / 2^conv_blocks)^2 x 64 map); conv: crlbench's shared
    # backbone (crlbench.training.nets.ConvEncoder, d outputs), as the other methods have
    backbone: Literal["reference", "conv"] = "reference"
    conv_blocks: int = 2  # ImageEncoderChambers(n_conv_layers=2)
    conv_channels: int = 64  # h_dim = 64; GroupNorm's 8 groups need a multiple of 8
    hidden_units: int = 1024  # Linear(16 * 16 * h_dim, 16 * h_dim): 16 * 64
    # the learned graph: off-diagonal |A^T| above it (evaluation.py evaluate_graph_metrics(thresh=.3), as
    # contrastive_crl_experiment.py calls it); the scores are |A^T| themselves
    graph_threshold: float = 0.3

    def __post_init__(self) -> None:
        for key in ("lr", "hidden_units", "conv_blocks", "conv_channels"):
            require(getattr(self, key) > 0, OWNER, key, "positive", getattr(self, key))
        require(self.lr_parametric is None or self.lr_parametric > 0, OWNER, "lr_parametric", "positive or null",
                self.lr_parametric)
        for key in ("weight_decay", "kappa", "eta", "mu", "graph_threshold"):
            require(getattr(self, key) >= 0, OWNER, key, "non-negative", getattr(self, key))
        require(self.conv_channels % 8 == 0, OWNER, "conv_channels", "a multiple of 8 (GroupNorm with 8 groups)",
                self.conv_channels)


VERSION = "1"  # in the cell hash: bump it when a change alters training

# What the registry reads for each model class of crlbench.baselines.contrastive_crl, without importing it.
MODELS = {"ContrastiveCRL": (ContrastiveCRLConfig, VERSION, {"needs_environments": True})}  # in the cell hash
