"""Shared convolutional backbones for 64x64 RGB images (any side divisible by 16).

The encoder follows disentanglement_lib's ``conv_encoder`` (conv 32-32-64-64, stride 2, then FC 256)
and the decoder its ``deconv_decoder`` (FC 256, FC 64*s*s, deconv 64-32-32-C), with kernel 4 in
every layer (dlib uses kernel 2 in the last two encoder convolutions; the PyTorch ports use 4).
Every model uses them by default so that comparisons are fair and CPU training is practical
(0.77 M parameters, about 105 ms per training step of 64 images on 2 CPU cores; docs/models.md).

The ``Reference*`` classes are the reference codes' own networks, for checking the backbone's effect:
the CausalVAE / ICM-VAE MLPs on RGBA, and DEAR's ResNet-50 encoder, SAGAN generator and joint
discriminator (xwshen51/DEAR ``resnet.py``, ``sagan.py``, ``bgm.py``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from crlbench.core.errors import ConfigError

CHANNELS = (32, 32, 64, 64)
HIDDEN = 256


def append_alpha(images: torch.Tensor) -> torch.Tensor:
    """RGBA with alpha = 1: the reference MLP networks of CausalVAE and ICM-VAE read RGBA PNGs."""
    return torch.cat([images, torch.ones_like(images[:, :1])], dim=1)


def bernoulli_reconstruction(logits: torch.Tensor, images: torch.Tensor, reduction: str) -> torch.Tensor:
    """The Bernoulli reconstruction term of CausalVAE's and ICM-VAE's code: the pixel BCE summed over the
    image width and averaged over batch, channel and height (``"width"``, the reference's
    ``log_bernoulli_with_logits`` then a mean), or summed over every pixel per image (``"sum"``)."""
    bce = F.binary_cross_entropy_with_logits(logits, images, reduction="none")
    return bce.sum(dim=3).mean() if reduction == "width" else bce.sum() / len(images)


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
    """The CausalVAE / ICM-VAE code's encoder for Pendulum and Flow (``Encoder`` in huawei-noah/trustworthyAI
    ``research/CausalVAE/codebase/models/nns/mask.py`` and Akomand/ICM-VAE ``codebase/models/shared/mask.py``):
    the flattened image (96x96 RGBA in the reference) -> 900 -> ELU -> 300 -> ELU -> ``out_features``."""

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
    over concepts (``Decoder_DAG.decode_sep`` in the same ``mask.py`` files).

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


# -- DEAR's reference networks for its Pendulum run (xwshen51/DEAR resnet.py, sagan.py, bgm.py) ----

REFERENCE_GAN_SIZE = 64  # the only size these networks are built for here (the Pendulum run's)


def concept_decoders(kind: str, concepts: int, concept_dim: int, channels: int, image_size: int) -> nn.ModuleList:
    """The decoders of a concept model (ICM-VAE, CausalVAE, SCM-VAE): ``"reference"``, the code's per-concept
    MLP decoders on RGBA (``channels`` counts the alpha channel); ``"shared"``, one :class:`ConvDecoder` on the
    flattened latent; ``"per_concept"``, one per concept block (:func:`decode_concepts` averages their logits)."""
    if kind == "reference":
        return nn.ModuleList([ReferenceConceptDecoders(concepts, concept_dim, channels, image_size)])
    if kind == "shared":
        return nn.ModuleList([ConvDecoder(concepts * concept_dim, channels, image_size)])
    return nn.ModuleList(ConvDecoder(concept_dim, channels, image_size) for _ in range(concepts))


def decode_concepts(decoders: nn.ModuleList, latent: torch.Tensor) -> torch.Tensor:
    """Pixel logits of the concept latent [B, K, k] through :func:`concept_decoders`' decoders; per-concept
    decoders are averaged in logit space, as the references' ``decode_sep``."""
    if isinstance(decoders[0], ReferenceConceptDecoders):
        return decoders[0](latent)
    if len(decoders) == 1:
        return decoders[0](latent.flatten(1))
    return torch.stack([decoder(latent[:, i]) for i, decoder in enumerate(decoders)]).mean(dim=0)


