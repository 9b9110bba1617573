"""Checkpoint compaction: a finished cell keeps its model weights, not its optimiser state or last.pt.prev."""

import pytest
import torch

from crlbench.core import registry
from crlbench.training.train import CHECKPOINT, KEEP_CHECKPOINTS, PREVIOUS, Budget, build_model, compact_checkpoint, train


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    dataset = registry.dataset("pendulum", cache_dir=tmp_path_factory.mktemp("data"), size=32)
    split = dataset.split("train")
    return dataset.card, split.images[:96], split.factors[:96]


def fit(small, epochs, **kwargs):
    card, images, factors = small
    model = build_model("beta_vae", card, seed=0)
    history = train(model, images, factors, budget=Budget(epochs=epochs, batch_size=32), seed=0, progress=False, **kwargs)
    return model, history


def same_weights(a, b):
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_compaction_drops_the_optimiser_state_and_the_previous_checkpoint(small, tmp_path):
    trained, _ = fit(small, epochs=2, checkpoint_dir=tmp_path)
    last, previous = tmp_path / CHECKPOINT, tmp_path / (CHECKPOINT + PREVIOUS)
    assert previous.exists()
    full = last.stat().st_size
    freed = compact_checkpoint(tmp_path)
    assert not previous.exists() and last.stat().st_size < full / 2  # Adam's two moments were most of it
    assert freed > full
    state = torch.load(last, weights_only=True)
    assert state["optimizers"] == {} and state["compact"] is True and state["history"]["steps"] == 6
    assert compact_checkpoint(tmp_path) == 0  # nothing left to drop

    # Resuming the finished run (budget reached) trains nothing and ends with the same weights.
    resumed, history = fit(small, epochs=2, checkpoint_dir=tmp_path)
    assert same_weights(trained, resumed) and history.steps == 6 and len(history.epochs) == 2
    assert not history.notes

    # Training further goes on from the weights with fresh optimisers, and says so.
    _, longer = fit(small, epochs=3, checkpoint_dir=tmp_path)
    assert longer.steps == 9 and any("compacted" in note for note in longer.notes)
    state = torch.load(last, weights_only=True)
    assert state["optimizers"] and not state.get("compact")  # a full checkpoint again


def test_an_unreadable_or_missing_checkpoint_is_left_alone(tmp_path):
    assert compact_checkpoint(tmp_path) == 0
    (tmp_path / CHECKPOINT).write_bytes(b"not a checkpoint")
    assert compact_checkpoint(tmp_path) == 0
    assert (tmp_path / CHECKPOINT).read_bytes() == b"not a checkpoint"


def test_a_suite_compacts_finished_cells_unless_asked_to_keep_them(tmp_path, data_dir, monkeypatch):
    from crlbench.suites.suite import plan, run_suite
    from crlbench.suites.suite_config import suite_from_dict
    from suite_fixture import TINY

    workdir = tmp_path / "work"
    workdir.mkdir()
    (workdir / "data").symlink_to(data_dir, target_is_directory=True)
    data = {**TINY, "models": [{"name": "beta_vae"}], "metrics": ["mcc@pearson"]}
    config = suite_from_dict({**data, "budget": {"epochs": 2, "batch_size": 32}}, where="test")
    monkeypatch.delenv(KEEP_CHECKPOINTS, raising=False)
    summary = run_suite(config, workdir, progress=False)
    assert summary.ok == 1
    steps = summary.records[0]["history"]["steps"]
    checkpoint = workdir / "cells" / summary.records[0]["hash"] / "checkpoint"
    assert not (checkpoint / (CHECKPOINT + PREVIOUS)).exists()
    assert torch.load(checkpoint / CHECKPOINT, weights_only=True)["optimizers"] == {}

    # A metric added later is computed from the compacted checkpoint, without training.
    more = suite_from_dict({**data, "budget": {"epochs": 2, "batch_size": 32}, "metrics": ["mcc@pearson", "dci@reg"]},
                           where="test")
    assert [p.state for p in plan(more, workdir)] == ["stale"]
    summary = run_suite(more, workdir, progress=False)
    assert summary.ok == 1 and summary.records[0]["history"]["steps"] == steps
    record = summary.records[0]
    assert any(key.startswith("dci@reg.") for key in record["scores"]) and not record.get("notes")

    # --keep-checkpoints ($CRLBENCH_KEEP_CHECKPOINTS) keeps everything.
    monkeypatch.setenv(KEEP_CHECKPOINTS, "1")
    kept = suite_from_dict({**data, "seeds": [1], "budget": {"epochs": 2, "batch_size": 32}}, where="test")
    summary = run_suite(kept, workdir, progress=False)
    checkpoint = workdir / "cells" / summary.records[0]["hash"] / "checkpoint"
    assert (checkpoint / (CHECKPOINT + PREVIOUS)).exists()
    assert torch.load(checkpoint / CHECKPOINT, weights_only=True)["optimizers"]
