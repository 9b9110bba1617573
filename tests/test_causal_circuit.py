"""CausalCircuit reconstruction: mechanisms, noise encodings and weakly supervised pairs.

The SCM under test is specified in the docstring of ``datasets/causal_circuit.py``; the regimes at
zero noise are an all-off state and the three one-button regimes ICM-VAE selects from the original
data (Akomand/ICM-VAE ``utils.py``, ``CausalCircuitSimplified``).
"""

import numpy as np
import pytest
from scipy import special

from crlbench.datasets.causal_circuit import button_press, encode_noise

ARM, BLUE, GREEN, RED = range(4)


def test_mechanisms_at_zero_noise_reproduce_the_reference_regimes(circuit):
    arm = np.array([0.05, 0.25, 0.55, 0.85])
    noise = np.zeros((4, 4))
    noise[:, ARM] = special.ndtri(arm)
    factors = circuit.solve(noise)
    expected_rgb = [(0.10, 0.04, 0.04), (0.93, 0.96, 0.04), (0.96, 0.04, 0.04), (0.93, 0.04, 0.96)]
    np.testing.assert_allclose(factors[:, [RED, GREEN, BLUE]], expected_rgb, atol=0.005)


def test_noise_encoding_inverts_the_mechanisms(circuit):
    split = circuit.split("train")
    recovered = np.stack([encode_noise(k, split.factors) for k in range(4)], axis=1)
    np.testing.assert_allclose(recovered, split.noise, atol=1e-6)


def test_all_latents_lie_in_the_unit_interval(circuit):
    for name in circuit.split_names:
        split = circuit.split(name)
        for factors in (split.factors, split.extras["factors_after"]):
            assert np.all((factors > 0) & (factors < 1))


def test_sizes_follow_the_parameters(circuit):
    assert circuit.card.split_sizes == {"train": 200, "val": 40, "test": 40}
    assert circuit.split("val").extras["images_after"].shape == (40, 32, 32, 3)


def test_do_red_changes_nothing_else(circuit):
    split = circuit.split("train")
    after = circuit.intervene(split.factors, split.noise, "red", 0.5)
    np.testing.assert_array_equal(after[:, :RED], split.factors[:, :RED])


def test_do_green_changes_only_red(circuit):
    split = circuit.split("train")
    after = circuit.intervene(split.factors, split.noise, "green", 0.99)
    np.testing.assert_array_equal(after[:, [ARM, BLUE]], split.factors[:, [ARM, BLUE]])
    assert np.mean(after[:, RED] > split.factors[:, RED]) > 0.9  # green on pushes red up via the OR


def test_do_arm_can_change_every_light(circuit):
    split = circuit.split("train")
    after = circuit.intervene(split.factors, split.noise, "arm", 0.25)
    assert all(np.any(after[:, k] != split.factors[:, k]) for k in (BLUE, GREEN, RED))


def test_pairs_keep_non_descendants_and_noise_and_mark_the_target(circuit):
    split = circuit.split("train")
    before, after = split.factors, split.extras["factors_after"]
    targets = split.extras["intervention_targets"]
    assert set(targets) == {-1, 0, 1, 2, 3}
    for row in range(len(before)):
        if targets[row] == -1:
            np.testing.assert_array_equal(after[row], before[row])
            continue
        target = targets[row]
        untouched = [k for k in range(4) if k != target and k not in circuit.card.descendants(target)]
        np.testing.assert_array_equal(after[row, untouched], before[row, untouched])
        others = [k for k in range(4) if k != target]
        np.testing.assert_array_equal(split.extras["noise_after"][row, others], split.noise[row, others])


def test_labels_masks_and_presses_follow_the_qualcomm_order(circuit):
    split = circuit.split("train")
    labels, masks, targets = (split.extras[k] for k in ("intervention_labels", "intervention_masks", "intervention_targets"))
    qualcomm = ("red", "green", "blue", "arm")
    for label in range(1, 5):
        rows = labels == label
        assert np.all(masks[rows].argmax(axis=1) == label - 1) and np.all(masks[rows].sum(axis=1) == 1)
        assert {circuit.card.factor_names[t] for t in targets[rows]} == {qualcomm[label - 1]}
    assert not masks[labels == 0].any()
    expected = np.stack([button_press(split.factors[:, ARM], light) for light in ("red", "green", "blue")], axis=1)
    np.testing.assert_array_equal(split.extras["pressed"], expected)
    assert np.all(expected[np.abs(split.factors[:, ARM] - 0.55) < 0.08, 0] > 0)  # red's button at 0.55


def test_canonical_graph_is_the_permuted_original(circuit):
    original = np.array([[0, 0, 0, 0], [1, 0, 0, 0], [1, 0, 0, 0], [1, 1, 1, 0]])  # red, green, blue, arm
    perm = list(circuit.card.permutation)
    np.testing.assert_array_equal(circuit.card.graph, original[perm][:, perm])
    assert np.all(np.tril(circuit.card.graph) == 0)


def test_after_noise_encodes_the_intervened_value(circuit):
    split = circuit.split("train")
    after, noise_after = split.extras["factors_after"], split.extras["noise_after"]
    np.testing.assert_allclose(circuit.solve(noise_after), after, atol=1e-6)


def test_button_presses_are_stored_for_both_images(circuit):
    split = circuit.split("train")
    pressed = split.extras["pressed"]
    assert pressed.shape == (200, 3) and pressed.min() >= 0 and pressed.max() <= 1
    assert split.extras["pressed_after"].shape == (200, 3)
    assert np.mean(pressed.max(axis=1) > 0) == pytest.approx(0.48, abs=0.12)