def _check_gan_size(image_size: int) -> None:
    if image_size != REFERENCE_GAN_SIZE:
        raise ConfigError(f"DEAR's reference networks: image size must be {REFERENCE_GAN_SIZE} (the Pendulum run's); "
                          f"got {image_size}")


def _sn(layer: nn.Module) -> nn.Module:
    """Orthogonal weights, zero bias, then spectral normalisation (sagan.py's ``init_weights`` + ``snconv2d``)."""
    nn.init.orthogonal_(layer.weight)
    nn.init.zeros_(layer.bias)
    return spectral_norm(layer)


class _Bottleneck(nn.Module):
    """torchvision's ResNet bottleneck: 1x1 -> 3x3 (stride here) -> 1x1 to 4 x width, BN after each, projected shortcut
    when the shape changes."""

    def __init__(self, in_channels: int, width: int, stride: int) -> None:
        super().__init__()
        out = 4 * width
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, width, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(),
            nn.Conv2d(width, width, 3, stride, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(),
            nn.Conv2d(width, out, 1, bias=False), nn.BatchNorm2d(out),
        )
        projected = stride != 1 or in_channels != out
        self.shortcut = (nn.Sequential(nn.Conv2d(in_channels, out, 1, stride, bias=False), nn.BatchNorm2d(out))
                         if projected else nn.Identity())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.body(x) + self.shortcut(x))


class _ResidualMLP(nn.Module):
    """relu(x + fc2(relu(fc1(x)))): BatchNorm after each linear layer (resnet.py's ``ResMLPBlock``) or spectrally
    normalised layers (sagan.py's ``SNResMLPBlock``)."""

    def __init__(self, width: int, spectral: bool) -> None:
        super().__init__()
        if spectral:
            layers = [_sn(nn.Linear(width, width)), nn.ReLU(), _sn(nn.Linear(width, width))]
        else:
            layers = [nn.Linear(width, width), nn.BatchNorm1d(width), nn.ReLU(), nn.Linear(width, width), nn.BatchNorm1d(width)]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(x + self.net(x))


class ReferenceResNetEncoder(nn.Module):
    """DEAR's ``ResEncoder`` (enc_arch=resnet): a ResNet-50 (stem conv 7x7/2 + max-pool, bottleneck stages of widths
    64-128-256-512 and depths 3-4-6-3, global average pool to 2048) with the head
    Linear(2048, fc) - BN - ReLU - residual MLP block - Linear(fc, out_features). Image [N, C, 64, 64] -> [N, out]."""

    def __init__(self, out_features: int, in_channels: int = 3, image_size: int = 64,
                 depths: tuple[int, ...] = (3, 4, 6, 3), fc_size: int = 1024) -> None:
        super().__init__()
        _check_gan_size(image_size)
        layers, previous = [nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(),
                            nn.MaxPool2d(3, 2, 1)], 64
        for stage, (width, depth) in enumerate(zip((64, 128, 256, 512), depths)):
            for block in range(depth):
                layers.append(_Bottleneck(previous, width, 2 if stage > 0 and block == 0 else 1))
                previous = 4 * width
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Sequential(nn.Linear(previous, fc_size), nn.BatchNorm1d(fc_size), nn.ReLU(),
                                  _ResidualMLP(fc_size, spectral=False), nn.Linear(fc_size, out_features))
        for module in self.features.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(images))


