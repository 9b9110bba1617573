"""The shared trainer: seeded, resumable, with callbacks and divergence detection (beta-VAE as the model)."""

import pytest
import torch

from bench import registry
from bench.errors import ConfigError
from bench.train import Budget, TrainingDiverged, build_model, train


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    dataset = registry.dataset("pendulum", cache_dir=tmp_path_factory.mktemp("data"), size=32)
    split = dataset.split("train")
    return dataset.card, split.images[:96], split.factors[:96]


def fit(small, seed=0, epochs=2, **kwargs):
    card, images, factors = small
    model = build_model("beta_vae", card, seed=seed)
    history = train(model, images, factors, budget=Budget(epochs=epochs, batch_size=32), seed=seed, progress=False, **kwargs)
    return model, history


def same_weights(a, b):
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_same_seed_gives_the_same_weights_and_another_seed_does_not(small):
    first, history = fit(small)
    assert same_weights(first, fit(small)[0])
    assert not same_weights(first, fit(small, seed=1)[0])
    assert history.steps == 6 and len(history.epochs) == 2
    assert set(history.epochs[0]) == {"loss", "reconstruction", "kl"}


def test_resuming_from_the_latest_checkpoint_ends_where_an_unbroken_run_ends(small, tmp_path):
    unbroken, _ = fit(small, epochs=3)
    fit(small, epochs=1, checkpoint_dir=tmp_path)  # a run stopped after its first epoch
    resumed, history = fit(small, epochs=3, checkpoint_dir=tmp_path)
    assert same_weights(unbroken, resumed)
    assert len(history.epochs) == 3 and history.steps == 9


def test_a_step_budget_stops_mid_epoch(small):
    card, images, factors = small
    model = build_model("beta_vae", card, seed=0)
    history = train(model, images, factors, budget=Budget(steps=4, batch_size=32), seed=0, progress=False)
    assert history.steps == 4 and len(history.epochs) == 2


def test_callbacks_see_every_epoch_and_can_stop_training(small):
    seen = []

    class Pruned(Exception):
        pass

    def prune_after_two(epoch, record):
        seen.append((epoch, record["loss"]))
        if epoch == 2:
            raise Pruned

    with pytest.raises(Pruned):
        fit(small, epochs=5, callbacks=[prune_after_two])
    assert [epoch for epoch, _ in seen] == [1, 2]


def test_a_nan_loss_stops_with_the_step_and_term(small, monkeypatch):
    card, images, factors = small
    model = build_model("beta_vae", card, seed=0)
    real_step = model.training_step

    def poisoned(batch, step):
        losses = real_step(batch, step)
        if step == 2:
            losses["kl"] = losses["kl"] * float("nan")
        return losses

    monkeypatch.setattr(model, "training_step", poisoned)
    with pytest.raises(TrainingDiverged, match="training diverged at step 2: loss term 'kl' is nan") as error:
        train(model, images, factors, budget=Budget(epochs=2, batch_size=32), seed=0, progress=False)
    assert error.value.step == 2 and error.value.term == "kl"


def test_bad_budgets_are_refused():
    with pytest.raises(ConfigError, match="give 'epochs' or 'steps'"):
        Budget()
    with pytest.raises(ConfigError, match="'batch_size' must be a positive integer; got 0"):
        Budget(epochs=1, batch_size=0)
