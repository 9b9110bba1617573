"""The shared conv backbone: shapes at several sizes and the reference parameter count."""

import pytest
import torch

from crlbench.core.errors import ConfigError
from crlbench.training.nets import ConvDecoder, ConvEncoder


@pytest.mark.parametrize("size", [32, 64, 96])
def test_encoder_and_decoder_shapes(size):
    assert ConvEncoder(10, 3, size)(torch.rand(2, 3, size, size)).shape == (2, 10)
    assert ConvDecoder(6, 3, size)(torch.rand(2, 6)).shape == (2, 3, size, size)


def test_parameter_count_matches_the_reference_backbone():
    # 0.77 M parameters for the 64x64 conv VAE with z = 16 (encoder giving mean and log-variance): disentanglement_lib's
    # conv_encoder / deconv_decoder (methods/shared/architectures.py) with kernel 4 throughout; docs/models.md.
    count = sum(p.numel() for net in (ConvEncoder(32), ConvDecoder(16)) for p in net.parameters())
    assert count == pytest.approx(0.77e6, rel=0.01)


def test_sizes_not_divisible_by_16_are_refused():
    with pytest.raises(ConfigError, match="multiple of 16; got 40"):
        ConvEncoder(4, 3, 40)


def test_reference_concept_decoders_average_per_concept_mlps():
    from crlbench.training.nets import ReferenceConceptDecoders

    torch.manual_seed(0)
    decoders = ReferenceConceptDecoders(concepts=3, concept_dim=2, out_channels=1, image_size=4)
    latent = torch.randn(5, 3, 2)
    expected = 0
    for i in range(3):  # concept i's own MLP, with its slice of the last layer
        hidden = latent[:, i]
        for weight, bias in zip(decoders.weights, decoders.biases):
            hidden = torch.nn.functional.elu(hidden @ weight[i] + bias[i, 0])
        expected = expected + hidden @ decoders.last.weight[:, i * 1024:(i + 1) * 1024].T
    expected = expected / 3 + decoders.last.bias
    torch.testing.assert_close(decoders(latent).flatten(1), expected, rtol=1e-4, atol=1e-5)


def test_reference_encoder_reads_the_flattened_rgba_image():
    from crlbench.training.nets import ReferenceMLPEncoder

    assert ReferenceMLPEncoder(16, 4, 16)(torch.rand(2, 4, 16, 16)).shape == (2, 16)


def test_reference_resnet_encoder_is_resnet50_with_the_dear_head():
    """torchvision's ResNet-50 without its fc is 23 508 032 parameters; DEAR's head (enc_fc_size 1024, out 12):
    Linear 2048*1024+1024 = 2 098 176, BN 2 048, residual block 2 x (1 049 600 + 2 048) = 2 103 296,
    Linear 1024*12+12 = 12 300: 4 215 820; total 27 723 852."""
    from crlbench.training.nets import ReferenceResNetEncoder

    encoder = ReferenceResNetEncoder(12)
    assert sum(p.numel() for p in encoder.features.parameters()) == 23_508_032
    assert sum(p.numel() for p in encoder.parameters()) == 27_723_852
    assert encoder(torch.rand(2, 3, 64, 64)).shape == (2, 12)


def test_reference_sagan_generator_size_and_shape():
    """c = 32, latent 6, noise injection at each block's resolution (weights [1, C, side, side]):
    SN-Linear 6*8192+8192 = 57 344 + noise 512*16 = 8 192;
    block 512->512 (8x8): convs 2 359 808 + 2 359 808 + 262 656, BN 1 024 + 1 024, noise 2*512*64 = 65 536: 5 049 856;
    block 512->256 (16): 1 179 904 + 590 080 + 131 328 + 1 024 + 512 + 131 072 = 2 033 920;
    block 256->128 (32): 295 040 + 147 584 + 32 896 + 512 + 256 + 262 144 = 738 432;
    self-attention (128): 2 064 + 2 064 + 8 256 + 8 320 + sigma 1 = 20 705;
    block 128->64 (64): 73 792 + 36 928 + 8 256 + 256 + 128 + 524 288 = 643 648;
    BN 128 + SNconv3x3 64->3 1 731; total 8 553 956."""
    from crlbench.training.nets import ReferenceSAGANGenerator

    generator = ReferenceSAGANGenerator(6)
    assert sum(p.numel() for p in generator.parameters()) == 8_553_956
    assert generator(torch.randn(2, 6)).shape == (2, 3, 64, 64)


def test_reference_joint_discriminator_size_and_shape():
    """c = 32, fc 512, latent 6. x branch: SNconv1x1 3->32 128; blocks (conv3x3, conv3x3, shortcut 1x1)
    32->64 57 536, self-attention (64) 5 233, 64->128 229 760, 128->256 918 272, 256->512 3 671 552,
    512->512 without downsampling 4 719 616 (identity shortcut: the reference's unused 1x1 conv is not built),
    SN-Linear 512->1 513: 9 602 610. z branch: 6*512+512 = 3 584, 3 residual blocks 6 x 262 656 = 1 575 936,
    score 513: 1 580 033. Joint branch on 1024 features: 524 800 + 1 575 936 + 513 = 2 101 249.
    Total 13 283 892."""
    from crlbench.training.nets import ReferenceJointDiscriminator

    discriminator = ReferenceJointDiscriminator(6)
    assert sum(p.numel() for p in discriminator.parameters()) == 13_283_892
    assert discriminator(torch.rand(3, 3, 64, 64), torch.randn(3, 6)).shape == (3,)


def test_reference_gan_networks_are_built_only_at_64():
    from crlbench.training.nets import ReferenceSAGANGenerator

    with pytest.raises(ConfigError, match="image size must be 64 .*got 32"):
        ReferenceSAGANGenerator(6, 3, 32)