class _SelfAttention(nn.Module):
    """SAGAN self-attention (sagan.py's ``Self_Attn``): keys and values max-pooled 2x2, x + sigma * attention with
    sigma initialised to 0."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.query, self.key = _sn(nn.Conv2d(channels, channels // 8, 1)), _sn(nn.Conv2d(channels, channels // 8, 1))
        self.value, self.out = _sn(nn.Conv2d(channels, channels // 2, 1)), _sn(nn.Conv2d(channels // 2, channels, 1))
        self.sigma = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, channels, height, width = x.shape
        query = self.query(x).flatten(2)  # [B, C/8, HW]
        key = F.max_pool2d(self.key(x), 2).flatten(2)  # [B, C/8, HW/4]
        value = F.max_pool2d(self.value(x), 2).flatten(2)  # [B, C/2, HW/4]
        attention = torch.softmax(query.transpose(1, 2) @ key, dim=-1)  # [B, HW, HW/4]
        attended = (value @ attention.transpose(1, 2)).view(batch, channels // 2, height, width)
        return x + self.sigma * self.out(attended)


class _NoiseInjection(nn.Module):
    """x + w * N(0, 1), one noise map shared by the channels; w has shape [1, C, side, side] and starts at 0 (the
    reference passes each block's resolution as ``size`` at 64x64, so w is per channel and position)."""

    def __init__(self, channels: int, side: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1, channels, side, side))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.weight * torch.randn_like(x[:, :1])


class _GeneratorBlock(nn.Module):
    """BN-ReLU-upsample(nearest)-SNconv3x3 [-noise] - BN-ReLU-SNconv3x3 [-noise], plus upsample-SNconv1x1 of the input."""

    def __init__(self, in_channels: int, out_channels: int, side: int, noise: bool) -> None:
        super().__init__()
        self.norm1, self.norm2 = nn.BatchNorm2d(in_channels), nn.BatchNorm2d(out_channels)
        self.conv1 = _sn(nn.Conv2d(in_channels, out_channels, 3, 1, 1))
        self.conv2 = _sn(nn.Conv2d(out_channels, out_channels, 3, 1, 1))
        self.shortcut = _sn(nn.Conv2d(in_channels, out_channels, 1))
        self.noise1 = _NoiseInjection(out_channels, side) if noise else nn.Identity()
        self.noise2 = _NoiseInjection(out_channels, side) if noise else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden = self.noise1(self.conv1(F.interpolate(F.relu(self.norm1(x)), scale_factor=2, mode="nearest")))
        hidden = self.noise2(self.conv2(F.relu(self.norm2(hidden))))
        return hidden + self.shortcut(F.interpolate(x, scale_factor=2, mode="nearest"))


class ReferenceSAGANGenerator(nn.Module):
    """DEAR's ``BigDecoder`` (SAGAN ``Generator``, g_conv_dim c = 32, 64x64): SN-Linear z -> 16c x 4 x 4, blocks to
    16c (8x8), 8c (16), 4c (32), self-attention, 2c (64), then BN-ReLU-SNconv3x3 to C channels. ``noise`` is
    dec_dist=implicit (noise injection after the linear layer and every block conv). Returns the values before the
    reference's tanh: latent [N, latent_dim] -> [N, C, 64, 64]."""

    def __init__(self, latent_dim: int, out_channels: int = 3, image_size: int = 64, conv_dim: int = 32,
                 noise: bool = True) -> None:
        super().__init__()
        _check_gan_size(image_size)
        self.first_channels = 16 * conv_dim
        self.initial = _sn(nn.Linear(latent_dim, self.first_channels * 16))
        self.initial_noise = _NoiseInjection(self.first_channels, 4) if noise else nn.Identity()
        c = conv_dim
        self.blocks = nn.Sequential(
            _GeneratorBlock(16 * c, 16 * c, 8, noise), _GeneratorBlock(16 * c, 8 * c, 16, noise),
            _GeneratorBlock(8 * c, 4 * c, 32, noise), _SelfAttention(4 * c), _GeneratorBlock(4 * c, 2 * c, 64, noise),
            nn.BatchNorm2d(2 * c, momentum=1e-4), nn.ReLU(),  # the reference's final BN momentum
            _sn(nn.Conv2d(2 * c, out_channels, 3, 1, 1)),
        )

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        hidden = self.initial(latent).view(len(latent), self.first_channels, 4, 4)
        return self.blocks(self.initial_noise(hidden))


