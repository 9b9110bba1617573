"""counterfactual@probe: an oracle that knows the SCM scores perfectly; one that ignores descendants does not;
a do() is measured against the model's own null do(), in percentiles that no latent scale can inflate."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from crlbench.core import registry
from crlbench.core.errors import ConfigError
from crlbench.metrics import compute, compute_with_model


class Oracle:
    """Encodes an image as its true factors (looked up by its pixels); intervenes with the dataset's SCM."""

    aligned = True

    def __init__(self, dataset, splits, propagate=True):
        self.dataset, self.propagate, self.table = dataset, propagate, {}
        for split in splits:
            self.remember(split.images, split.factors, split.noise)

    def remember(self, images, factors, noise):
        for image, f, u in zip(images, factors, noise):
            self.table[image.tobytes()] = (f, u)

    def lookup(self, x):
        pixels = (x.permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)
        rows = [self.table[p.tobytes()] for p in pixels]
        return np.stack([r[0] for r in rows]), np.stack([r[1] for r in rows])

    def eval(self):
        return self

    def encode(self, x):
        return torch.from_numpy(self.lookup(x)[0])[:, :, None]  # float64: values survive the round trip

    def intervene(self, x, k, value):
        factors, noise = self.lookup(x)
        values = value.double().numpy()
        if self.propagate:
            after = self.dataset.intervene(factors, noise, k, values)
        else:
            after = factors.copy()
            after[:, k] = values
        images = self.dataset.render(after, noise)
        self.remember(images, after, noise)
        return torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255


class LeakyOracle(Oracle):
    """The SCM oracle with its latents multiplied by ``scale``, whose do() on concept k also mirrors
    every other root cause that is not downstream of k (grid index i -> n - 1 - i) whenever the
    do() changes the sample's concept k: a non-causal model whose null do() is exact."""

    def __init__(self, dataset, splits, scale=1.0):
        super().__init__(dataset, splits)
        self.scale = scale

    def encode(self, x):
        return super().encode(x) * self.scale

    def intervene(self, x, k, value):
        factors, noise = self.lookup(x)
        values = value.double().numpy() / self.scale
        changed = ~np.isclose(values, factors[:, k], rtol=1e-9, atol=1e-9)
        card = self.dataset.card
        after = factors
        for j, factor in enumerate(card.factors):
            if j != k and j not in card.descendants(k) and not card.parents(j):
                grid = np.asarray(factor.grid)
                mirrored = grid[len(grid) - 1 - np.abs(after[:, j, None] - grid).argmin(axis=1)]
                after = self.dataset.intervene(after, noise, j, np.where(changed, mirrored, after[:, j]))
        after = self.dataset.intervene(after, noise, k, values)
        images = self.dataset.render(after, noise)
        self.remember(images, after, noise)
        return torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255


class Blurry:
    """Encodes by a fixed random projection of the pixels; its do() ignores the target and returns a
    blurred copy of the input (a bad reconstruction and no intervention at all)."""

    aligned = True

    def __init__(self, n_factors, size=32):
        generator = torch.Generator().manual_seed(0)
        self.n_factors = n_factors
        self.weights = torch.randn(3 * size * size, 2 * n_factors, generator=generator) / (3 * size * size) ** 0.5

    def eval(self):
        return self

    def encode(self, x):
        return (x.flatten(1) @ self.weights).view(len(x), self.n_factors, 2)

    def blur(self, x):
        return F.avg_pool2d(x, 5, stride=1, padding=2, count_include_pad=False)

    def intervene(self, x, k, value):
        return self.blur(x)


@pytest.fixture(scope="module")
def pendulum(tmp_path_factory):
    dataset = registry.dataset("pendulum", cache_dir=tmp_path_factory.mktemp("d"), size=32)
    return dataset, dataset.split("train"), dataset.split("test")


def with_render_memory(oracle, dataset, monkeypatch):
    render = dataset.render

    def remembering(factors, noise, *args, **kwargs):
        images = render(factors, noise, *args, **kwargs)
        oracle.remember(images, factors, noise)
        return images

    monkeypatch.setattr(dataset, "render", remembering)


