"""Slow checks at the default sizes (``make test-slow``)."""

import numpy as np
import pytest

from crlbench.core import registry

pytestmark = pytest.mark.slow


def test_default_causal_circuit_has_the_documented_sizes_and_regimes(tmp_path):
    dataset = registry.dataset("causal_circuit", cache_dir=tmp_path)
    assert dataset.card.split_sizes == {"train": 10000, "val": 1000, "test": 1000}
    train = dataset.split("train")
    assert train.images.shape == (10000, 64, 64, 3) and train.extras["images_after"].shape == (10000, 64, 64, 3)
    red, green, blue, arm = (train.factors[:, k] for k in (3, 2, 1, 0))
    regimes = [((arm > 0.1) & (arm < 0.4) & (red > 0.5) & (green > 0.4) & (blue < 0.2)),
               ((arm > 0.4) & (arm < 0.7) & (red > 0.5) & (green < 0.2) & (blue < 0.2)),
               ((arm > 0.7) & (red > 0.5) & (green < 0.2) & (blue > 0.4))]
    assert all(np.mean(regime) > 0.03 for regime in regimes)  # ICM-VAE's three one-button regimes occur


def test_reloading_the_default_datasets_from_the_cache_gives_the_same_bytes(tmp_path):
    for name in ("pendulum", "flow"):
        first = registry.dataset(name, cache_dir=tmp_path).split("test").images
        again = registry.dataset(name, cache_dir=tmp_path)
        np.testing.assert_array_equal(again.split("test").images, first)
        assert again.loaded_from_cache