class _DiscriminatorBlock(nn.Module):
    """ReLU-SNconv3x3-ReLU-SNconv3x3 [-avgpool 2], plus SNconv1x1 [-avgpool] of the input when the shape changes."""

    def __init__(self, in_channels: int, out_channels: int, downsample: bool = True) -> None:
        super().__init__()
        self.conv1 = _sn(nn.Conv2d(in_channels, out_channels, 3, 1, 1))
        self.conv2 = _sn(nn.Conv2d(out_channels, out_channels, 3, 1, 1))
        self.downsample = downsample
        # the reference also allocates this convolution for the last block, whose shortcut is the identity
        self.shortcut = _sn(nn.Conv2d(in_channels, out_channels, 1)) if downsample or in_channels != out_channels else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden = self.conv2(F.relu(self.conv1(F.relu(x))))
        skip = x if self.shortcut is None else self.shortcut(x)
        if self.downsample:
            hidden, skip = F.avg_pool2d(hidden, 2), F.avg_pool2d(skip, 2)
        return hidden + skip


class _ScoredMLP(nn.Module):
    """sagan.py's ``Discriminator_MLP``: SN-Linear-ReLU, 3 SN residual blocks -> features, SN-Linear -> score."""

    def __init__(self, in_features: int, width: int, blocks: int = 3) -> None:
        super().__init__()
        self.features = nn.Sequential(_sn(nn.Linear(in_features, width)), nn.ReLU(),
                                      *(_ResidualMLP(width, spectral=True) for _ in range(blocks)))
        self.score = _sn(nn.Linear(width, 1))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.features(x)
        return self.score(features), features


class ReferenceJointDiscriminator(nn.Module):
    """DEAR's ``BigJointDiscriminator`` (d_conv_dim c = 32, dis_fc_size 512, 64x64): x branch SNconv1x1 to c, blocks
    to 2c (32x32), self-attention, 4c, 8c, 16c (4x4), 16c (no downsampling), ReLU, global sum pooling -> feature 16c
    and SN-Linear score; z branch and joint branch are ``_ScoredMLP`` modules; D = (s_x + s_z + s_xz) / 3 per sample [N].

    The reference squeezes s_x to [N] but not s_z, s_xz ([N, 1]), so its sum broadcasts to an [N, N] matrix whose
    mean enters the losses; here every score is [N], the evident intent."""

    def __init__(self, latent_dim: int, in_channels: int = 3, image_size: int = 64, conv_dim: int = 32,
                 fc_size: int = 512) -> None:
        super().__init__()
        _check_gan_size(image_size)
        c = conv_dim
        self.x_features = nn.Sequential(
            _sn(nn.Conv2d(in_channels, c, 1)), _DiscriminatorBlock(c, 2 * c), _SelfAttention(2 * c),
            _DiscriminatorBlock(2 * c, 4 * c), _DiscriminatorBlock(4 * c, 8 * c), _DiscriminatorBlock(8 * c, 16 * c),
            _DiscriminatorBlock(16 * c, 16 * c, downsample=False), nn.ReLU(),
        )
        self.x_score = _sn(nn.Linear(16 * c, 1))
        self.z_branch = _ScoredMLP(latent_dim, fc_size)
        self.joint = _ScoredMLP(16 * c + fc_size, fc_size)

    def forward(self, images: torch.Tensor, latent: torch.Tensor) -> torch.Tensor:
        fx = self.x_features(images).sum(dim=(2, 3))  # global sum pooling
        z_score, fz = self.z_branch(latent)
        joint_score, _ = self.joint(torch.cat([fx, fz], dim=1))
        return ((self.x_score(fx) + z_score + joint_score) / 3).squeeze(1)
