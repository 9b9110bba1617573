"""Methods added from outside crlbench, the way a user adds one: a module named in a suite's
``plugins:`` list that registers its models. Used by the suite tests."""

import time
from dataclasses import dataclass

import torch
from torch import nn

from crlbench.core.registry import register_model
from crlbench.training.model import CausalModel, adam


@dataclass(frozen=True)
class LinearAutoencoderConfig:
    lr: float = 1e-3
    explode_at_step: int = -1  # >= 0: the loss becomes NaN from this step on (a diverging method)
    step_seconds: float = 0.0  # sleep in every step: a slow method, so a test can kill it mid-training


@register_model("linear_ae")
class LinearAutoencoder(CausalModel):
    """A label-supervised linear autoencoder: one code per factor, do() sets the code and decodes."""

    name = "linear_ae"
    Config = LinearAutoencoderConfig

    def __init__(self, card, **hyperparameters):
        super().__init__(card, **hyperparameters)
        pixels = self.channels * self.image_size * self.image_size
        self.encoder = nn.Linear(pixels, len(card.factors))
        self.decoder = nn.Linear(len(card.factors), pixels)

    def optimizers(self):
        return {"adam": adam(self.parameters(), lr=self.config.lr)}

    def training_step(self, batch, step):
        time.sleep(self.config.step_seconds)
        codes = self.encoder(batch["images"].flatten(1))
        images = torch.sigmoid(self.decoder(codes)).view_as(batch["images"])
        reconstruction = ((images - batch["images"]) ** 2).mean()
        supervision = ((codes - batch["factors"]) ** 2).mean()
        loss = reconstruction + supervision
        if 0 <= self.config.explode_at_step <= step:
            loss = loss * float("nan")
        return {"loss": loss, "reconstruction": reconstruction, "supervision": supervision}

    @torch.no_grad()
    def encode(self, images):
        return self.encoder(images.flatten(1)).unsqueeze(-1)

    @torch.no_grad()
    def _decode(self, codes, like):
        return torch.sigmoid(self.decoder(codes)).view_as(like)

    def reconstruct(self, images):
        return self._decode(self.encoder(images.flatten(1)), images)

    @torch.no_grad()
    def intervene(self, images, target, value):
        codes = self.encoder(images.flatten(1))
        codes[:, target] = torch.as_tensor(value, dtype=codes.dtype).reshape(-1)
        return self._decode(codes, images)
