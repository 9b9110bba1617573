"""Small inputs shared by the model tests: 32x32 cards and seeded random batches."""

import torch

from crlbench.core import registry


def card_32(name, tmp_path_factory):
    """The card of dataset ``name`` at 32x32 (cards are cheap: no images are rendered)."""
    return registry.dataset(name, cache_dir=tmp_path_factory.mktemp("d"), size=32).card


def random_batch(count=4, factors=4, size=32):
    """A seeded batch of random images in [0, 1] and standard-normal labels."""
    generator = torch.Generator().manual_seed(0)
    return {"images": torch.rand(count, 3, size, size, generator=generator),
            "factors": torch.randn(count, factors, generator=generator)}
