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
