"""Reference rows: what a score reads when no method is learned, run by the same runner as the methods.

Each is a registered model that stands for some scores only (``reference_for``); the runner computes
those and lists the others as not applicable, and reports never rank or bold them (docs/protocol.md,
"Reference rows"). Architectures, all on the shared conv backbone
(:class:`crlbench.training.nets.ConvEncoder`) where a network is needed:

* ``copy``: the counterfactual is the source image (do() returns its input unchanged); stands for
  ``counterfactual@probe``. Its encode, which that metric's probe reads, is the untrained backbone.
* ``mean_image``: reconstruction and do() return the training split's mean image (the exact mean of the
  images it is fed in the first epoch, kept in buffers so that checkpoints keep it); stands for
  ``reconstruction.mse`` and ``counterfactual@probe``. Its encode is the untrained backbone.
* ``supervised``: the ceiling of the latent metrics, the backbone trained with MSE to regress the
  standardised factors from the images within the suite's budget; aligned, one code per factor (its
  prediction). It has no do().
* ``untrained``: the floor of the latent metrics, the backbone's 16 codes (beta-VAE's latent size) at
  its seeded initial weights, matched to factors as beta-VAE's are. It trains nothing.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from crlbench.baselines.references_config import (VERSION, CopyConfig, MeanImageConfig, REFERENCE_FOR,
                                                  SupervisedConfig, UntrainedConfig)
from crlbench.core.errors import ConfigError, NotApplicable
from crlbench.core.registry import register_model
from crlbench.training.model import CausalModel, adam
from crlbench.training.nets import ConvEncoder

BACKBONE = "the shared conv backbone (crlbench.training.nets.ConvEncoder: conv 32-32-64-64, FC 256)"


class UntrainedBackbone(CausalModel):
    """A model whose codes are the shared backbone's ``latent_dim`` outputs at their seeded initial weights
    (unaligned: the runner matches codes to factors), and whose training step changes nothing."""

    version = VERSION
    aligned = False
    manual_optimization = True  # no optimiser: the trainer only feeds batches

    def __init__(self, card, **hyperparameters) -> None:
        super().__init__(card, **hyperparameters)
        self.encoder = ConvEncoder(self.config.latent_dim, self.channels, self.image_size)
        self.encoder.requires_grad_(False)
        # saved in checkpoints (the base class's set_alignment fills it), as beta-VAE's
        self.register_buffer("factor_codes", torch.full((len(card.factors),), -1, dtype=torch.long))

    def supervision(self) -> list[str]:
        return []

    def latent_size(self) -> int:
        return self.config.latent_dim

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {}

    def training_step(self, batch: dict[str, torch.Tensor], step: int) -> dict[str, torch.Tensor]:
        return {}

    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """The untrained backbone's codes as one flat block [N, 1, latent_dim] (unaligned)."""
        return self.encoder(images).unsqueeze(1)

    def untrained_codes(self) -> str:
        return f"{BACKBONE} with {self.config.latent_dim} outputs at its seeded initial weights, never trained"


@register_model("copy")
class Copy(UntrainedBackbone):
    name = "copy"
    Config = CopyConfig
    reference_for = REFERENCE_FOR["Copy"]

    def architecture(self) -> str:
        return (f"no network for images: do() returns the source image unchanged; encode (read by "
                f"counterfactual@probe's probe) is {self.untrained_codes()}")

    @torch.no_grad()
    def reconstruct(self, images: torch.Tensor) -> torch.Tensor:
        return images.clone()

    @torch.no_grad()
    def intervene(self, images: torch.Tensor, target: int, value: float | torch.Tensor) -> torch.Tensor:
        """The source image, whatever the intervention."""
        return images.clone()


