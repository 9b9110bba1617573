"""The shared conv backbone: shapes at several sizes and the reference parameter count."""

import pytest
import torch

from bench.errors import ConfigError
from bench.nets import ConvDecoder, ConvEncoder


@pytest.mark.parametrize("size", [32, 64, 96])
def test_encoder_and_decoder_shapes(size):
    assert ConvEncoder(10, 3, size)(torch.rand(2, 3, size, size)).shape == (2, 10)
    assert ConvDecoder(6, 3, size)(torch.rand(2, 6)).shape == (2, 3, size, size)


def test_parameter_count_matches_the_reference_backbone():
    # models.md 1.1: 0.77 M parameters for the 64x64 conv VAE with z = 16 (encoder giving mean and log-variance).
    count = sum(p.numel() for net in (ConvEncoder(32), ConvDecoder(16)) for p in net.parameters())
    assert count == pytest.approx(0.77e6, rel=0.01)


def test_sizes_not_divisible_by_16_are_refused():
    with pytest.raises(ConfigError, match="multiple of 16; got 40"):
        ConvEncoder(4, 3, 40)


def test_reference_concept_decoders_average_per_concept_mlps():
    from bench.nets import ReferenceConceptDecoders

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
    from bench.nets import ReferenceMLPEncoder

    assert ReferenceMLPEncoder(16, 4, 16)(torch.rand(2, 4, 16, 16)).shape == (2, 16)
