"""Shared convolutional backbones for 64x64 RGB images (any side divisible by 16).

The encoder follows disentanglement_lib's ``conv_encoder`` (conv 32-32-64-64, stride 2, then FC 256)
and the decoder its ``deconv_decoder`` (FC 256, FC 64*s*s, deconv 64-32-32-C), with kernel 4 in
every layer (dlib uses kernel 2 in the last two encoder convolutions; the PyTorch ports use 4).
Every model uses them by default so that comparisons are fair and CPU training is practical
(models.md section 1.1: 0.77 M parameters, about 105 ms per batch of 64 on 2 cores).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from bench.errors import ConfigError

CHANNELS = (32, 32, 64, 64)
HIDDEN = 256


def _check_size(image_size: int) -> int:
    if image_size % 16 != 0 or image_size < 16:
        raise ConfigError(f"conv backbone: image size must be a multiple of 16; got {image_size}")
    return image_size // 16


class ConvEncoder(nn.Module):
    """Image [N, C, S, S] in [0, 1] -> features [N, out_features]."""

    def __init__(self, out_features: int, in_channels: int = 3, image_size: int = 64) -> None:
        super().__init__()
        side = _check_size(image_size)
        layers, previous = [], in_channels
        for channels in CHANNELS:
            layers += [nn.Conv2d(previous, channels, 4, stride=2, padding=1), nn.ReLU()]
            previous = channels
        self.net = nn.Sequential(
            *layers, nn.Flatten(), nn.Linear(previous * side * side, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, out_features)
        )

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(images)


class ConvDecoder(nn.Module):
    """Latent [N, latent_dim] -> pixel logits [N, C, S, S]."""

    def __init__(self, latent_dim: int, out_channels: int = 3, image_size: int = 64) -> None:
        super().__init__()
        self.side = _check_size(image_size)
        self.fc = nn.Sequential(
            nn.Linear(latent_dim, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, CHANNELS[-1] * self.side * self.side), nn.ReLU()
        )
        reversed_channels = (*CHANNELS[::-1][1:], out_channels)  # 64 -> 32 -> 32 -> C
        layers, previous = [], CHANNELS[-1]
        for index, channels in enumerate(reversed_channels):
            layers.append(nn.ConvTranspose2d(previous, channels, 4, stride=2, padding=1))
            if index < len(reversed_channels) - 1:
                layers.append(nn.ReLU())
            previous = channels
        self.net = nn.Sequential(*layers)

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        hidden = self.fc(latent).view(len(latent), CHANNELS[-1], self.side, self.side)
        return self.net(hidden)


class ReferenceMLPEncoder(nn.Module):
    """The CausalVAE / ICM-VAE code's encoder for Pendulum and Flow (models.md 2.3): the flattened
    image (96x96 RGBA in the reference) -> 900 -> ELU -> 300 -> ELU -> ``out_features``."""

    def __init__(self, out_features: int, in_channels: int = 4, image_size: int = 96) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Flatten(), nn.Linear(in_channels * image_size * image_size, 900), nn.ELU(),
            nn.Linear(900, 300), nn.ELU(), nn.Linear(300, out_features),
        )

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(images)


class ReferenceConceptDecoders(nn.Module):
    """One MLP per concept block (k -> 300 -> 300 -> 1024 -> C*S*S, ELU between), logits averaged
    over concepts (the code's ``Decoder_DAG.decode_sep``, models.md 2.4).

    The per-concept layers run as one batched matmul, and the last layers as one matmul on the
    concatenated hidden states: the same functions in fewer, larger kernels (the four last-layer
    biases, which only ever appear averaged, are one).
    """

    def __init__(self, concepts: int, concept_dim: int, out_channels: int = 4, image_size: int = 96) -> None:
        super().__init__()
        self.concepts, self.out_shape = concepts, (out_channels, image_size, image_size)
        sizes = (concept_dim, 300, 300, 1024)
        self.weights = nn.ParameterList(
            nn.Parameter(torch.empty(concepts, a, b)) for a, b in zip(sizes[:-1], sizes[1:])
        )
        self.biases = nn.ParameterList(nn.Parameter(torch.empty(concepts, 1, b)) for b in sizes[1:])
        self.last = nn.Linear(concepts * sizes[-1], out_channels * image_size * image_size)
        for weight, bias in zip(self.weights, self.biases):  # nn.Linear's default initialisation, per concept
            bound = 1.0 / weight.shape[1] ** 0.5
            nn.init.uniform_(weight, -bound, bound)
            nn.init.uniform_(bias, -bound, bound)
        with torch.no_grad():
            bound = 1.0 / sizes[-1] ** 0.5  # each concept's last layer sees 1024 inputs
            self.last.weight.uniform_(-bound, bound)
            self.last.bias.uniform_(-bound, bound)

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        hidden = latent.transpose(0, 1)  # [K, B, k]
        for weight, bias in zip(self.weights, self.biases):
            hidden = F.elu(torch.baddbmm(bias, hidden, weight))
        concatenated = hidden.transpose(0, 1).reshape(len(latent), -1)  # [B, K * 1024]
        # mean_i (W_i h_i + b_i) = (sum_i W_i h_i) / K + mean_i b_i; the bias here stands for mean_i b_i
        logits = F.linear(concatenated, self.last.weight / self.concepts, self.last.bias)
        return logits.view(len(latent), *self.out_shape)