def test_an_oracle_of_the_scm_scores_perfectly(pendulum, monkeypatch):
    dataset, train, test = pendulum
    oracle = Oracle(dataset, (train, test))
    with_render_memory(oracle, dataset, monkeypatch)
    result = compute_with_model("counterfactual@probe", oracle, dataset, train, test, n_samples=64, probe_samples=500)
    # Not exactly 0: at 32 pixels a few different factor values draw the same image, and the
    # oracle's pixel lookup then returns one of them.
    assert result.scores["counterfactual_mse"] < 1e-6
    assert result.scores["reconstruction_mse"] == 0.0  # the null do() redraws x exactly
    assert result.scores["non_descendant_shift"] < 1e-6
    assert result.scores["target_error"] < 1e-6


def test_ignoring_descendants_is_caught_by_the_pixel_error(pendulum, monkeypatch):
    dataset, train, test = pendulum
    oracle = Oracle(dataset, (train, test), propagate=False)
    with_render_memory(oracle, dataset, monkeypatch)
    result = compute_with_model("counterfactual@probe", oracle, dataset, train, test, n_samples=64, probe_samples=500)
    assert result.scores["counterfactual_mse_0"] > 1e-3  # the shadow does not follow the pendulum
    assert result.scores["counterfactual_mse_2"] == 0.0  # shadow length has no descendants
    assert result.scores["reconstruction_mse"] == 0.0
    assert result.scores["non_descendant_shift"] < 1e-6  # only k's descendants are wrong


def test_a_do_that_changes_nothing_moves_nothing_whatever_its_reconstruction(pendulum):
    dataset, train, test = pendulum
    model = Blurry(len(dataset.card.factors))
    result = compute_with_model("counterfactual@probe", model, dataset, train, test, n_samples=64, probe_samples=500)
    assert result.scores["non_descendant_shift"] == pytest.approx(0.0, abs=1e-12)
    x = torch.from_numpy(test.images).permute(0, 3, 1, 2).float() / 255
    assert result.scores["reconstruction_mse"] > 1e-4  # the blur, sampled: near its mean over the test split
    assert result.scores["reconstruction_mse"] == pytest.approx(float(((model.blur(x) - x) ** 2).mean()), rel=0.2)
    assert result.scores["target_error"] > 0.1  # the ignored target shows here
    assert result.scores["counterfactual_mse"] > result.scores["reconstruction_mse"] / 2


def test_scores_are_percentiles_that_a_tiny_latent_scale_leaves_alone(pendulum, monkeypatch):
    dataset, train, test = pendulum
    scores = {}
    for scale in (1.0, 1e-3):
        model = LeakyOracle(dataset, (train, test), scale=scale)
        with_render_memory(model, dataset, monkeypatch)
        scores[scale] = compute_with_model("counterfactual@probe", model, dataset, train, test, n_samples=64,
                                           probe_samples=500).scores
    plain, tiny = scores[1.0], scores[1e-3]
    # Mirroring a uniform cause moves it by half the distribution on average: 0.5 in percentiles
    # (about 1.7 standard deviations).
    assert 0.2 < plain["non_descendant_shift"] <= 1.0
    assert 0.0 <= tiny["non_descendant_shift"] <= 1.0
    assert tiny["non_descendant_shift"] == pytest.approx(plain["non_descendant_shift"], abs=1e-6)
    assert tiny["target_error"] == pytest.approx(plain["target_error"], abs=1e-6)
    assert plain["reconstruction_mse"] == tiny["reconstruction_mse"] == 0.0


def test_scores_report_the_reconstruction_beside_the_counterfactual(pendulum):
    dataset, train, test = pendulum
    result = compute_with_model("counterfactual@probe", Blurry(4), dataset, train, test, n_samples=16,
                                probe_samples=100)
    keys = ("counterfactual_mse", "reconstruction_mse", "non_descendant_shift", "target_error", "copy_mse",
            "do_change")
    assert set(result.scores) == {*keys, *(f"{key}_{k}" for key in keys for k in range(4))}
    for key in keys:
        assert result.scores[key] == pytest.approx(np.mean([result.scores[f"{key}_{k}"] for k in range(4)]))
    assert result.info["version"] == "3"


def test_the_variant_is_version_3():
    assert registry.metric("counterfactual@probe").version == "3"


def test_model_metrics_and_latent_metrics_are_not_mixed_up(pendulum):
    dataset, train, test = pendulum
    with pytest.raises(ConfigError, match="evaluates a model; call compute_with_model"):
        compute("counterfactual@probe", train.factors, train.factors)
    with pytest.raises(ConfigError, match="does not evaluate a model"):
        compute_with_model("mig", None, dataset, train, test)
    with pytest.raises(ConfigError, match="option 'n_samples' must be an integer >= 2"):
        compute_with_model("counterfactual@probe", None, dataset, train, test, n_samples=1)