@register_model("mean_image")
class MeanImage(UntrainedBackbone):
    name = "mean_image"
    Config = MeanImageConfig
    reference_for = REFERENCE_FOR["MeanImage"]

    def __init__(self, card, **hyperparameters) -> None:
        super().__init__(card, **hyperparameters)
        shape = (self.channels, self.image_size, self.image_size)
        # an exact sum in float64; both buffers are saved in checkpoints
        self.register_buffer("image_sum", torch.zeros(shape, dtype=torch.float64))
        self.register_buffer("image_count", torch.zeros((), dtype=torch.float64))
        self.epoch = 0

    def architecture(self) -> str:
        return (f"no network for images: reconstruction and do() return the training split's mean image (the exact "
                f"mean of the images fed in the first epoch); encode (read by counterfactual@probe's probe) is "
                f"{self.untrained_codes()}")

    def on_epoch_start(self, epoch: int) -> None:
        self.epoch = epoch

    def training_step(self, batch: dict[str, torch.Tensor], step: int) -> dict[str, torch.Tensor]:
        """Add the first epoch's images to the mean (later epochs see the same images again)."""
        if self.epoch == 0:
            images = batch["images"].detach()
            self.image_sum += images.to(torch.float64).sum(dim=0)
            self.image_count += len(images)
        return {}

    def mean_image(self) -> torch.Tensor:
        """The training mean image [C, H, W] in [0, 1], float32."""
        if float(self.image_count) == 0:
            raise ConfigError("model 'mean_image' has seen no training images: train it (its mean image is the mean "
                              "of the images fed in the first epoch) before reconstruct or intervene")
        return (self.image_sum / self.image_count).float()

    @torch.no_grad()
    def reconstruct(self, images: torch.Tensor) -> torch.Tensor:
        return self.mean_image().to(images.device).expand(len(images), -1, -1, -1).clone()

    @torch.no_grad()
    def intervene(self, images: torch.Tensor, target: int, value: float | torch.Tensor) -> torch.Tensor:
        """The training mean image, whatever the source and the intervention."""
        return self.reconstruct(images)


class LatentOnly:
    """A reference row for the latent metrics only: it has no decoder and no do() (both raise NotApplicable)."""

    name: str

    def reconstruct(self, images: torch.Tensor) -> torch.Tensor:
        raise NotApplicable(f"model {self.name!r} has no decoder: it stands for the latent metrics only")

    def intervene(self, images: torch.Tensor, target: int, value: float | torch.Tensor) -> torch.Tensor:
        raise NotApplicable(f"model {self.name!r} has no do(): it stands for the latent metrics only")


@register_model("untrained")
class Untrained(LatentOnly, UntrainedBackbone):
    name = "untrained"
    Config = UntrainedConfig
    reference_for = REFERENCE_FOR["Untrained"]

    def architecture(self) -> str:
        return f"{self.untrained_codes()}; codes matched to factors as beta-VAE's (Hungarian on |Pearson r|)"


@register_model("supervised")
class Supervised(LatentOnly, CausalModel):
    name = "supervised"
    Config = SupervisedConfig
    version = VERSION
    reference_for = REFERENCE_FOR["Supervised"]

    def __init__(self, card, **hyperparameters) -> None:
        super().__init__(card, **hyperparameters)
        self.encoder = ConvEncoder(len(card.factors), self.channels, self.image_size)

    def architecture(self) -> str:
        return (f"{BACKBONE} with one output per factor, trained with MSE to regress the standardised factors from "
                f"the images (Adam, lr {self.config.lr:g}) within the suite's budget; aligned, code k is its "
                f"prediction of factor k")

    def supervision(self) -> list[str]:
        return ["labels"]

    def latent_size(self) -> int:
        return len(self.card.factors)

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        config = self.config
        return {"adam": adam(self.parameters(), lr=config.lr, betas=(config.adam_beta1, config.adam_beta2),
                             eps=config.adam_eps)}

    def training_step(self, batch: dict[str, torch.Tensor], step: int) -> dict[str, Any]:
        loss = F.mse_loss(self.encoder(batch["images"]), batch["factors"])
        return {"loss": loss}

    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """The predicted standardised factors as concept blocks [N, K, 1]."""
        return self.encoder(images).unsqueeze(2)
