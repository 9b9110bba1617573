"""CausalVAE (Yang et al., CVPR 2021, arXiv 2004.08697), as the reference code computes it.

Reference: huawei-noah/trustworthyAI, ``research/CausalVAE``: ``codebase/models/mask_vae_pendulum.py``
(``CausalVAE.negative_elbo_bound``), ``codebase/models/nns/mask.py`` (``DagLayer``, ``MaskLayer``,
``Attention``, ``Encoder``, ``Decoder_DAG``), ``codebase/utils.py`` and ``run_pendulum.py``; this
project's deviations are listed in ``docs/models.md``.

encoder x -> eps [B, K, k]; DAG layer z = eps (I - A)^-1 on each within-concept dim (A learnable);
mask layer f_j = g_j(sum_i A_ij z_i) with one small MLP per concept; the code's "attention" residual
e = softmax_1(sigmoid(z M eps^T)) eps (kept by default; not in the paper's equations);
z_final = f + e; the decoder gets z_final + sqrt(lambda) N(0, I). The loss (``negative_elbo_bound``):

    rec + alpha 0.5 |eps|^2 + beta sum_j 0.5 |z_j - u_j|^2 + sum_j 0.5 |z_final_j - u_j|^2
    + MSE(h(u), u) + 3 h(A) + 0.5 h(A)^2,   h(A) = tr[(I + A * A / K)^K] - K,

with rec the pixel BCE summed over the image width and averaged over batch, channel and height
(``utils.log_bernoulli_with_logits`` sums the last axis, ``negative_elbo_bound`` takes the mean), u_j the
standardised label j broadcast to k dims and h_j(u) = g^u_j(sum_i A_ij u_i) the label mechanism (on
raw labels in the reference). The reference's interventions (``inference_pendeulum.py``,
``negative_elbo_bound(mask=i, adj=0)``) always set 0 and recompute a root's mask output, so the value is
not held on the intervened node; ``intervene`` here is abduction-action-prediction on the learned graph thresholded at ``graph_threshold``.
``backbone="reference"`` swaps the shared conv backbone for the code's MLP encoder and per-concept MLP
decoders on RGBA (the same networks as ICM-VAE's), about 186.1 M parameters at 96x96.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from crlbench.baselines.causalvae_config import VERSION, CausalVAEConfig
from crlbench.core.errors import ConfigError
from crlbench.core.graph import descendants, topological_levels
from crlbench.core.registry import register_model
from crlbench.training.model import CausalModel, adam
from crlbench.training.nets import (ConvEncoder, ReferenceMLPEncoder, append_alpha, bernoulli_reconstruction,
                                    concept_decoders, decode_concepts)

# The reference code's initial A (``DagLayer.__init__`` in codebase/models/nns/mask.py, since commit
# f30cde8), written in the reference's own label order, which for Pendulum and Flow is the card's original
# order: edges 0 -> 1, 2, 3 and 1 -> 2, 3. ``initial_adjacency`` maps it into the card's order.
REFERENCE_A0 = ((0, 1, 1, 1), (0, 0, 1, 1), (0, 0, 0, 0), (0, 0, 0, 0))
MASK_HIDDEN, LABEL_HIDDEN = 32, 32


def acyclicity(adjacency: torch.Tensor) -> torch.Tensor:
    """h(A) = tr[(I + A * A / m)^m] - m, zero exactly when A is a DAG (the code's ``_h_A``)."""
    m = len(adjacency)
    identity = torch.eye(m, device=adjacency.device)
    return torch.trace(torch.matrix_power(identity + adjacency * adjacency / m, m)) - m


def initial_adjacency(a_init: str, card) -> np.ndarray:
    """A's initial value in the card's factor order: zeros, or the reference's A0 mapped from the original
    label order (``card.permutation[k]`` is factor k's original index: ``A[i, j] = A0[perm[i], perm[j]]``)."""
    factors = len(card.factors)
    if a_init == "zeros":
        return np.zeros((factors, factors))
    if factors != len(REFERENCE_A0):
        raise ConfigError(f"model 'causal_vae': a_init='reference' needs 4 factors; got {factors}; use a_init='zeros'")
    permutation = np.asarray(card.permutation)
    return np.asarray(REFERENCE_A0, dtype=float)[np.ix_(permutation, permutation)]


def concept_mlp(width: int, hidden: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(width, hidden), nn.ELU(), nn.Linear(hidden, width))


@register_model("causal_vae")
class CausalVAE(CausalModel):
    name = "causal_vae"
    version = VERSION  # see crlbench.baselines.causalvae_config
    Config = CausalVAEConfig

    def __init__(self, card, **hyperparameters) -> None:
        super().__init__(card, **hyperparameters)
        config = self.config
        self.concepts = len(card.factors)
        latent = self.concepts * config.concept_dim
        self.adjacency = nn.Parameter(torch.as_tensor(initial_adjacency(config.a_init, card), dtype=torch.float32))
        self.rgba = config.backbone == "reference"
        # the variance head is discarded: not built (the reference's encoder has 2 x latent outputs)
        if self.rgba:
            self.encoder = ReferenceMLPEncoder(latent, self.channels + 1, self.image_size)
        else:
            self.encoder = ConvEncoder(latent, self.channels, self.image_size)
        self.mask_nets = nn.ModuleList(concept_mlp(config.concept_dim, MASK_HIDDEN) for _ in range(self.concepts))
        self.label_nets = nn.ModuleList(concept_mlp(1, LABEL_HIDDEN) for _ in range(self.concepts))
        self.attention_weights = nn.Parameter(torch.randn(config.concept_dim, config.concept_dim)) if config.attention else None
        kind, channels = ("reference", self.channels + 1) if self.rgba else (config.decoder, self.channels)
        self.decoders = concept_decoders(kind, self.concepts, config.concept_dim, channels, self.image_size)
        stats = card.label_stats
        self.register_buffer("label_mean", torch.tensor(stats["mean"], dtype=torch.float32))
        self.register_buffer("label_std", torch.tensor(stats["std"], dtype=torch.float32).clamp_min(1e-12))

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        config = self.config
        return {"adam": adam(self.parameters(), lr=config.lr, betas=(config.adam_beta1, config.adam_beta2))}

    def supervision(self) -> list[str]:
        return ["labels", "initial graph"] if self.config.a_init == "reference" else ["labels"]

    # -- the structural layers ---------------------------------------------------------------

    def with_alpha(self, images: torch.Tensor) -> torch.Tensor:
        """RGBA with alpha = 1 for the reference backbone (its PNGs are RGBA), the images otherwise."""
        return append_alpha(images) if self.rgba else images

    def exogenous(self, images: torch.Tensor) -> torch.Tensor:
        return self.encoder(self.with_alpha(images)).view(len(images), self.concepts, self.config.concept_dim)

    def dag_layer(self, eps: torch.Tensor) -> torch.Tensor:
        """z = eps (I - A)^-1 on each within-concept dim: z_j = sum_i A_ij z_i + eps_j."""
        inverse = torch.linalg.inv(torch.eye(self.concepts, device=self.adjacency.device) - self.adjacency)
        return torch.einsum("bid,ij->bjd", eps, inverse)

    def mechanisms(self, latent: torch.Tensor) -> torch.Tensor:
        """f_j = g_j(sum_i A_ij z_i), one MLP per concept."""
        parents = torch.einsum("bid,ij->bjd", latent, self.adjacency)
        return torch.stack([net(parents[:, j]) for j, net in enumerate(self.mask_nets)], dim=1)

    def residual(self, latent: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """The code's attention term e = softmax over dim 1 of sigmoid(z M eps^T), times eps."""
        if self.attention_weights is None:
            return torch.zeros_like(eps)
        scores = torch.sigmoid(latent @ self.attention_weights @ eps.transpose(1, 2))
        return torch.softmax(scores, dim=1) @ eps

    def structural(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        eps = self.exogenous(images)
        latent = self.dag_layer(eps)
        final = self.mechanisms(latent) + self.residual(latent, eps)
        return eps, latent, final

    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        """Pixel logits (RGBA with the reference backbone); per-concept decoders are averaged in logit space."""
        return decode_concepts(self.decoders, latent)

    # -- the contract --------------------------------------------------------------------------

    def training_step(self, batch: dict[str, torch.Tensor], step: int) -> dict[str, torch.Tensor]:
        images, labels = batch["images"], batch["factors"]
        eps, latent, final = self.structural(images)
        decoded = final + self.config.sampling_variance**0.5 * torch.randn_like(final)
        logits = self.decode(decoded)
        reconstruction = bernoulli_reconstruction(logits, self.with_alpha(images), self.config.rec_reduction)
        target = labels[:, :, None].expand_as(latent)
        exogenous_kl = 0.5 * eps.pow(2).sum(dim=(1, 2)).mean()
        causal_kl = 0.5 * (latent - target).pow(2).sum(dim=(1, 2)).mean()
        mask_kl = 0.5 * (final - target).pow(2).sum(dim=(1, 2)).mean()
        u = labels * self.label_std + self.label_mean if self.config.label_mechanism_on == "raw" else labels
        parents = u @ self.adjacency
        predicted = torch.cat([net(parents[:, j : j + 1]) for j, net in enumerate(self.label_nets)], dim=1)
        label_loss = F.mse_loss(predicted, u)
        h = acyclicity(self.adjacency)
        loss = (reconstruction + self.config.alpha * exogenous_kl + self.config.beta * causal_kl + mask_kl
                + label_loss + 3 * h + 0.5 * h * h)
        return {"loss": loss, "reconstruction": reconstruction, "exogenous_kl": exogenous_kl, "causal_kl": causal_kl,
                "mask_kl": mask_kl, "label_mechanism": label_loss, "acyclicity": h}

    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """The concept latents z_final [N, K, k]."""
        return self.structural(images)[2]

    @torch.no_grad()
    def reconstruct(self, images: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.decode(self.encode(images)))[:, : self.channels]

    def thresholded_graph(self) -> np.ndarray:
        """The learned graph do() follows: |A_ij| above ``graph_threshold``, without self-loops. A[i, j] is
        the weight of i -> j (z_j = sum_i A_ij z_i + eps_j), the card's orientation."""
        graph = (self.adjacency.detach().abs() > self.config.graph_threshold).cpu().numpy().astype(int)
        np.fill_diagonal(graph, 0)
        return graph

    def learned_graph(self) -> dict:
        """The learned A over the concepts (the contract's graph; ``data`` is not needed): the adjacency
        do() follows (:meth:`thresholded_graph`) and |A_ij| as edge scores (diagonal 0)."""
        scores = self.adjacency.detach().abs().cpu().numpy().astype(np.float64)
        np.fill_diagonal(scores, 0.0)
        return {"adjacency": self.thresholded_graph(), "scores": scores}

    @torch.no_grad()
    def intervene(self, images: torch.Tensor, target: int, value: float | torch.Tensor) -> torch.Tensor:
        """do(z_target = value) by abduction-action-prediction (Pearl's three steps on the learned SCM):
        keep each node's residual r_j = z_final_j - g_j(sum_k A_kj z_k), set the target block, recompute
        its descendants in the learned graph's topological order, decode."""
        if not 0 <= target < self.concepts:
            raise ConfigError(f"model 'causal_vae': target must be a concept index in 0..{self.concepts - 1}; got {target}")
        graph = self.thresholded_graph()
        try:
            order = [node for level in topological_levels(graph) for node in level]
        except ValueError as error:
            raise ConfigError(f"model 'causal_vae': cannot intervene: the learned graph is not acyclic ({error})") from None
        _, latent, final = self.structural(images)
        residual = final - self.mechanisms(latent)
        block = torch.as_tensor(value, dtype=final.dtype, device=final.device)
        block = (block[:, None] if block.ndim == 1 else block).expand(len(images), self.config.concept_dim)
        after, parents = final.clone(), latent.clone()  # decoded values; the values mechanisms read
        after[:, target] = parents[:, target] = block
        downstream = descendants(graph, target)
        for node in (node for node in order if node in downstream):
            after[:, node] = parents[:, node] = self.mechanisms(parents)[:, node] + residual[:, node]
        return torch.sigmoid(self.decode(after))[:, : self.channels]
