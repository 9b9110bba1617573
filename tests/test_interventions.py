"""Ground-truth interventions on every factor of every dataset, and their rendering."""

import numpy as np
import pytest

from crlbench.core.errors import ConfigError


def sample(dataset, count=64):
    split = dataset.split("train")
    rows = np.random.default_rng(0).choice(len(split), size=count, replace=False)
    return split.factors[rows], split.noise[rows]


def test_non_descendants_stay_bit_identical_and_descendants_are_recomputed(any_dataset):
    factors, noise = sample(any_dataset)
    card = any_dataset.card
    for k, factor in enumerate(card.factors):
        value = factor.sweep(5)[3]
        after = any_dataset.intervene(factors, noise, k, value)
        downstream = card.descendants(k)
        untouched = [j for j in range(len(card.factors)) if j != k and j not in downstream]
        np.testing.assert_array_equal(after[:, untouched], factors[:, untouched])
        assert np.all(after[:, k] == value)
        for child in downstream:
            np.testing.assert_array_equal(after[:, child], any_dataset.mechanism(child, after, noise))


def test_intervening_on_the_observed_value_changes_nothing(any_dataset):
    factors, noise = sample(any_dataset)
    for k in range(len(any_dataset.card.factors)):
        np.testing.assert_allclose(any_dataset.intervene(factors, noise, k, factors[:, k]), factors, atol=1e-9)


def test_every_root_factor_changes_the_pixels(any_dataset):
    factors, noise = sample(any_dataset, 8)
    card = any_dataset.card
    images = any_dataset.render(factors, noise)
    for root in (k for k in range(len(card.factors)) if not card.parents(k)):
        low, high = card.factors[root].sweep(2)
        for value in (low, high):
            after = any_dataset.intervene(factors, noise, root, value)
            changed = after[:, root] != factors[:, root]
            moved = np.any(any_dataset.render(after, noise) != images, axis=(1, 2, 3))
            np.testing.assert_array_equal(moved[changed], True)


def test_render_reproduces_the_stored_images(any_dataset):
    split = any_dataset.split("test")
    np.testing.assert_array_equal(any_dataset.render(split.factors[:16], split.noise[:16]), split.images[:16])


def test_value_outside_the_declared_range_is_refused(any_dataset):
    factors, noise = sample(any_dataset, 4)
    factor = any_dataset.card.factors[0]
    with pytest.raises(ConfigError, match=f"outside factor '{factor.name}'; accepted"):
        any_dataset.intervene(factors, noise, 0, factor.high + 100)


def test_target_out_of_range_or_unknown_is_refused(any_dataset):
    factors, noise = sample(any_dataset, 4)
    with pytest.raises(ConfigError, match="out of range; accepted: 0..3"):
        any_dataset.intervene(factors, noise, 7, 0.5)
    with pytest.raises(ConfigError, match="unknown factor 'nope'"):
        any_dataset.intervene(factors, noise, "nope", 0.5)


def test_discrete_factors_accept_only_grid_values(pendulum):
    factors, noise = sample(pendulum, 4)
    with pytest.raises(ConfigError, match="light_angle"):
        pendulum.intervene(factors, noise, "light_angle", 100)  # tan(phi) is infinite: not in the grid


def test_descendants_follow_the_reference_closed_forms(pendulum, flow):
    from crlbench.datasets.flow import water_flow, water_height
    from crlbench.datasets.pendulum import shadow_length, shadow_position

    factors, noise = sample(pendulum)
    after = pendulum.intervene(factors, noise, "light_angle", 75)
    np.testing.assert_allclose(after[:, 2], np.maximum(3, 9.5 * np.abs(np.cos((factors[:, 0] - 75) * np.pi / 200)) / np.sin(75 * np.pi / 200)))
    np.testing.assert_allclose(after[:, 3], shadow_position(factors[:, 0], 75))
    assert np.all(after[:, 2] == shadow_length(factors[:, 0], 75))
    factors, noise = sample(flow)
    after = flow.intervene(factors, noise, "ball_size", 30)
    height = (30 / 30) ** 3 + noise[:, 2] / 10  # the same h_raw noise
    np.testing.assert_allclose(after[:, 2], height)
    np.testing.assert_allclose(after[:, 3], np.sqrt(1.96 * height * (factors[:, 1] / 3 - 0.5)))
    np.testing.assert_array_equal(after[:, 2:], np.stack([water_height(30, noise[:, 2]), water_flow(factors[:, 1], after[:, 2])], 1))


@pytest.mark.parametrize(
    "target, value, message",
    [
        (0, np.array([10.0, 10.0]), r"expects one value or 4 values \(one per sample\); got shape \(2,\)"),
        (True, 10.0, "target True is out of range"),
        (0, 10.000005, "value 10 is outside factor 'pendulum_angle'"),
        (0, np.nan, "must be finite"),
    ],
)
def test_malformed_interventions_are_refused(pendulum, target, value, message):
    factors, noise = sample(pendulum, 4)
    with pytest.raises(ConfigError, match=message):
        pendulum.intervene(factors, noise, target, value)


def test_non_finite_factors_are_refused(pendulum):
    factors, noise = sample(pendulum, 4)
    factors[0, 2] = np.nan
    with pytest.raises(ConfigError, match="NaN or infinite factors or noise"):
        pendulum.render(factors, noise)
