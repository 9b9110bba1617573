"""The reference rows' hyperparameters (``Config``), ``version`` and what each stands for, importable
without torch: a suite's cells are resolved and hashed from them before any training (see
:func:`crlbench.core.registry.model_declaration`). The models are in crlbench.baselines.references;
docs/protocol.md ("Reference rows") says what each runs and why none is ranked.
"""

from __future__ import annotations

from dataclasses import dataclass

from crlbench.core.params import require
from crlbench.core.references import LATENT, RECONSTRUCTION

COUNTERFACTUAL = "counterfactual@probe"
UNTRAINED_CODES = 16  # beta-VAE's latent size (baselines/betavae_config.py)


@dataclass(frozen=True)
class CopyConfig:
    """``copy``: do() returns the source image; encode (for counterfactual@probe's probe) is the untrained
    shared conv backbone with ``latent_dim`` outputs."""

    latent_dim: int = UNTRAINED_CODES

    def __post_init__(self) -> None:
        require(self.latent_dim > 0, "model 'copy'", "latent_dim", "a positive integer", self.latent_dim)


@dataclass(frozen=True)
class MeanImageConfig:
    """``mean_image``: reconstruction and do() return the training mean image; encode is the untrained
    shared conv backbone with ``latent_dim`` outputs."""

    latent_dim: int = UNTRAINED_CODES

    def __post_init__(self) -> None:
        require(self.latent_dim > 0, "model 'mean_image'", "latent_dim", "a positive integer", self.latent_dim)


@dataclass(frozen=True)
class SupervisedConfig:
    """``supervised``: the shared conv backbone regressing the standardised factors (MSE, Adam)."""

    lr: float = 1e-3
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_eps: float = 1e-8

    def __post_init__(self) -> None:
        require(self.lr > 0, "model 'supervised'", "lr", "positive", self.lr)


@dataclass(frozen=True)
class UntrainedConfig:
    """``untrained``: the shared conv backbone with ``latent_dim`` outputs at its seeded initial weights."""

    latent_dim: int = UNTRAINED_CODES

    def __post_init__(self) -> None:
        require(self.latent_dim > 0, "model 'untrained'", "latent_dim", "a positive integer", self.latent_dim)


VERSION = "1"  # in the cell hash: bump it when a change alters training

REFERENCE_FOR = {
    "Copy": (COUNTERFACTUAL,),
    "MeanImage": (RECONSTRUCTION, COUNTERFACTUAL),
    "Supervised": (LATENT,),  # every registered metric that reads the representation, plugins' too
    "Untrained": (LATENT,),
}

# What the registry reads for each model class of crlbench.baselines.references, without importing it.
MODELS = {
    name: (config, VERSION, {"reference_for": REFERENCE_FOR[name]})
    for name, config in (("Copy", CopyConfig), ("MeanImage", MeanImageConfig), ("Supervised", SupervisedConfig),
                         ("Untrained", UntrainedConfig))
}
