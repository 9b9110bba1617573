"""DEAR (Shen et al., JMLR 2022, arXiv 2010.02637): a bidirectional generative model with an SCM prior.

Generator G(z) with z = [f(eps (I - A)^-1), free N(0, I) dims]; encoder E(x) (Gaussian); a joint
discriminator D(x, z) estimating the log density ratio; a supervised loss on the first K latents.
Per batch, as the reference's alternating updates (xwshen51/DEAR ``train.py``, ``train()``):

* D: E[softplus(D(G(z), z))] + E[softplus(-D(x, E(x)))];
* E: E[D(x, E(x))] + sup_coef L_sup, L_sup = BCE-with-logits(mu_K, min-max labels) (``sup_type="ce"``) or
  MSE to standardised labels (``"l2"``);
* G and the prior: -E[s D(G(z), z)], s = clamp(exp D, 0.5, 2) detached; A is updated only on the given
  super-graph's support (the dataset's graph), with its own Adam (default betas, as the reference).

The networks are the shared conv backbone (the reference's ResNet-50 / SAGAN trio does not fit a CPU
budget: see docs/models.md, "Cost of the reference networks"); D keeps the reference's structure (x branch, z branch, joint branch,
mean of the three scores) and its spectral normalisation. ``networks="reference"`` builds the
reference trio instead (``crlbench.training.nets.Reference*``, 64x64 only, about 49.6 M parameters). The
reference has no working do(): here ``intervene`` abducts the prior noise in pre-nonlinearity space,
sets the target and recomputes its descendants (Pearl's abduction, action, prediction).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from crlbench.baselines.dear_config import VERSION, DEARConfig
from crlbench.core.errors import ConfigError
from crlbench.core.graph import descendants, topological_levels
from crlbench.core.registry import register_model
from crlbench.training.model import CausalModel, adam
from crlbench.training.nets import (ConvDecoder, ConvEncoder, ReferenceJointDiscriminator, ReferenceResNetEncoder,
                                    ReferenceSAGANGenerator)

FEATURES = 512  # the reference's dis_fc_size
# |A_ij| above it is an edge of the learned graph (``learned_graph``). The reference reads no graph off A
# (xwshen51/DEAR causal_model.py: SCM keeps A on the given super-graph and never thresholds it), so this is
# crlbench's choice: CausalVAE's threshold (its ``graph_threshold``, the reference's prune() at 0.3), for
# comparable graphs. Not a hyperparameter: it changes no training, only the graph metric's reading.
GRAPH_THRESHOLD = 0.3


class MonotoneMap(nn.Module):
    """Elementwise increasing maps f_i, one per node: affine (linscm) or piecewise linear (nlrscm)."""

    def __init__(self, nodes: int, kind: str, positive_gain: bool, pieces: int = 100, bound: float = 5.0) -> None:
        super().__init__()
        self.kind, self.positive_gain = kind, positive_gain
        self.gain = nn.Parameter(torch.rand(nodes))  # p0 ~ U(0, 1), as the reference
        self.offset = nn.Parameter(torch.rand(nodes))  # p1 ~ U(0, 1)
        if kind == "nonlinear":
            self.register_buffer("knots", torch.linspace(-bound, bound, pieces + 1)[:-1])
            self.slopes = nn.Parameter(torch.zeros(nodes, pieces))  # softplus(0) slope increments
            self.width = 2 * bound / pieces

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        gain = F.softplus(self.gain) if self.positive_gain or self.kind == "nonlinear" else self.gain
        out = gain * v + self.offset
        if self.kind == "nonlinear":  # plus increasing ramps: f stays strictly increasing
            ramps = torch.clamp(v[..., None] - self.knots, 0.0, self.width)
            out = out + (F.softplus(self.slopes) * ramps).sum(dim=-1) - (F.softplus(self.slopes) * self.width / 2).sum(dim=-1)
        return out

    def inverse(self, z: torch.Tensor, iterations: int = 60) -> torch.Tensor:
        if self.kind == "linear":
            gain = F.softplus(self.gain) if self.positive_gain else self.gain
            return (z - self.offset) / gain
        low, high = torch.full_like(z, -1e3), torch.full_like(z, 1e3)  # bisection on an increasing map
        for _ in range(iterations):
            middle = (low + high) / 2
            above = self.forward(middle) > z
            high, low = torch.where(above, middle, high), torch.where(above, low, middle)
        return (low + high) / 2


class JointDiscriminator(nn.Module):
    """D(x, z) = (s_x + s_z + s_xz) / 3 with spectrally normalised layers (BigJointDiscriminator's shape)."""

    def __init__(self, latent: int, channels: int, image_size: int) -> None:
        super().__init__()
        self.x_features = ConvEncoder(FEATURES, channels, image_size)
        self.z_features = nn.Sequential(nn.Linear(latent, FEATURES), nn.LeakyReLU(0.2), nn.Linear(FEATURES, FEATURES), nn.LeakyReLU(0.2))
        self.x_score, self.z_score = nn.Linear(FEATURES, 1), nn.Linear(FEATURES, 1)
        self.joint = nn.Sequential(nn.Linear(2 * FEATURES, FEATURES), nn.LeakyReLU(0.2), nn.Linear(FEATURES, 1))
        for module in list(self.modules()):
            for name, child in list(module.named_children()):
                if isinstance(child, (nn.Linear, nn.Conv2d)):
                    setattr(module, name, spectral_norm(child))

    def forward(self, images: torch.Tensor, latent: torch.Tensor) -> torch.Tensor:
        fx, fz = F.leaky_relu(self.x_features(images), 0.2), self.z_features(latent)
        joint = self.joint(torch.cat([fx, fz], dim=1))
        return ((self.x_score(fx) + self.z_score(fz) + joint) / 3).squeeze(1)


@register_model("dear")
class DEAR(CausalModel):
    name = "dear"
    Config = DEARConfig
    version = VERSION
    manual_optimization = True

    def __init__(self, card, **hyperparameters) -> None:
        super().__init__(card, **hyperparameters)
        config = self.config
        self.labelled = len(card.factors)
        self.latent = self.labelled + config.free_dims
        if config.networks == "reference":
            self.encoder = ReferenceResNetEncoder(2 * self.latent, self.channels, self.image_size)
            self.generator = ReferenceSAGANGenerator(self.latent, self.channels, self.image_size)
            self.discriminator = ReferenceJointDiscriminator(self.latent, self.channels, self.image_size)
        else:
            self.encoder = ConvEncoder(2 * self.latent, self.channels, self.image_size)
            self.generator = ConvDecoder(self.latent, self.channels, self.image_size)
            self.discriminator = JointDiscriminator(self.latent, self.channels, self.image_size)
        self.adjacency = nn.Parameter(torch.zeros(self.labelled, self.labelled))  # zero-initialised
        self.register_buffer("support", torch.as_tensor(np.asarray(card.adjacency), dtype=torch.float32))
        self.link = MonotoneMap(self.labelled, config.prior, config.positive_gain)
        stats = card.label_stats
        for key in ("mean", "std", "min", "max"):
            self.register_buffer(f"label_{key}", torch.tensor(stats[key], dtype=torch.float32))
        self._optimizers: dict[str, torch.optim.Optimizer] | None = None

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        if self._optimizers is None:
            config, betas = self.config, (self.config.adam_beta1, self.config.adam_beta2)
            self._optimizers = {
                "discriminator": adam(self.discriminator.parameters(), lr=config.lr_d, betas=betas),
                "encoder": adam(self.encoder.parameters(), lr=config.lr_e, betas=betas),
                "generator": adam(self.generator.parameters(), lr=config.lr_g, betas=betas),
                "prior": adam(self.link.parameters(), lr=config.lr_prior, betas=betas),
                "graph": adam([self.adjacency], lr=config.lr_a),  # default betas, as the reference
            }
        return self._optimizers

    def supervision(self) -> list[str]:
        return ["labels", "true graph"]  # the card's graph is DEAR's given super-graph

    def latent_size(self) -> int:
        return self.latent  # the labelled dims and the free ones (encode gives the labelled ones)

    # -- the generative model -------------------------------------------------------------------

    def prior_sample(self, count: int) -> torch.Tensor:
        """z = [f(eps (I - A)^-1), free]: the SCM prior for the labelled dims, N(0, I) for the rest."""
        eps = torch.randn(count, self.latent, device=self.adjacency.device)
        labelled = self.link(self.solve(eps[:, : self.labelled]))
        return torch.cat([labelled, eps[:, self.labelled:]], dim=1)

    def solve(self, noise: torch.Tensor) -> torch.Tensor:
        """v = noise (I - A)^-1, the linear SCM in pre-nonlinearity space."""
        identity = torch.eye(self.labelled, device=self.adjacency.device)
        return noise @ torch.linalg.inv(identity - self.adjacency * self.support)

    def posterior(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, log_variance = self.encoder(images).chunk(2, dim=1)
        return mean, log_variance

    def generate(self, latent: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.generator(latent))  # the reference's tanh output (its images are in [0, 1])

    def supervised_loss(self, mean: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if self.config.sup_type == "l2":
            return F.mse_loss(mean[:, : self.labelled], labels)
        raw = labels * self.label_std + self.label_mean
        target = (raw - self.label_min) / (self.label_max - self.label_min).clamp_min(1e-12)
        target = target.clamp(self.config.target_clip, 1 - self.config.target_clip)
        return F.binary_cross_entropy_with_logits(mean[:, : self.labelled], target)

    def training_step(self, batch: dict[str, torch.Tensor], step: int) -> dict[str, torch.Tensor]:
        images, labels = batch["images"], batch["factors"]
        count = len(images)

        prior_latent = self.prior_sample(count)
        mean, log_variance = self.posterior(images)
        encoded = mean + torch.randn_like(mean) * torch.exp(0.5 * log_variance)
        fake = self.generate(prior_latent)
        d_loss = (F.softplus(self.discriminator(fake.detach(), prior_latent.detach())).mean()
                  + F.softplus(-self.discriminator(images, encoded.detach())).mean())
        self._update(d_loss, ("discriminator",))

        mean, log_variance = self.posterior(images)
        encoded = mean + torch.randn_like(mean) * torch.exp(0.5 * log_variance)
        sup = self.supervised_loss(mean, labels)
        e_loss = self.discriminator(images, encoded).mean() + self.config.sup_coef * sup
        self._update(e_loss, ("encoder",))

        prior_latent = self.prior_sample(count)
        score = self.discriminator(self.generate(prior_latent), prior_latent)
        low, high = self.config.score_clip
        g_loss = -(torch.clamp(torch.exp(score.detach()), low, high) * score).mean()
        self._update(g_loss, ("generator", "prior", "graph"))
        return {"discriminator": d_loss.detach(), "encoder": e_loss.detach(), "supervision": sup.detach(),
                "generator": g_loss.detach()}

    def _update(self, loss: torch.Tensor, names: tuple[str, ...]) -> None:
        optimizers = self.optimizers()
        for optimizer in optimizers.values():
            optimizer.zero_grad(set_to_none=True)
        # the trainer may run training_step under autocast (precision bf16): backward and steps run outside it
        with torch.autocast(loss.device.type, enabled=False):
            loss.backward()
            if "graph" in names and self.adjacency.grad is not None:
                self.adjacency.grad.mul_(self.support)  # learn weights on the given super-graph only
            for name in names:
                optimizers[name].step()

    # -- the contract ---------------------------------------------------------------------------

    def learned_graph(self) -> dict:
        """A on the given super-graph (A * support, as the prior uses it; ``data`` is not needed): edges
        where |A_ij| > ``GRAPH_THRESHOLD``, scores |A_ij| (0 off the super-graph). A[i, j] weighs i -> j
        (v = eps (I - A)^-1, v_j = sum_i A_ij v_i + eps_j), the card's orientation."""
        weights = (self.adjacency * self.support).detach().abs().cpu().numpy().astype(np.float64)
        np.fill_diagonal(weights, 0.0)
        return {"adjacency": (weights > GRAPH_THRESHOLD).astype(int), "scores": weights}

    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """The labelled latents as one-dimensional concept blocks [N, K, 1] (free dims left out)."""
        return self.posterior(images)[0][:, : self.labelled, None]

    @torch.no_grad()
    def reconstruct(self, images: torch.Tensor) -> torch.Tensor:
        return self.generate(self.posterior(images)[0]).clamp(0.0, 1.0)

    @torch.no_grad()
    def intervene(self, images: torch.Tensor, target: int, value: float | torch.Tensor) -> torch.Tensor:
        """do(z_target = value) in the SCM prior: abduct eps = f^-1(z)(I - A), set v_target = f^-1(value),
        recompute descendants v_j = sum_k A_kj v_k + eps_j in topological order, decode (free dims kept)."""
        if not 0 <= target < self.labelled:
            raise ConfigError(f"model 'dear': target must be a factor index in 0..{self.labelled - 1}; got {target}")
        latent = self.posterior(images)[0]
        weights = self.adjacency * self.support
        v = self.link.inverse(latent[:, : self.labelled])
        eps = v - v @ weights
        values = torch.as_tensor(value, dtype=v.dtype, device=v.device).expand(len(v))
        full = torch.full_like(v, 0.0)
        full[:, target] = values
        v = v.clone()
        v[:, target] = self.link.inverse(full)[:, target]
        graph = self.support.cpu().numpy()
        downstream = descendants(graph, target)
        for node in (n for level in topological_levels(graph) for n in level if n in downstream):
            v[:, node] = v @ weights[:, node] + eps[:, node]
        latent = latent.clone()
        latent[:, : self.labelled] = self.link(v)
        return self.generate(latent).clamp(0.0, 1.0)
