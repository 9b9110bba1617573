"""SCM-VAE (Komanduri, Wu, Huang, Chen, Wu; IEEE BigData 2022), as the reference code computes it.

Reference: Akomand/SCM-VAE @5f95487, ``models/scm_vae/lightning_module.py`` (``SCM_VAE.encode``,
``perform_intervention``, ``_get_loss``, ``configure_optimizers``), ``models/shared/mask_layer.py``
(``MaskLayer.g``, ``DagLayer.mask_z``), ``models/shared/utils.py`` (``structural_condition_prior``,
``kl_normal``, ``log_bernoulli_with_logits``, ``conditional_sample_gaussian``, ``gaussian_parameters``),
``models/shared/encoder_decoder.py`` (``Encoder``, ``Decoder_DAG.decode_sep``) and
``experiments/train_scm_vae.py`` with ``experiments/utils.py`` (hyperparameters); this project's
deviations are listed in ``docs/models.md``.

encoder x -> (eps, v) [B, K, k], v = softplus(.) + 1e-8; structural layer, nodes in topological order:
a root keeps z_i = eps_i, a node with parents z_i = g([z_j for j in pa(i)] and eps_i, other blocks zeroed),
one MLP g (16 -> 32 -> ELU -> 4 on Pendulum) shared by the nodes; the decoder gets
z + sqrt(lambda_v v) N(0, I). The loss (``_get_loss``):

    rec  = W * mean per-pixel BCE(logits, x)           (BCE summed over the width, averaged over the rest)
    kl_b = alpha KL(N(eps, v) || N(0, I)) + beta sum_i 0.5 |z_i - mu_i|^2,   mu_i = mean_{j in {i} + pa(i)} u_j
    loss = rec + mean_b kl_b

with u the standardised labels broadcast to each block's k dims (the structural prior: each concept's
prior mean is the average of its own and its parents' labels, unit variance; the code evaluates
KL(N(z_i, 1) || N(mu_i, 1)), with q's variance set to ones). No warm-up, no learning-rate schedule
(the scheduler is commented out). do(z_target = v) (``perform_intervention`` inside ``encode``): the
target block is set in the topological pass and its descendants recomputed from their own abducted
noise. The reference hard-codes Pendulum's graph (``DagLayer``: 0, 1 -> 2, 3) for every dataset;
here the graph is the card's.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from crlbench.baselines.scmvae_config import VERSION, SCMVAEConfig
from crlbench.core.errors import ConfigError
from crlbench.core.graph import descendants, topological_levels
from crlbench.core.registry import register_model
from crlbench.training.model import CausalModel, adam
from crlbench.training.nets import (ConvEncoder, ReferenceMLPEncoder, append_alpha, bernoulli_reconstruction,
                                    concept_decoders, decode_concepts)

MECHANISM_HIDDEN = 32  # MaskLayer.net_g: Linear(z_dim, 32) - ELU - Linear(32, z2_dim)


def structural_prior_weights(graph: np.ndarray) -> torch.Tensor:
    """W [K, K] with mu = u @ W: the prior mean of concept j is the average of the labels of j and its
    parents (``structural_condition_prior``: (A^T + I) u divided by the count of non-zeros per row)."""
    weights = (np.asarray(graph) != 0).astype(np.float32) + np.eye(len(graph), dtype=np.float32)
    return torch.from_numpy(weights / weights.sum(axis=0, keepdims=True))


@register_model("scm_vae")
class SCMVAE(CausalModel):
    name = "scm_vae"
    Config = SCMVAEConfig
    version = VERSION

    def __init__(self, card, **hyperparameters) -> None:
        super().__init__(card, **hyperparameters)
        config, graph = self.config, np.asarray(card.adjacency) != 0
        self.graph = graph.astype(int)
        self.concepts, k = len(graph), config.concept_dim
        latent = self.concepts * k
        order = [node for level in topological_levels(graph) for node in level]
        self.order = order
        self.children_order = [node for node in order if graph[:, node].any()]  # the nodes with a mechanism
        self.rgba = config.backbone == "reference"
        if self.rgba:
            self.encoder = ReferenceMLPEncoder(2 * latent, self.channels + 1, self.image_size)
            self.decoders = concept_decoders("reference", self.concepts, k, self.channels + 1, self.image_size)
        else:
            self.encoder = ConvEncoder(2 * latent, self.channels, self.image_size)
            self.decoders = concept_decoders(config.decoder, self.concepts, k, self.channels, self.image_size)
        nets = 1 if config.shared_mechanism_net else len(self.children_order)
        self.mechanism_nets = nn.ModuleList(
            nn.Sequential(nn.Linear(latent, MECHANISM_HIDDEN), nn.ELU(), nn.Linear(MECHANISM_HIDDEN, k)) for _ in range(nets)
        )
        self.net_of = {node: 0 if config.shared_mechanism_net else j for j, node in enumerate(self.children_order)}
        # Which blocks each node's mechanism reads: its parents' z, and (joint, the code's A + I) its own noise.
        parents = torch.as_tensor(graph.T, dtype=torch.float32)  # row i: the parents of i
        own = torch.eye(self.concepts) if config.mechanism == "joint" else torch.zeros(self.concepts, self.concepts)
        self.register_buffer("parent_masks", parents, persistent=False)
        self.register_buffer("own_masks", own, persistent=False)
        self.register_buffer("prior_weights", structural_prior_weights(graph), persistent=False)

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        config = self.config
        return {"adam": adam(self.parameters(), lr=config.lr, betas=(config.adam_beta1, config.adam_beta2))}

    def supervision(self) -> list[str]:
        return ["labels", "true graph"]  # the prior reads every concept's label; the mechanisms the card's graph

    # -- the structural layer ----------------------------------------------------------------

    def with_alpha(self, images: torch.Tensor) -> torch.Tensor:
        """RGBA with alpha = 1 for the reference backbone (its PNGs are RGBA), the images otherwise."""
        return append_alpha(images) if self.rgba else images

    def posterior(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The encoder's noise mean and variance [B, K, k] (``gaussian_parameters``: softplus + 1e-8)."""
        out = self.encoder(self.with_alpha(images))
        mean, raw = out.chunk(2, dim=1)
        shape = (len(images), self.concepts, self.config.concept_dim)
        return mean.reshape(shape), (F.softplus(raw) + 1e-8).reshape(shape)

    def mechanism(self, node: int, latent: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """z_node from the current latent: the net reads the flattened blocks masked to node's parents (and
        its own noise block in the joint form), every other block zeroed (``DagLayer.mask_z``, ``MaskLayer.g``)."""
        read = latent * self.parent_masks[node][None, :, None] + eps * self.own_masks[node][None, :, None]
        out = self.mechanism_nets[self.net_of[node]](read.flatten(1))
        return out if self.config.mechanism == "joint" else out + eps[:, node]

    def propagate(self, eps: torch.Tensor, latent: torch.Tensor, nodes: list[int]) -> torch.Tensor:
        """Recompute ``nodes`` (in topological order) through their mechanisms; every other block is kept as is."""
        blocks = list(latent.unbind(1))
        for node in nodes:
            blocks[node] = self.mechanism(node, torch.stack(blocks, dim=1), eps)
        return torch.stack(blocks, dim=1)

    def structural(self, eps: torch.Tensor) -> torch.Tensor:
        """The causal latent z [B, K, k] from the noise: roots keep their noise, the others go through g."""
        return self.propagate(eps, eps, self.children_order)

    def prior_mean(self, labels: torch.Tensor) -> torch.Tensor:
        """mu [B, K, k]: the average of each concept's and its parents' standardised labels, per block."""
        return (labels @ self.prior_weights)[:, :, None].expand(-1, -1, self.config.concept_dim)

    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        """Pixel logits (RGBA with the reference backbone); per-concept decoders are averaged in logit space."""
        return decode_concepts(self.decoders, latent)

    # -- the contract --------------------------------------------------------------------------

    def training_step(self, batch: dict[str, torch.Tensor], step: int) -> dict[str, torch.Tensor]:
        config = self.config
        images, labels = batch["images"], batch["factors"]
        mean, variance = self.posterior(images)
        latent = self.structural(mean)
        sampled = latent + (config.sampling_variance * variance).sqrt() * torch.randn_like(latent)
        reconstruction = bernoulli_reconstruction(self.decode(sampled), self.with_alpha(images), config.rec_reduction)
        noise_kl = 0.5 * (variance + mean.pow(2) - 1 - variance.log()).sum(dim=(1, 2))  # kl_normal(eps, v, 0, 1)
        prior_term = 0.5 * (latent - self.prior_mean(labels)).pow(2).sum(dim=(1, 2))  # kl_normal(z, 1, mu, 1)
        kl = (config.alpha * noise_kl + config.beta * prior_term).mean()
        return {"loss": reconstruction + kl, "reconstruction": reconstruction, "noise_kl": noise_kl.mean(),
                "prior": prior_term.mean()}

    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """The causal latent z [N, K, k] of the noise mean (no decoder noise)."""
        return self.structural(self.posterior(images)[0])

    @torch.no_grad()
    def reconstruct(self, images: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.decode(self.encode(images)))[:, : self.channels]

    @torch.no_grad()
    def intervene(self, images: torch.Tensor, target: int, value: float | torch.Tensor) -> torch.Tensor:
        """Counterfactual images under do(z_target = value): abduct the noise with the encoder, set the block,
        recompute its descendants in topological order from their own noise, decode the mean. ``value`` is a
        scalar, one per image [N] or one block per image [N, k]; the other blocks are the factual ones."""
        if not 0 <= target < self.concepts:
            raise ConfigError(f"model 'scm_vae': target must be a concept index in 0..{self.concepts - 1}; got {target}")
        eps = self.posterior(images)[0]
        factual = self.structural(eps)
        block = torch.as_tensor(value, dtype=eps.dtype, device=eps.device)
        block = (block[:, None] if block.ndim == 1 else block).expand(len(images), self.config.concept_dim)
        blocks = list(factual.unbind(1))
        blocks[target] = block
        downstream = descendants(self.graph, target)
        latent = self.propagate(eps, torch.stack(blocks, dim=1), [node for node in self.order if node in downstream])
        return torch.sigmoid(self.decode(latent))[:, : self.channels]
