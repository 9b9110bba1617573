"""iVAE (Khemakhem, Kingma, Monti, Hyvarinen, "Variational Autoencoders and Nonlinear ICA: A Unifying
Framework", AISTATS 2020), as its reference code trains it (ilkhem/iVAE @cf6ff68: ``models/nets.py``
``cleanIVAE``, ``runners/ivae.py``, ``configs/ivae.yaml``).

* Conditional prior ``p(z|u) = N(0, diag lambda(u))``: a Gaussian in the exponential family whose
  natural parameter ``-1 / (2 lambda(u))`` (sufficient statistic z^2) comes from an MLP of the auxiliary
  variable, ``log lambda(u) = MLP(u)`` (3 layers, 100 hidden units, xtanh). Here u is the batch's
  standardised labels ``batch["factors"]`` [B, K] (the reference's u is a one-hot segment index).
* Encoder ``q(z|x) = N(g(x), diag v(x))`` (``encoder_input="images"``, the default: a deviation). The
  reference's ``q(z|x,u)`` (``"images_and_labels"``: u enters as K constant image channels) is fed the true u
  in training and u = 0, the labels' mean, by ``encode``; on images it learns to read z off u.
* Decoder ``p(x|z) = N(f(z), 0.1 I)`` on [0, 1] pixels, mean unbounded (``decoder="bernoulli"``: pixel BCE).
* Loss, the ELBO's decomposition weighted as ``cleanIVAE.elbo`` with a = 100, b = 1, c = 0, d = 10 (set by the
  reference for 5-dimensional data; on 32x32 images the prior terms are about 0.6 % of the loss: docs/models.md)::

      -[a log p(x|z) - b (log q(z|x,u) - log q(z)) - c (log q(z) - sum_j log q(z_j))
        - d (sum_j log q(z_j) - log p(z|u))]

  with the minibatch-weighted estimates ``log q(z) = logsumexp_m log q(z|x_m,u_m) - log(M N)`` over the
  batch (M rows, N training images), per dimension for ``q(z_j)``; a = b = c = d = 1 is the plain ELBO.
* Adam (lr 0.01, the reference's and the Config default; configs/models/ivae.yaml, which the suites use, sets 1e-3,
  since 0.01 sent the loss to NaN in 6 of 12 runs on images),
  ReduceLROnPlateau(factor 0.1, patience 0) on each epoch's mean loss.

The image backbone is the shared conv encoder / decoder (the reference has MLPs on vectors). iVAE has no
causal structure: it is unaligned, and ``intervene`` is a latent traversal (set the code matched to a
factor, ``set_alignment``, and decode), not a causal intervention.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from crlbench.baselines.ivae_config import VERSION, IVAEConfig
from crlbench.core.registry import register_model
from crlbench.training.model import CausalModel, adam
from crlbench.training.nets import ConvDecoder, ConvEncoder

LOG_2PI = math.log(2 * math.pi)


def gaussian_log_density(x: torch.Tensor, mean: torch.Tensor, variance: torch.Tensor) -> torch.Tensor:
    """Element-wise log N(x; mean, variance) (``log_normal`` in the reference's ``models/nets.py``)."""
    return -0.5 * (LOG_2PI + variance.log() + (x - mean).pow(2) / variance)


def elbo_terms(log_px: torch.Tensor, z: torch.Tensor, mean: torch.Tensor, variance: torch.Tensor,
               prior_mean: torch.Tensor, prior_variance: torch.Tensor, dataset_size: int) -> dict[str, torch.Tensor]:
    """The four terms of ``cleanIVAE.elbo``'s decomposition, each a batch mean (the loss weights them by a, b, c, d).

    ``log_px`` [M]: log p(x|z) per row; ``z``, ``mean``, ``variance`` [M, d]: the posterior sample and
    q(z|x,u)'s parameters; ``prior_mean``, ``prior_variance``: p(z|u)'s ([M, d] or broadcastable);
    ``dataset_size``: N of the minibatch-weighted estimate of log q(z). Returns ``reconstruction``
    (-log p(x|z)), ``index_code_mi`` (log q(z|x,u) - log q(z)), ``total_correlation`` (log q(z) -
    sum_j log q(z_j)) and ``dimension_kl`` (sum_j log q(z_j) - log p(z|u)).
    """
    rows = len(z)
    log_q_z_given_xu = gaussian_log_density(z, mean, variance).sum(dim=1)
    log_p_z_given_u = gaussian_log_density(z, prior_mean, prior_variance).sum(dim=1)
    pairwise = gaussian_log_density(z.unsqueeze(1), mean.unsqueeze(0), variance.unsqueeze(0))  # [M, M, d]
    normaliser = math.log(rows * dataset_size)
    log_q_z = torch.logsumexp(pairwise.sum(dim=2), dim=1) - normaliser
    log_q_z_product = (torch.logsumexp(pairwise, dim=1) - normaliser).sum(dim=1)
    return {"reconstruction": -log_px.mean(), "index_code_mi": (log_q_z_given_xu - log_q_z).mean(),
            "total_correlation": (log_q_z - log_q_z_product).mean(),
            "dimension_kl": (log_q_z_product - log_p_z_given_u).mean()}


class XTanh(nn.Module):
    """tanh(x) + slope x, the reference MLPs' activation (``MLP.xtanh``)."""

    def __init__(self, slope: float) -> None:
        super().__init__()
        self.slope = slope

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(x) + self.slope * x


def mlp(inputs: int, outputs: int, hidden: int, layers: int, slope: float) -> nn.Sequential:
    """The reference's ``MLP``: ``layers`` linear layers, xtanh between them, none after the last."""
    sizes = [inputs] + [hidden] * (layers - 1) + [outputs]
    modules: list[nn.Module] = []
    for index, (size_in, size_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        modules.append(nn.Linear(size_in, size_out))
        if index < layers - 1:
            modules.append(XTanh(slope))
    return nn.Sequential(*modules)


class ReferenceEncoder(nn.Module):
    """cleanIVAE's encoder: two MLPs of the same input, ``g`` (the mean) and ``logv`` (the log-variance)."""

    def __init__(self, inputs: int, latent: int, hidden: int, layers: int, slope: float) -> None:
        super().__init__()
        self.g = mlp(inputs, latent, hidden, layers, slope)
        self.logv = mlp(inputs, latent, hidden, layers, slope)

    def forward(self, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.g(inputs), self.logv(inputs)


@register_model("ivae")
class IVAE(CausalModel):
    name = "ivae"
    Config = IVAEConfig
    version = VERSION
    aligned = False

    def __init__(self, card, **hyperparameters) -> None:
        super().__init__(card, **hyperparameters)
        config = self.config
        self.factors = len(card.factors)
        self.latent = config.latent_dim if config.latent_dim is not None else self.factors
        self.with_labels = config.encoder_input == "images_and_labels"
        conditioning = self.factors if self.with_labels else 0
        if config.backbone == "conv":
            self.encoder = ConvEncoder(2 * self.latent, self.channels + conditioning, self.image_size)
            self.decoder = ConvDecoder(self.latent, self.channels, self.image_size)
        else:  # cleanIVAE's g, logv (on the flattened image and u) and f
            pixels = self.channels * self.image_size * self.image_size
            shape = (self.channels, self.image_size, self.image_size)
            self.encoder = ReferenceEncoder(pixels + conditioning, self.latent, config.hidden_dim, config.n_layers,
                                            config.slope)
            self.decoder = nn.Sequential(mlp(self.latent, pixels, config.hidden_dim, config.n_layers, config.slope),
                                         nn.Unflatten(1, shape))
        prior_outputs = self.latent * (2 if config.prior_mean == "learned" else 1)
        self.prior = mlp(self.factors, prior_outputs, config.hidden_dim, config.n_layers, config.slope)
        # N of the log q(z) estimate: only shifts the loss by a constant (no effect on gradients)
        self.dataset_size = max(1, int(card.split_sizes.get("train", 1)))
        self.weights = {"a": config.a, "b": config.b, "c": config.c, "d": config.d}
        # saved in checkpoints (the base class's set_alignment fills it), so a reloaded model keeps its alignment
        self.register_buffer("factor_codes", torch.full((self.factors,), -1, dtype=torch.long))
        # ReduceLROnPlateau's state as buffers, so a resumed run continues the schedule exactly
        self.register_buffer("learning_rate", torch.tensor(config.lr, dtype=torch.float64))
        self.register_buffer("plateau_best", torch.tensor(math.inf, dtype=torch.float64))
        self.register_buffer("plateau_bad_epochs", torch.tensor(0, dtype=torch.long))
        self.register_buffer("lr_reductions", torch.tensor(0, dtype=torch.long))
        self.register_buffer("epoch_loss_sum", torch.tensor(0.0, dtype=torch.float64))
        self.register_buffer("epoch_batches", torch.tensor(0, dtype=torch.long))
        self._optimizer: torch.optim.Optimizer | None = None

    def supervision(self) -> list[str]:
        return ["labels"]  # u: the factors condition the prior (and the encoder) in training

    def latent_size(self) -> int:
        return self.latent

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        self._optimizer = adam(self.parameters(), lr=float(self.learning_rate))
        return {"adam": self._optimizer}

    # -- schedules ---------------------------------------------------------------------------------

    def on_epoch_start(self, epoch: int) -> None:
        """Step the plateau scheduler on the previous epoch's mean loss, then set the epoch's ELBO weights."""
        if int(self.epoch_batches) > 0:
            if self.config.lr_scheduler == "plateau":
                self.plateau_step(float(self.epoch_loss_sum) / int(self.epoch_batches))
            self.epoch_loss_sum.zero_()
            self.epoch_batches.zero_()
        if self._optimizer is not None:  # also restores the schedule's rate into fresh optimisers
            for group in self._optimizer.param_groups:
                group["lr"] = float(self.learning_rate)
        self.weights = self.epoch_weights(epoch)

    def plateau_step(self, loss: float) -> None:
        """torch's ReduceLROnPlateau (mode min, threshold 1e-4 relative, cooldown 0, min_lr 0, eps 1e-8)."""
        if loss < float(self.plateau_best) * (1 - 1e-4):
            self.plateau_best.fill_(loss)
            self.plateau_bad_epochs.zero_()
        else:
            self.plateau_bad_epochs += 1
        if int(self.plateau_bad_epochs) > self.config.plateau_patience:
            old = float(self.learning_rate)
            new = old * self.config.plateau_factor
            if old - new > 1e-8:
                self.learning_rate.fill_(new)
                self.lr_reductions += 1
            self.plateau_bad_epochs.zero_()

    def epoch_weights(self, epoch: int) -> dict[str, float]:
        """a, b, c, d for 0-based ``epoch``; with ``anneal``, runners/ivae.py's two phases (1-based epochs)."""
        config = self.config
        if not config.anneal:
            return {"a": config.a, "b": config.b, "c": config.c, "d": config.d}
        if epoch + 1 > self.reference_epochs() / 1.6:
            return {"a": 2 * config.a, "b": 1.0, "c": 1.0, "d": 1.0}
        return {"a": config.a, "b": config.b, "c": 0.0, "d": config.d}

    def reference_epochs(self) -> float:
        total, per_epoch = getattr(self, "total_steps", None), getattr(self, "steps_per_epoch", None)
        return total / per_epoch if total and per_epoch else math.inf

    def schedule(self) -> dict:
        """The learning rate the plateau scheduler reached, and (with ``anneal``) where the second phase starts."""
        record = {"kind": self.config.lr_scheduler, "learning_rate": float(self.learning_rate),
                  "lr_reductions": int(self.lr_reductions), "finished": True}
        if self.config.anneal:
            switch = math.floor(self.reference_epochs() / 1.6)  # the last 0-based epoch of the first phase
            record.update(anneal_switch_epoch=switch, finished=switch + 1 < self.reference_epochs())
        return record

    # -- the model ---------------------------------------------------------------------------------

    def posterior(self, images: torch.Tensor, labels: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """q(z|x,u)'s mean and log-variance [N, d]; without labels u = 0 (the standardised labels' mean)."""
        if self.config.backbone == "reference":
            inputs = images.flatten(1)
            if self.with_labels:
                labels = images.new_zeros(len(images), self.factors) if labels is None else labels
                inputs = torch.cat([inputs, labels.to(inputs.dtype)], dim=1)
            return self.encoder(inputs)
        if self.with_labels:  # u as K constant image channels
            labels = images.new_zeros(len(images), self.factors) if labels is None else labels
            planes = labels[:, :, None, None].expand(-1, -1, *images.shape[2:])
            images = torch.cat([images, planes.to(images.dtype)], dim=1)
        mean, log_variance = self.encoder(images).chunk(2, dim=1)
        return mean, log_variance

    def prior_parameters(self, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """p(z|u)'s mean and variance [B, d]: mean 0 (``prior_mean="zero"``) and lambda(u) = exp(MLP(u))."""
        out = self.prior(labels)
        if self.config.prior_mean == "learned":
            mean, log_variance = out.chunk(2, dim=1)
            return mean, log_variance.exp()
        return torch.zeros_like(out), out.exp()

    def log_likelihood(self, output: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
        """log p(x|z) per image: Gaussian with fixed variance around the decoder output, or Bernoulli on its logits."""
        if self.config.decoder == "gaussian":
            variance = torch.full_like(output, self.config.decoder_variance)
            return gaussian_log_density(images, output, variance).flatten(1).sum(dim=1)
        return -F.binary_cross_entropy_with_logits(output, images, reduction="none").flatten(1).sum(dim=1)

    def to_images(self, output: torch.Tensor) -> torch.Tensor:
        return output.clamp(0, 1) if self.config.decoder == "gaussian" else torch.sigmoid(output)

    def training_step(self, batch: dict[str, torch.Tensor], step: int) -> dict[str, torch.Tensor]:
        images, labels = batch["images"], batch["factors"]
        mean, log_variance = self.posterior(images, labels if self.with_labels else None)
        variance = log_variance.exp()
        z = mean + torch.randn_like(mean) * variance.sqrt()
        log_px = self.log_likelihood(self.decoder(z), images)
        prior_mean, prior_variance = self.prior_parameters(labels)
        terms = elbo_terms(log_px, z, mean, variance, prior_mean, prior_variance, self.dataset_size)
        w = self.weights
        loss = (w["a"] * terms["reconstruction"] + w["b"] * terms["index_code_mi"]
                + w["c"] * terms["total_correlation"] + w["d"] * terms["dimension_kl"])
        if self.training:  # the plateau scheduler reads the epoch's mean training loss
            self.epoch_loss_sum += loss.detach().to(torch.float64)
            self.epoch_batches += 1
        return {"loss": loss, **terms}

    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """The posterior means as one flat block [N, 1, d] (unaligned), with u = 0 when the encoder takes labels."""
        return self.posterior(images)[0].unsqueeze(1)

    @torch.no_grad()
    def reconstruct(self, images: torch.Tensor) -> torch.Tensor:
        return self.to_images(self.decoder(self.posterior(images)[0]))

    @torch.no_grad()
    def intervene(self, images: torch.Tensor, target: int, value: float | torch.Tensor) -> torch.Tensor:
        """Decode after setting the code matched to factor ``target`` to ``value``: a latent traversal, not a
        causal intervention (iVAE's latents are independent given u; nothing propagates)."""
        code = self.matched_code(target)  # the base class checks the index and that the alignment is set
        latent = self.posterior(images)[0].clone()
        latent[:, code] = torch.as_tensor(value, dtype=latent.dtype, device=latent.device)
        return self.to_images(self.decoder(latent))
