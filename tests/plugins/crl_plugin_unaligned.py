"""An UNALIGNED method added from outside crlbench, written from the plugin contract of
``crlbench.training.model.CausalModel`` alone: its codes are not tied to factors, so it sets
``aligned = False``, ``encode`` returns one block ``[N, 1, d]`` and ``intervene`` sets the code the
runner matched to the factor (``set_alignment`` and ``matched_code`` are the base class's defaults).
Used by tests/test_plugin_contract.py."""

from dataclasses import dataclass

import torch
from torch import nn

from crlbench.core.registry import register_model
from crlbench.training.model import CausalModel, adam


@dataclass(frozen=True)
class UnalignedAutoencoderConfig:
    latent_dim: int = 6
    lr: float = 1e-3


@register_model("linear_unaligned")
class UnalignedAutoencoder(CausalModel):
    """An unsupervised linear autoencoder: ``latent_dim`` codes, none tied to a factor."""

    name = "linear_unaligned"
    Config = UnalignedAutoencoderConfig
    version = "1"  # bump when a change alters training: finished cells are reused otherwise
    aligned = False

    def __init__(self, card, **hyperparameters):
        super().__init__(card, **hyperparameters)
        pixels = self.channels * self.image_size * self.image_size
        self.encoder = nn.Linear(pixels, self.config.latent_dim)
        self.decoder = nn.Linear(self.config.latent_dim, pixels)

    def supervision(self):
        return []  # images only

    def latent_size(self):
        return self.config.latent_dim

    def optimizers(self):
        return {"adam": adam(self.parameters(), lr=self.config.lr)}

    def training_step(self, batch, step):
        images = batch["images"]
        reconstruction = ((self._decode(self.encoder(images.flatten(1)), images) - images) ** 2).mean()
        return {"loss": reconstruction, "reconstruction": reconstruction}

    @torch.no_grad()
    def encode(self, images):
        return self.encoder(images.flatten(1)).unsqueeze(1)  # one block: [N, 1, latent_dim]

    def _decode(self, codes, like):
        return torch.sigmoid(self.decoder(codes)).view_as(like)

    @torch.no_grad()
    def reconstruct(self, images):
        return self._decode(self.encoder(images.flatten(1)), images)

    @torch.no_grad()
    def intervene(self, images, target, value):
        codes = self.encoder(images.flatten(1))
        codes[:, self.matched_code(target)] = torch.as_tensor(value, dtype=codes.dtype).reshape(-1)
        return self._decode(codes, images)
