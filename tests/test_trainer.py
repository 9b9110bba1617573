"""The shared trainer: seeded, resumable, with callbacks and divergence detection (beta-VAE as the model)."""

import pytest
import torch

from crlbench.core import registry
from crlbench.core.errors import ConfigError
from crlbench.training.train import Budget, TrainingDiverged, build_model, train


@pytest.fixture(scope="module")
def pendulum32(tmp_path_factory):
    return registry.dataset("pendulum", cache_dir=tmp_path_factory.mktemp("data"), size=32)


@pytest.fixture(scope="module")
def small(pendulum32):
    split = pendulum32.split("train")
    return pendulum32.card, split.images[:96], split.factors[:96]


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


def test_the_training_cpu_seconds_are_summed_across_resumes(small, tmp_path, monkeypatch):
    """Each run adds the process CPU it spends to what the checkpoint holds (a fake clock: 5 s per reading)."""
    clock = iter(range(0, 10 ** 6, 5))
    monkeypatch.setattr("crlbench.training.train.time.process_time", lambda: float(next(clock)))
    _, first = fit(small, epochs=1, checkpoint_dir=tmp_path)  # readings at the start and after epoch 1
    assert first.cpu_seconds == 5.0
    _, resumed = fit(small, epochs=3, checkpoint_dir=tmp_path)  # the start, then after epochs 2 and 3
    assert resumed.cpu_seconds == 5.0 + 10.0
    _, finished = fit(small, epochs=3, checkpoint_dir=tmp_path)  # nothing left to train: the stored sum
    assert finished.cpu_seconds == 15.0


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


def epoch_of(path):
    return torch.load(path, weights_only=True)["epoch"]


def test_each_save_keeps_the_previous_checkpoint(small, tmp_path):
    fit(small, epochs=1, checkpoint_dir=tmp_path)
    assert not (tmp_path / "last.pt.prev").exists()
    fit(small, epochs=3, checkpoint_dir=tmp_path)
    assert epoch_of(tmp_path / "last.pt") == 3 and epoch_of(tmp_path / "last.pt.prev") == 2
    assert not list(tmp_path.glob(".*"))


