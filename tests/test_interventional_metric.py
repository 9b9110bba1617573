"""counterfactual@probe: an oracle that knows the SCM scores perfectly; one that ignores descendants does not."""

import numpy as np
import pytest
import torch

from bench import registry
from bench.errors import ConfigError
from bench.metrics import compute, compute_with_model


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
    assert result.scores["non_descendant_shift"] < 1e-3
    assert result.scores["target_error"] < 1e-2


def test_ignoring_descendants_is_caught_by_the_pixel_error(pendulum, monkeypatch):
    dataset, train, test = pendulum
    oracle = Oracle(dataset, (train, test), propagate=False)
    with_render_memory(oracle, dataset, monkeypatch)
    result = compute_with_model("counterfactual@probe", oracle, dataset, train, test, n_samples=64, probe_samples=500)
    assert result.scores["counterfactual_mse_0"] > 1e-3  # the shadow does not follow the pendulum
    assert result.scores["counterfactual_mse_2"] == 0.0  # shadow length has no descendants


def test_model_metrics_and_latent_metrics_are_not_mixed_up(pendulum):
    dataset, train, test = pendulum
    with pytest.raises(ConfigError, match="evaluates a model; call compute_with_model"):
        compute("counterfactual@probe", train.factors, train.factors)
    with pytest.raises(ConfigError, match="does not evaluate a model"):
        compute_with_model("mig", None, dataset, train, test)
    with pytest.raises(ConfigError, match="option 'n_samples' must be an integer >= 2"):
        compute_with_model("counterfactual@probe", None, dataset, train, test, n_samples=1)
