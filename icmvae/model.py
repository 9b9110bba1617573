"""ICM-VAE (Komanduri, Wu, Chen, Shi, Rahmani, Reddy; IJCAI 2024, arXiv 2306.01213), as its code computes it.

Reference: Akomand/ICM-VAE, ``models/icm_vae.py`` (``ICM_VAE.forward``), ``models/prior.py``,
``codebase/models/shared/causal_masked_flow.py`` and ``experiments/train_{pendulum,flow,circuit}.py``;
this project's deviations are listed in ``docs/models.md``.

encoder x -> eps [B, K, k]; causal flow eps -> z (crlbench.icmvae.flow); decoder z -> x. The loss is
``ICM_VAE.forward``'s:

    rec  = W * mean per-pixel BCE(logits, x)             (BCE summed over the width, averaged over the rest)
    kl_b = alpha (0.5 |eps|^2 - sum s) + beta 0.5 |z - mu|^2,   mu_i = exp(s'(z_pa)) * u_i + t'(z_pa)
    loss = rec + mean_b kl_b

with u the standardised labels of concept i broadcast to its k dims, alpha and beta warmed up
linearly over epochs (``final * min(epoch - 1, 93) / 93``: zero in epochs 0 and 1, full from 94).
With ``schedule="budget"`` the same warm-up is laid over the run's progress in reference epochs, so
a short budget ramps over the same fraction of its run. On the shared conv backbone the reference
warm-up can collapse the deterministic latent when beta switches on in epoch 2; whether and when it
recovers depends on the seed (measured in docs/models.md with benchmarks/icmvae_warmup.py);
``warmup_start_epoch=0`` (not the reference) starts the warm-up in epoch 0.
Every quirk of the reference code is an option whose default is the reference behaviour; the
backbone (the shared conv encoder and one decoder on the whole latent) is the CPU-friendly
deviation every model shares, with the reference's per-concept decoders averaged in logit space
available as ``decoder="per_concept"`` and its MLP networks as ``backbone="reference"``.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from crlbench.core.errors import ConfigError
from crlbench.core.registry import register_model
from crlbench.icmvae.flow import MaskedAffineFlow
from crlbench.icmvae.model_config import VERSION, ICMVAEConfig
from crlbench.training.model import CausalModel, adam
from crlbench.training.nets import (ConvEncoder, ReferenceMLPEncoder, append_alpha, bernoulli_reconstruction,
                                    concept_decoders, decode_concepts)


def warmup(final: float, epoch: int, epochs: int, start: int = 2) -> float:
    """The reference's ``linear_scheduler`` as its loop calls it: final * min(epoch - 1, epochs - 1) / (epochs - 1)
    (zero in epochs 0 and 1, final / (epochs - 1) in epoch 2); ``start`` is the first non-zero epoch (reference 2)."""
    return final * min(max(epoch - start + 1, 0), epochs - 1) / (epochs - 1)


@register_model("icm_vae")
class ICMVAE(CausalModel):
    name = "icm_vae"
    Config = ICMVAEConfig
    version = VERSION

    def __init__(self, card, **hyperparameters) -> None:
        super().__init__(card, **hyperparameters)
        config, graph = self.config, np.asarray(card.adjacency)
        self.concepts = len(graph)
        latent = self.concepts * config.concept_dim
        encoder_out = 2 * latent if config.learned_encoder_variance or not config.deterministic_z else latent
        self.rgba = config.backbone == "reference"
        if self.rgba:
            channels = self.channels + 1
            self.encoder = ReferenceMLPEncoder(encoder_out, channels, self.image_size)
            self.decoders = concept_decoders("reference", self.concepts, config.concept_dim, channels, self.image_size)
        else:
            self.encoder = ConvEncoder(encoder_out, self.channels, self.image_size)
            self.decoders = concept_decoders(config.decoder, self.concepts, config.concept_dim, self.channels, self.image_size)
        flow = dict(shared=config.shared_mechanism_nets, bounded=config.bounded_st)
        self.flow = MaskedAffineFlow(graph, config.concept_dim, **flow)
        self.prior = MaskedAffineFlow(graph, config.concept_dim, **flow)
        self.alpha, self.beta = 0.0, 0.0  # the reference's constructor values; set per epoch

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        config = self.config
        return {"adam": adam(self.parameters(), lr=config.lr, betas=(config.adam_beta1, config.adam_beta2))}

    def supervision(self) -> list[str]:
        return ["labels", "true graph"]  # the prior conditions on every concept's label and the card's graph

    def on_epoch_start(self, epoch: int) -> None:
        if self.config.schedule == "absolute":
            self.set_warmup(epoch)

    def set_warmup(self, epoch: int) -> None:
        """alpha and beta as the reference's warm-up gives them in (reference) epoch ``epoch``."""
        config = self.config
        self.alpha = warmup(config.alpha, epoch, config.warmup_epochs, config.warmup_start_epoch)
        self.beta = warmup(config.beta, epoch, config.warmup_epochs, config.warmup_start_epoch)

    def reference_epoch(self, step: int) -> int:
        """The reference epoch that step ``step`` of this run stands for under ``schedule="budget"``."""
        return step * self.config.reference_epochs // self.total_steps

    def schedule(self) -> dict:
        """Where the warm-up of alpha and beta starts and reaches full weight, in steps of this run."""
        config = self.config
        first, full = config.warmup_start_epoch, config.warmup_start_epoch + config.warmup_epochs - 2
        if config.schedule == "absolute":
            start, end = first * self.steps_per_epoch, full * self.steps_per_epoch
        else:  # the first step whose reference epoch reaches ``first`` / ``full``
            start, end = (-(-epoch * self.total_steps // config.reference_epochs) for epoch in (first, full))
        return {"kind": config.schedule, "warmup_start_step": start, "full_weight_step": end,
                "total_steps": self.total_steps, "finished": end < self.total_steps}

    def with_alpha(self, images: torch.Tensor) -> torch.Tensor:
        """RGBA with alpha = 1 for the reference backbone (its PNGs are RGBA), the images otherwise."""
        return append_alpha(images) if self.rgba else images

    def noise(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The encoder's noise mean and log-variance [B, K, k] (log-variance 0 unless learned)."""
        out = self.encoder(self.with_alpha(images))
        shape = (len(images), self.concepts, self.config.concept_dim)
        if out.shape[1] == 2 * self.concepts * self.config.concept_dim:
            mean, log_variance = out.chunk(2, dim=1)
            log_variance = log_variance if self.config.learned_encoder_variance else torch.zeros_like(log_variance)
            return mean.reshape(shape), log_variance.reshape(shape)
        return out.reshape(shape), torch.zeros(shape, device=out.device)

    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        """Pixel logits (RGBA with the reference backbone); per-concept decoders are averaged in logit
        space as in the reference."""
        return decode_concepts(self.decoders, latent)

    def training_step(self, batch: dict[str, torch.Tensor], step: int) -> dict[str, torch.Tensor]:
        if self.config.schedule == "budget":
            self.set_warmup(self.reference_epoch(step))
        images, labels = batch["images"], batch["factors"]
        mean, log_variance = self.noise(images)
        eps = mean if self.config.deterministic_z else mean + torch.randn_like(mean) * torch.exp(0.5 * log_variance)
        latent, log_det = self.flow(eps)
        logits = self.decode(latent)
        reconstruction = bernoulli_reconstruction(logits, self.with_alpha(images), self.config.rec_reduction)
        # KL(N(mean, var) || N(0, 1)) - log det; with the reference's unit variance, 0.5 |mean|^2 - sum s.
        noise_kl = 0.5 * (mean.pow(2) + log_variance.exp() - log_variance - 1).sum(dim=(1, 2)) - log_det
        scaled_labels = labels[:, :, None].expand_as(latent)
        prior_mean = self.prior.conditioned(scaled_labels, latent)
        prior_term = 0.5 * (latent - prior_mean).pow(2).sum(dim=(1, 2))
        kl = (self.alpha * noise_kl + self.beta * prior_term).mean()
        return {"loss": reconstruction + kl, "reconstruction": reconstruction, "noise_kl": noise_kl.mean(),
                "prior": prior_term.mean()}

    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """The causal latent z [N, K, k] (deterministic: the flow of the encoder's noise mean)."""
        return self.flow(self.noise(images)[0])[0]

    @torch.no_grad()
    def reconstruct(self, images: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.decode(self.encode(images)))[:, : self.channels]

    @torch.no_grad()
    def intervene(self, images: torch.Tensor, target: int, value: float | torch.Tensor) -> torch.Tensor:
        """Counterfactual images under do(z_target = value): abduct the noise, set the block, recompute
        its descendants in topological order, decode (the reference's ``ICM_VAE.forward`` with ``mask``/``value``). ``value`` is a scalar, one per
        image [N] or one block per image [N, k]."""
        if not 0 <= target < self.concepts:
            raise ConfigError(f"model 'icm_vae': target must be a concept index in 0..{self.concepts - 1}; got {target}")
        eps = self.noise(images)[0]
        block = torch.as_tensor(value, dtype=eps.dtype, device=eps.device)
        if block.ndim == 1:
            block = block[:, None]
        block = block.expand(len(images), self.config.concept_dim)
        latent, _ = self.flow(eps, target=target, value=block)
        if self.config.abs_at_intervention and self.concepts > 3:
            latent = latent.clone()
            latent[:, 3] = latent[:, 3].abs()
        return torch.sigmoid(self.decode(latent))[:, : self.channels]