@pytest.mark.parametrize("damage", ["truncated", "empty", "not a checkpoint"])
def test_an_unreadable_checkpoint_falls_back_to_the_previous_one(small, tmp_path, caplog, damage):
    unbroken, _ = fit(small, epochs=3)
    fit(small, epochs=2, checkpoint_dir=tmp_path)  # last.pt at epoch 2, last.pt.prev at epoch 1
    checkpoint = tmp_path / "last.pt"
    data = checkpoint.read_bytes()
    if damage == "not a checkpoint":
        torch.save({"weights": torch.zeros(2)}, checkpoint)
    else:
        checkpoint.write_bytes(data[: len(data) // 2] if damage == "truncated" else b"")
    with caplog.at_level("WARNING", logger="crlbench.training.train"):
        resumed, history = fit(small, epochs=3, checkpoint_dir=tmp_path)
    assert f"checkpoint {checkpoint} is unreadable" in caplog.text
    assert len(history.notes) == 1 and "resumed from last.pt.prev at epoch 1" in history.notes[0]
    assert same_weights(unbroken, resumed) and history.steps == 9 and len(history.epochs) == 3
    assert epoch_of(checkpoint) == 3 and epoch_of(tmp_path / "last.pt.prev") == 2  # the bad file is gone


def test_unreadable_checkpoints_train_from_scratch_to_the_same_weights(small, tmp_path, caplog):
    unbroken, _ = fit(small, epochs=2)
    fit(small, epochs=2, checkpoint_dir=tmp_path)
    for name in ("last.pt", "last.pt.prev"):
        data = (tmp_path / name).read_bytes()
        (tmp_path / name).write_bytes(data[: len(data) // 3])
    with caplog.at_level("WARNING", logger="crlbench.training.train"):
        retrained, history = fit(small, epochs=2, checkpoint_dir=tmp_path)
    assert len(history.notes) == 2
    assert str(tmp_path / "last.pt") in history.notes[0] and str(tmp_path / "last.pt.prev") in history.notes[1]
    assert history.notes[-1].endswith("and trained from scratch") and "training from scratch" in caplog.text
    assert same_weights(unbroken, retrained) and history.steps == 6


def test_on_train_end_sees_seeded_training_rows_once_when_the_budget_is_reached(small, tmp_path, monkeypatch):
    from crlbench.training import train as train_module
    from crlbench.training.model import CausalModel

    seen = []
    monkeypatch.setattr(CausalModel, "on_train_end", lambda self, data: seen.append(data), raising=True)
    monkeypatch.setattr(train_module, "END_OF_TRAINING_ROWS", 40)
    fit(small, epochs=3)
    assert len(seen) == 1  # once, after the last of three epochs
    fit(small, epochs=1, checkpoint_dir=tmp_path)  # a one-epoch budget: called at its end
    assert len(seen) == 2
    seen.clear()
    fit(small, epochs=2, checkpoint_dir=tmp_path)  # resumed to a longer budget: called once, at its end
    fit(small, epochs=2, checkpoint_dir=tmp_path)  # the budget was reached before: nothing trains, nothing is called
    assert len(seen) == 1 and set(seen[0]) == {"images", "factors"} and seen[0]["images"].shape == (40, 3, 32, 32)
    fit(small, epochs=2)
    assert torch.equal(seen[0]["images"], seen[1]["images"])  # the same seeded rows
    fit(small, epochs=2, seed=1)
    assert not torch.equal(seen[0]["images"], seen[2]["images"])  # another seed, other rows


# --- the monitor: readings every epoch and every k steps, training unchanged ----------------------


@pytest.fixture(scope="module")
def validation(pendulum32):
    """The runner's monitor sample for a Pendulum cell evaluated on test: 64 generated rows."""
    from crlbench.suites.monitor import validation_sample

    return validation_sample(pendulum32, "test", pendulum32.split("train"), pendulum32.split("test"), rows=64)


def monitored_fit(small, validation, model="beta_vae", epochs=2, monitor=True, **kwargs):
    from crlbench.suites.monitor import ValidationMonitor

    card, images, factors = small
    network = build_model(model, card, seed=0)
    reader = ValidationMonitor(validation, "cpu", seed=0) if monitor else None
    history = train(network, images, factors, budget=Budget(epochs=epochs, batch_size=32), seed=0, progress=False,
                    monitor=reader, **kwargs)
    return network, history


@pytest.mark.parametrize("model", ["beta_vae", "icm_vae"])  # an unaligned and an aligned model
def test_the_validation_monitor_leaves_training_bit_identical(small, validation, model):
    plain, _ = monitored_fit(small, validation, model, monitor=False)
    monitored, history = monitored_fit(small, validation, model, monitor_every=2)
    assert same_weights(plain, monitored)
    assert [reading["step"] for reading in history.evaluations] == [2, 3, 4, 6]  # every 2 steps and every epoch end
    assert history.evaluations[0]["epoch"] == pytest.approx(2 / 3)
    scores = history.evaluations[-1]["scores"]
    assert set(scores) == {"dci@reg.disentanglement", "dci@reg.completeness", "mcc@pearson.mcc",
                           "heldout_reconstruction_mse"}
    assert 0 <= scores["dci@reg.disentanglement"] <= 1 and 0 <= scores["mcc@pearson.mcc"] <= 1
    assert history.epochs[-1]["mcc@pearson.mcc"] == scores["mcc@pearson.mcc"]  # an epoch end joins its record


def test_a_resumed_run_ends_with_the_readings_of_an_unbroken_one(small, validation, tmp_path):
    _, unbroken = monitored_fit(small, validation, epochs=3, monitor_every=2)
    monitored_fit(small, validation, epochs=1, monitor_every=2, checkpoint_dir=tmp_path)  # stopped after epoch 1
    _, resumed = monitored_fit(small, validation, epochs=3, monitor_every=2, checkpoint_dir=tmp_path)
    assert [reading["step"] for reading in resumed.evaluations] == [2, 3, 4, 6, 8, 9]
    assert resumed.evaluations == unbroken.evaluations


def test_a_bad_reading_cadence_is_refused(small):
    with pytest.raises(ConfigError, match="monitor_every must be a positive number of steps or None; got 0"):
        fit(small, monitor=lambda model: {}, monitor_every=0)
