"""IVAE's hyperparameters (``Config``) and ``version``, importable without torch: a suite's cells are
resolved and hashed from them before any training (see :func:`crlbench.core.registry.model_declaration`).
IVAE (in crlbench.baselines.ivae) uses them.

Defaults are the reference code's (ilkhem/iVAE @cf6ff68: ``configs/ivae.yaml`` as ``runners/ivae.py``
uses it with ``models/nets.py``'s ``cleanIVAE``); each departure is an option whose default is the
reference behaviour, apart from the image backbone and the encoder's input (q(z|x): docs/models.md, "iVAE").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from crlbench.core.params import require


@dataclass(frozen=True)
class IVAEConfig:
    """iVAE hyperparameters; defaults from ilkhem/iVAE ``configs/ivae.yaml`` and ``runners/ivae.py``."""

    # None: d = K, the number of factors (the card's), as the reference sets latent_dim to the number of
    # sources (runners/ivae.py: latent_dim=d_latent) and as the identifiability theorem assumes; 16 = the
    # 4 x 4 of beta-VAE / CausalVAE / ICM-VAE is the alternative
    latent_dim: int | None = None
    # the weights of the ELBO's decomposition (cleanIVAE.elbo): a log p(x|z), b (log q(z|x,u) - log q(z)),
    # c (log q(z) - sum_j log q(z_j)), d (sum_j log q(z_j) - log p(z|u)); a = b = c = d = 1 is the plain ELBO
    a: float = 100.0
    b: float = 1.0
    c: float = 0.0
    d: float = 10.0
    anneal: bool = False  # runners/ivae.py: after epochs / 1.6, a -> 2a and b = c = d = 1 (before it c = 0)
    # Adam with torch's default betas (0.9, 0.999) and eps 1e-8, lr as configs/ivae.yaml. On images that lr
    # sent the loss to NaN by step 8 in 6 of 12 runs (docs/models.md): configs/models/ivae.yaml, which the
    # suites use, sets 1e-3 as a stated deviation
    lr: float = 0.01
    # ReduceLROnPlateau(factor=0.1, patience=0) stepped on each epoch's mean training loss (no_scheduler:
    # false); the yaml's scheduler_tol: 3 is never read
    lr_scheduler: Literal["plateau", "none"] = "plateau"
    plateau_factor: float = 0.1
    plateau_patience: int = 0
    # the conditional prior p(z|u): an MLP of u (n_layers 3, hidden_dim 100, xtanh with slope 0.1: the
    # reference's MLP, also its encoder's and decoder's) giving log lambda(u). "zero": N(0, diag lambda(u)) as
    # cleanIVAE.prior (mean fixed at 0); "learned": the MLP also gives the mean, the Gaussian with both
    # natural parameters of the paper's exponential family
    prior_mean: Literal["zero", "learned"] = "zero"
    hidden_dim: int = 100
    n_layers: int = 3
    slope: float = 0.1  # xtanh(x) = tanh(x) + slope x
    # images (deviation, the default since version 2): q(z|x), the same encoder in training and evaluation; u
    # still conditions the prior p(z|u), which is what the identifiability theorem needs. images_and_labels:
    # q(z|x,u) as cleanIVAE.encoder (u enters as K constant image channels), fed the true u in training and
    # u = 0 (the standardised labels' mean) by encode(): it learns to read z off u (docs/models.md, "iVAE")
    encoder_input: Literal["images", "images_and_labels"] = "images"
    # gaussian: N(x; f(z), 0.1 I) as cleanIVAE (decoder_var 0.1), mean unbounded, returned images clipped to
    # [0, 1]; bernoulli: the pixel BCE of the other VAEs here (decoder_variance is then unused)
    decoder: Literal["gaussian", "bernoulli"] = "gaussian"
    decoder_variance: float = 0.1
    # conv: the shared conv encoder / decoder (ConvEncoder outputs mean and log-variance); reference: the
    # reference's MLPs (g, logv and f, n_layers x hidden_dim, xtanh) on the flattened image
    backbone: Literal["conv", "reference"] = "conv"

    def __post_init__(self) -> None:
        owner = "model 'ivae'"
        require(self.latent_dim is None or self.latent_dim > 0, owner, "latent_dim", "a positive integer or null",
                self.latent_dim)
        for key in ("a", "b", "c", "d"):
            require(getattr(self, key) >= 0, owner, key, "non-negative", getattr(self, key))
        require(self.lr > 0, owner, "lr", "positive", self.lr)
        require(0 < self.plateau_factor < 1, owner, "plateau_factor", "in (0, 1)", self.plateau_factor)
        require(self.plateau_patience >= 0, owner, "plateau_patience", "a non-negative integer", self.plateau_patience)
        require(self.hidden_dim > 0, owner, "hidden_dim", "a positive integer", self.hidden_dim)
        require(self.n_layers >= 1, owner, "n_layers", "an integer >= 1", self.n_layers)
        require(self.slope >= 0, owner, "slope", "non-negative", self.slope)
        require(self.decoder_variance > 0, owner, "decoder_variance", "positive", self.decoder_variance)


VERSION = "2"  # in the cell hash: bump it when a change alters training (2: encoder_input images by default)

# What the registry reads for each model class of crlbench.baselines.ivae, without importing it.
MODELS = {"IVAE": (IVAEConfig, VERSION)}
