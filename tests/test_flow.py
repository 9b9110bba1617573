"""Flow: the reference grid, splits, collisions, ranges and label order.

Expected values come from the reference generator, huawei-noah/trustworthyAI
``research/CausalVAE/causal_data/flow.py`` (its loops, counter rule and filenames re-run without
plotting); the legacy 5254 / 1620 split is also hard-coded in Akomand/ICM-VAE
``experiments/test_flow.py``, and the canonical order is that of Akomand/SCM-VAE
``data/data_generators/flow.py``.
"""

import numpy as np
import pytest

from crlbench.core import registry


def test_full_grid_has_8100_samples_split_6480_1620(flow):
    assert flow.card.split_sizes == {"train": 6480, "test": 1620}
    assert np.all(flow.split("test").extras["grid_index"] % 5 == 4)


def test_ranges_match_the_reference(flow):
    factors = np.concatenate([flow.split(s).factors for s in ("train", "test")])
    assert factors[:, 2].min() == pytest.approx(1.0046, abs=5e-5)
    assert factors[:, 2].max() == pytest.approx(5.3557, abs=5e-5)
    assert factors[:, 3].min() == pytest.approx(1.7186, abs=5e-5)
    assert factors[:, 3].max() == pytest.approx(6.6135, abs=5e-5)


def test_legacy_split_keeps_5254_train_files_and_824_overlaps(tmp_path, flow):
    legacy = registry.dataset("flow", cache_dir=tmp_path, split_rule="legacy")
    assert legacy.card.split_sizes == {"train": 5254, "test": 1620}
    train = {tuple(row) for row in legacy._designs["train"]["legacy_factors"]}
    test = {tuple(row) for row in legacy._designs["test"]["legacy_factors"]}
    assert len(train & test) == 824


def test_canonical_graph_is_the_permuted_original(flow):
    original = np.array([[0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 0], [0, 0, 1, 0]])
    perm = list(flow.card.permutation)
    np.testing.assert_array_equal(flow.card.graph, original[perm][:, perm])
    assert np.all(np.tril(flow.card.graph) == 0)
    assert [flow.card.original_order[p] for p in perm] == list(flow.card.factor_names)


def test_jet_noise_lies_in_the_reference_range_and_follows_the_seed(flow, tmp_path):
    noise = flow.split("train").noise[:, 3]
    assert noise.min() == pytest.approx(0.01) and noise.max() < 0.06
    assert np.mean(noise == 0.01) == pytest.approx(0.683, abs=0.03)  # P(|N(0,1)| <= 1)
    other = registry.dataset("flow", cache_dir=tmp_path, seed=1)
    assert not np.array_equal(other._designs["train"]["noise"][:, 3], noise)
    np.testing.assert_array_equal(other._designs["train"]["factors"], flow.split("train").factors)


def test_the_continuous_factors_have_units_and_no_grid(flow):
    """The water factors' units were passed where the grid goes (a string as a grid of characters)."""
    factors = {factor.name: factor for factor in flow.card.factors}
    assert factors["water_height"].grid is None and factors["water_height"].unit == "h"
    assert factors["water_flow"].grid is None and factors["water_flow"].unit == "jet reach x"
