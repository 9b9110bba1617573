"""Pendulum: the reference grid, splits, closed forms and ranges.

Expected values come from the reference generator, huawei-noah/trustworthyAI
``research/CausalVAE/causal_data/pendulum.py`` (its loops and counter rule re-run without plotting);
the 5482 / 1826 split is also hard-coded in Akomand/ICM-VAE ``experiments/test_pendulum.py``.
"""

import numpy as np
import pytest

from crlbench.core import registry
from crlbench.datasets.pendulum import shadow_length, shadow_position


def project_to_ground(x, y, phi):
    """Where the light ray through (x, y) at angle phi meets the ground y = -0.5 (explicit construction)."""
    slope = np.tan(phi)
    return x - (y + 0.5) / slope


def test_full_grid_has_7308_images_split_5482_1826(pendulum):
    assert len(pendulum.split("train")) == 5482
    assert len(pendulum.split("test")) == 1826
    assert pendulum.card.split_sizes == {"train": 5482, "test": 1826}


def test_reference_split_puts_every_fourth_counter_from_four_in_test(pendulum):
    test_index = pendulum.split("test").extras["grid_index"]
    assert test_index[0] == 4 and np.all(test_index % 4 == 0)
    assert 0 in pendulum.split("train").extras["grid_index"]


def test_images_are_uint8_rgb_64(pendulum):
    images = pendulum.split("train").images
    assert images.dtype == np.uint8 and images.shape == (5482, 64, 64, 3)
    assert pendulum.split("train").factors.dtype == np.float64


def test_closed_forms_equal_the_projection_construction():
    i, j = np.meshgrid(np.arange(-40, 44), [j for j in range(60, 148) if j != 100], indexing="ij")
    theta, phi = i * np.pi / 200, j * np.pi / 200
    pivot = project_to_ground(10.0, 10.5, phi)
    tip = project_to_ground(10 + 9.5 * np.sin(theta), 10.5 - 9.5 * np.cos(theta), phi)
    np.testing.assert_allclose(shadow_position(i, j), (pivot + tip) / 2, atol=1e-12)
    np.testing.assert_allclose(shadow_length(i, j), np.maximum(3, np.abs(tip - pivot)), atol=1e-12)


def test_shadow_floor_is_active_for_39_6_percent(pendulum):
    factors = np.concatenate([pendulum.split(s).factors for s in ("train", "test")])
    assert factors[:, 2].min() == 3.0
    assert np.mean(factors[:, 2] == 3.0) == pytest.approx(0.396, abs=0.0005)


def test_ranges_match_the_reference(pendulum):
    factors = np.concatenate([pendulum.split(s).factors for s in ("train", "test")])
    assert factors[:, 2].max() == pytest.approx(12.58, abs=0.005)
    assert factors[:, 3].min() == pytest.approx(2.01, abs=0.005)
    assert factors[:, 3].max() == pytest.approx(19.61, abs=0.005)
    assert set(factors[:, 0]) == set(range(-40, 44))
    assert 100 not in set(factors[:, 1]) and len(set(factors[:, 1])) == 87


def test_legacy_labels_truncate_like_the_reference_filenames(pendulum):
    split = pendulum.split("train")
    legacy = split.extras["legacy_factors"]
    np.testing.assert_array_equal(legacy[:, 2:], np.trunc(split.factors[:, 2:]))
    assert legacy[:, 2].min() == 3 and legacy[:, 2].max() == 12


def test_random_split_is_seeded(tmp_path):
    first = registry.dataset("pendulum", cache_dir=tmp_path, split_rule="random", seed=3)
    again = registry.dataset("pendulum", cache_dir=tmp_path, split_rule="random", seed=3)
    other = registry.dataset("pendulum", cache_dir=tmp_path, split_rule="random", seed=4)
    assert first.card.split_sizes == {"train": 5481, "test": 1827}
    np.testing.assert_array_equal(first._designs["test"]["grid_index"], again._designs["test"]["grid_index"])
    assert not np.array_equal(first._designs["test"]["grid_index"], other._designs["test"]["grid_index"])
