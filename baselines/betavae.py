"""beta-VAE (Higgins et al., ICLR 2017): L = E_q[log p(x | z)] - beta KL(q(z | x) || N(0, I)).

Gaussian encoder, Bernoulli decoder on [0, 1] pixels (the reconstruction is a sum over pixels, so
beta is comparable with the literature), labels never used. At image sizes other than dlib's 64x64 the sum
is scaled to 64x64 pixels (``pixel_scale="reference"``, :mod:`crlbench.training.pixel_scale`), so beta keeps
its weight against the reconstruction; ``"sum"`` is the plain sum. Architecture and optimiser follow
disentanglement_lib (``methods/shared/architectures.py`` and ``config/unsupervised_study_v1``) on the
shared conv backbone; the latent has 16 dims to
match the 4 x 4 concept latents of CausalVAE and ICM-VAE (dlib's canonical 10 is an option).

beta-VAE has no causal structure: it declares itself unaligned, and its "intervention" is a latent
traversal: ``do(factor k = v)`` sets the code matched to factor k (``set_alignment``, e.g. by the
argmax of a DCI importance matrix on training latents) to v and decodes. Descendant factors are then
expected not to follow, which is the contrast the causal models should beat.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from crlbench.baselines.betavae_config import REFERENCE_IMAGE_SIZE, VERSION, BetaVAEConfig
from crlbench.core.errors import ConfigError
from crlbench.core.registry import register_model
from crlbench.training.model import CausalModel, adam
from crlbench.training.nets import ConvDecoder, ConvEncoder
from crlbench.training.pixel_scale import pixel_scale


@register_model("beta_vae")
class BetaVAE(CausalModel):
    name = "beta_vae"
    Config = BetaVAEConfig
    version = VERSION
    aligned = False

    def __init__(self, card, **hyperparameters) -> None:
        super().__init__(card, **hyperparameters)
        latent = self.config.latent_dim
        self.encoder = ConvEncoder(2 * latent, self.channels, self.image_size)
        self.decoder = ConvDecoder(latent, self.channels, self.image_size)
        # saved in checkpoints (the base class's set_alignment fills it), so a reloaded model keeps its alignment
        self.register_buffer("factor_codes", torch.full((len(card.factors),), -1, dtype=torch.long))
        self.reconstruction_scale = pixel_scale(self.config.pixel_scale, self.image_size, REFERENCE_IMAGE_SIZE)

    def supervision(self) -> list[str]:
        return []  # unsupervised: labels are never used in training

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        config = self.config
        return {"adam": adam(self.parameters(), lr=config.lr, betas=(config.adam_beta1, config.adam_beta2),
                             eps=config.adam_eps)}

    def posterior(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, log_variance = self.encoder(images).chunk(2, dim=1)
        return mean, log_variance

    @torch.no_grad()
    def posterior_kl_per_code(self, images: torch.Tensor) -> torch.Tensor:
        """Mean over ``images`` of KL(N(mu_i, sigma_i^2) || N(0, 1)) = 0.5 (mu_i^2 + sigma_i^2 - log sigma_i^2 - 1)
        per code i, in nats: the KL term of the loss (before the sum over codes and the weight beta)."""
        mean, log_variance = self.posterior(images)
        return (0.5 * (mean.pow(2) + log_variance.exp() - log_variance - 1)).mean(dim=0)

    def training_step(self, batch: dict[str, torch.Tensor], step: int) -> dict[str, torch.Tensor]:
        images = batch["images"]
        mean, log_variance = self.posterior(images)
        latent = mean + torch.randn_like(mean) * torch.exp(0.5 * log_variance)
        logits = self.decoder(latent)
        reconstruction = F.binary_cross_entropy_with_logits(logits, images, reduction="sum") / len(images)
        kl = 0.5 * (mean.pow(2) + log_variance.exp() - log_variance - 1).sum(dim=1).mean()
        scaled = reconstruction if self.reconstruction_scale == 1.0 else self.reconstruction_scale * reconstruction
        return {"loss": scaled + self.config.beta * kl, "reconstruction": reconstruction, "kl": kl}

    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """The posterior means as one flat block [N, 1, latent_dim] (unaligned)."""
        return self.posterior(images)[0].unsqueeze(1)

    @torch.no_grad()
    def reconstruct(self, images: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.decoder(self.posterior(images)[0]))

    def latent_size(self) -> int:
        return self.config.latent_dim

    @torch.no_grad()
    def intervene(self, images: torch.Tensor, target: int, value: float | torch.Tensor) -> torch.Tensor:
        """Decode after setting the code matched to factor ``target`` to ``value`` (a latent traversal)."""
        code = self.matched_code(target)  # the base class checks the index and that the alignment is set
        latent = self.posterior(images)[0].clone()
        latent[:, code] = torch.as_tensor(value, dtype=latent.dtype, device=latent.device)
        return torch.sigmoid(self.decoder(latent))
