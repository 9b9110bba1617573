"""Corrupt files cost only what they hold; killed writes leave no temporaries; a full disk is named.

One tiny suite (Pendulum 32x32, three steps, beta-VAE and ICM-VAE) is run once; each test damages a
copy of its work directory.
"""

import dataclasses
import errno
import json
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from crlbench.cli import main
from crlbench.core import files
from crlbench.core.errors import DiskFullError, UnsafeCheckpointError
from crlbench.core.files import atomic_write, sweep_temporaries
from crlbench.suites.cell import MetricSpec
from crlbench.suites.results import UnreadableRecordWarning, cell_dir, load_records, read_result, write_json
from crlbench.suites.suite import plan, run_suite
from crlbench.suites.suite_config import load_suite
from crlbench.training.train import Budget, build_model, train
from suite_fixture import write_suite


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """The tiny suite, run once: (suite file, work directory)."""
    directory = tmp_path_factory.mktemp("finished")
    suite = write_suite(directory)
    summary = run_suite(load_suite(suite), directory / "work", progress=False)
    assert summary.ok == 2
    return suite, directory / "work"


@pytest.fixture
def work(finished, tmp_path):
    """A copy of the finished suite's work directory: (config, workdir, the first cell's folder, its record)."""
    suite, workdir = finished
    shutil.copytree(workdir, tmp_path / "work")
    config = load_suite(suite)
    directory = cell_dir(tmp_path / "work", config.cells()[0].hash)
    return config, tmp_path / "work", directory, read_result(directory)


def truncate(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def added_metric(config, tmp_path):
    """The suite with one more metric (its cells become stale: evaluated again, not trained)."""
    return load_suite(write_suite(tmp_path, name="more.yaml", metrics=["dci@reg", "mcc@pearson", "r2@linear"]))


# --- a result record that cannot be read -----------------------------------------------------------------


def test_a_truncated_record_is_named_and_planned_as_pending(work):
    config, workdir, directory, _ = work
    truncate(directory / "result.json")
    with pytest.warns(UnreadableRecordWarning, match=f"{directory / 'result.json'}: unreadable result record "
                                                     r"\(JSONDecodeError"):
        states = [p.state for p in plan(config, workdir)]
    assert states == ["pending", "done"]


def test_dry_run_lists_a_truncated_record_as_pending(work, capsys):
    config, workdir, directory, _ = work
    truncate(directory / "result.json")
    with pytest.warns(UnreadableRecordWarning, match="result.json: unreadable"):
        status = main(["suite", str(config.source), "--dry-run", "--workdir", str(workdir)])
    assert status == 0
    assert f"{config.cells()[0].hash}  pending" in capsys.readouterr().out


@pytest.mark.parametrize("damage", [b"", b"[1, 2]", b'{"schema": 1}', b"\xff\xfe not text"])
def test_a_record_that_is_not_a_record_is_unreadable_too(work, damage):
    _, _, directory, _ = work
    (directory / "result.json").write_bytes(damage)
    with pytest.warns(UnreadableRecordWarning, match=str(directory / "result.json")):
        assert read_result(directory) is None


def test_the_suite_runs_a_cell_with_a_truncated_record_again_and_keeps_its_scores(work):
    config, workdir, directory, before = work
    truncate(directory / "result.json")
    (directory / "checkpoint" / ".last.pt.abc123.tmp").write_bytes(b"half a checkpoint")  # a killed write
    with pytest.warns(UnreadableRecordWarning):
        summary = run_suite(config, workdir, progress=False)
    assert (summary.ok, summary.cached, summary.failed) == (1, 1, 0)
    after = read_result(directory)
    assert after["status"] == "ok" and after["scores"] == before["scores"]
    assert not list(directory.rglob("*.tmp"))


def test_the_report_skips_a_truncated_record_with_a_warning(work, tmp_path, capsys):
    config, workdir, directory, _ = work
    truncate(directory / "result.json")
    with pytest.warns(UnreadableRecordWarning, match=str(directory / "result.json")):
        records = load_records(workdir)
    assert [r["hash"] for r in records] == [config.cells()[1].hash]
    with pytest.warns(UnreadableRecordWarning, match=str(directory / "result.json")):
        assert main(["report", str(workdir / "cells"), "--out", str(tmp_path / "report")]) == 0
    assert "(1 cells)" in capsys.readouterr().out
    with pytest.warns(UnreadableRecordWarning):
        assert main(["report", str(config.source), "--workdir", str(workdir), "--out", str(tmp_path / "r2")]) == 0
    assert "1 of 2 cells of tiny have no result yet" in capsys.readouterr().err


def test_a_work_directory_counts_each_cell_once_beside_mlflows_copies_of_its_records(work, tmp_path, capsys):
    config, workdir, directory, _ = work
    for copy in ("mlartifacts/crlbench-tiny/0a1b/artifacts", "mlruns/1/0a1b/artifacts"):  # SQLite and file stores
        (workdir / copy).mkdir(parents=True)
        shutil.copy(directory / "result.json", workdir / copy / "result.json")
    assert sorted(r["hash"] for r in load_records(workdir)) == sorted(cell.hash for cell in config.cells())
    assert main(["report", str(workdir), "--out", str(tmp_path / "report"), "--no-figures"]) == 0
    assert "(2 cells)" in capsys.readouterr().out


# --- a finished cell's stored artefacts that cannot be read ---------------------------------------------


def test_corrupt_latents_are_encoded_again_and_the_old_scores_kept(work, tmp_path, caplog):
    config, workdir, directory, before = work
    truncate(directory / "latents.npz")
    checkpoint = (directory / "checkpoint" / "last.pt").stat().st_mtime_ns
    with caplog.at_level(logging.WARNING, logger="crlbench.suites.runner"):
        summary = run_suite(added_metric(config, tmp_path), workdir, progress=False)
    assert (summary.ok, summary.failed) == (2, 0)
    after = read_result(directory)
    assert after["status"] == "ok"
    assert {key: after["scores"][key] for key in before["scores"]} == before["scores"]
    assert "r2@linear.r2" in after["scores"]
    named = f"{directory / 'latents.npz'} was unreadable"
    assert any(named in note for note in after["notes"]) and named in caplog.text
    assert (directory / "checkpoint" / "last.pt").stat().st_mtime_ns == checkpoint  # not trained again
    with np.load(directory / "latents.npz") as latents:
        assert latents["z_train"].shape[0] == 60


def test_a_corrupt_metric_result_is_computed_again(work, caplog):
    config, workdir, directory, before = work
    (directory / "metrics" / "dci@reg.json").write_text('{"scores": {"disent')
    truncate(directory / "metrics" / "mcc@pearson.json", keep=0)
    (directory / "result.json").unlink()
    with caplog.at_level(logging.WARNING, logger="crlbench.suites.runner"):
        assert run_suite(config, workdir, progress=False).ok == 1
    after = read_result(directory)
    assert after["status"] == "ok" and after["scores"] == before["scores"]
    for name in ("dci@reg.json", "mcc@pearson.json"):
        assert any(f"{directory / 'metrics' / name} was unreadable" in note for note in after["notes"])
    assert json.loads((directory / "metrics" / "dci@reg.json").read_text())["scores"]


def test_corrupt_metric_matrices_and_intervention_grid_are_computed_again(work, tmp_path):
    config, workdir, directory, before = work
    truncate(directory / "metrics" / "dci@reg.npz")
    truncate(directory / "interventions.npz")
    assert run_suite(added_metric(config, tmp_path), workdir, progress=False).ok == 2
    after = read_result(directory)
    assert {key: after["scores"][key] for key in before["scores"]} == before["scores"]
    assert len(after["notes"]) == 2 and "dci@reg.npz was unreadable" in after["notes"][0]
    with np.load(directory / "metrics" / "dci@reg.npz") as matrices:
        assert matrices["importance"].shape == (4, 4)
    with np.load(directory / "interventions.npz") as grid:
        assert grid["truth"].shape[:2] == (4, 2)


def test_a_corrupt_checkpoint_and_corrupt_latents_retrain_the_cell(work, tmp_path):
    config, workdir, directory, before = work
    checkpoint = directory / "checkpoint" / "last.pt"
    truncate(checkpoint)
    truncate(directory / "latents.npz")
    summary = run_suite(added_metric(config, tmp_path), workdir, progress=False)
    assert (summary.ok, summary.failed) == (2, 0)
    after = read_result(directory)
    assert after["status"] == "ok" and after["history"] == before["history"]  # trained again, to the same weights
    assert {key: after["scores"][key] for key in before["scores"]} == pytest.approx(before["scores"])
    assert "r2@linear.r2" in after["scores"]
    assert any(f"checkpoint {checkpoint} is unreadable" in note and "trained from scratch" in note
               for note in after["notes"])
    assert any("latents.npz was unreadable" in note for note in after["notes"])
    torch.load(checkpoint, weights_only=True)


# --- checkpoints: unfinished cells, crafted files --------------------------------------------------------


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    from crlbench.core import registry

    dataset = registry.dataset("pendulum", cache_dir=tmp_path_factory.mktemp("data"), size=32)
    split = dataset.split("train")
    return dataset.card, split.images[:64], split.factors[:64]


def fit(small, epochs, checkpoint_dir=None):
    card, images, factors = small
    model = build_model("beta_vae", card, seed=0)
    history = train(model, images, factors, budget=Budget(epochs=epochs, batch_size=32), seed=0, progress=False,
                    checkpoint_dir=checkpoint_dir)
    return model, history


def same_weights(a, b):
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


class Payload:
    """Unpickling this creates ``marker``: what a crafted checkpoint could do."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


def test_a_crafted_checkpoint_is_refused_before_it_runs_anything(small, tmp_path):
    checkpoint = tmp_path / "checkpoint" / "last.pt"
    checkpoint.parent.mkdir()
    marker = tmp_path / "pwned"
    torch.save({"model": Payload(marker), "epoch": 1}, checkpoint)
    with pytest.raises(UnsafeCheckpointError, match=f"checkpoint {checkpoint} holds objects other than tensors"):
        fit(small, epochs=2, checkpoint_dir=checkpoint.parent)
    assert not marker.exists()
    assert checkpoint.exists()  # left for the user to inspect, not trained over
    torch.load(checkpoint, weights_only=False)  # the payload is real: loading it unsafely runs it
    assert marker.exists()


def test_no_checkpoint_is_loaded_with_pickle_allowed():
    root = Path(__file__).parent.parent
    sources = [path for folder in ("bench", "datasets") for path in (root / folder).rglob("*.py")]
    assert sources and not [path for path in sources if "weights_only=False" in path.read_text()]


def test_a_crafted_checkpoint_fails_its_cell_naming_the_file(work, tmp_path):
    config, workdir, directory, _ = work
    marker = tmp_path / "pwned"
    torch.save({"x": Payload(marker)}, directory / "checkpoint" / "last.pt")
    (directory / "result.json").unlink()
    summary = run_suite(config, workdir, progress=False)
    assert summary.failed == 1 and not marker.exists()
    assert str(directory / "checkpoint" / "last.pt") in read_result(directory)["error"]["message"]


def test_a_crafted_checkpoint_in_a_finished_cell_costs_only_the_metric_added_later(work, tmp_path):
    """Issue 24: a crafted last.pt in a finished cell, then a metric added to the suite, turned the ok record
    into a failed one without scores. The checkpoint is still never loaded; the scores stay, the new metric
    fails with the refusal, and the record is partial (``--retry-failed`` tries again)."""
    config, workdir, directory, before = work
    marker = tmp_path / "pwned"
    torch.save({"x": Payload(marker)}, directory / "checkpoint" / "last.pt")
    more = dataclasses.replace(config, metrics=(*config.metrics, MetricSpec("irs@dlib", {})))
    summary = run_suite(more, workdir, progress=False)
    record = read_result(directory)
    assert not marker.exists() and summary.failed == 0 and summary.partial == 1
    assert record["status"] == "ok" and record["partial"] is True
    assert record["scores"] == before["scores"]  # nothing lost
    assert list(record["metric_errors"]) == ["irs@dlib"]
    assert "holds objects other than tensors" in record["metric_errors"]["irs@dlib"]["message"]
    assert [spec["name"] for spec in record["cell"]["metrics"]][-1] == "irs@dlib"


# --- temporaries of killed writes ------------------------------------------------------------------------


def aged(path: Path, content: bytes | None = None, seconds: float = 3600) -> Path:
    """``path`` (written with ``content`` if given) last modified ``seconds`` ago."""
    if content is not None:
        path.write_bytes(content)
    then = time.time() - seconds
    os.utime(path, (then, then))
    return path


def test_sweep_removes_abandoned_temporaries_only(tmp_path):
    fcntl = pytest.importorskip("fcntl")
    abandoned = aged(tmp_path / ".result.json.x1.tmp", b"{")
    young = tmp_path / ".latents.npz.x2.tmp"
    young.write_bytes(b"PK")
    held = aged(tmp_path / ".last.pt.x3.tmp", b"")
    ordinary = aged(tmp_path / "result.json.tmp", b"")  # not hidden: not one of ours
    with open(held, "rb") as writer:
        fcntl.flock(writer.fileno(), fcntl.LOCK_EX)  # a live writer
        removed = sweep_temporaries(tmp_path)
    assert removed == [abandoned]
    assert young.exists() and held.exists() and ordinary.exists()
    assert sweep_temporaries(tmp_path, min_age_s=0) == sorted([held, young])


def test_atomic_write_sweeps_the_abandoned_temporaries_of_its_target(tmp_path):
    own = aged(tmp_path / ".history.json.killed.tmp", b"[")
    other = aged(tmp_path / ".result.json.killed.tmp", b"{")
    write_json(tmp_path / "history.json", {"epochs": []})
    assert not own.exists() and other.exists()
    assert json.loads((tmp_path / "history.json").read_text()) == {"epochs": []}


def test_a_writer_holds_its_temporary_against_sweeps(tmp_path):
    seen = []

    def write(handle):
        handle.write(b"data")
        temporary = Path(handle.name)
        aged(temporary)
        seen.append(sweep_temporaries(tmp_path, min_age_s=0))  # another process sweeping mid-write
        assert temporary.exists()

    atomic_write(tmp_path / "file.bin", write)
    assert seen == [[]] and (tmp_path / "file.bin").read_bytes() == b"data"


# --- a full disk -----------------------------------------------------------------------------------------


def filling(monkeypatch, room: int):
    """Temporary files of atomic_write that take ``room`` bytes, then fail with ENOSPC."""
    real = tempfile.NamedTemporaryFile

    def limited(*args, **kwargs):
        handle = real(*args, **kwargs)
        write, left = handle.file.write, [room]

        def write_until_full(data):
            if len(data) > left[0]:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            left[0] -= len(data)
            return write(data)

        handle.write = write_until_full
        return handle

    monkeypatch.setattr(files.tempfile, "NamedTemporaryFile", limited)


def test_a_full_disk_is_named_and_keeps_the_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "result.json"
    write_json(path, {"status": "ok"})
    filling(monkeypatch, room=0)
    with pytest.raises(DiskFullError, match=f"disk full while writing {path}") as raised:
        write_json(path, {"status": "failed", "padding": "x" * 1000})
    assert raised.value.path == path
    assert json.loads(path.read_text()) == {"status": "ok"}
    assert [p.name for p in tmp_path.iterdir()] == ["result.json"]


def test_a_torch_save_failing_midway_is_a_full_disk_and_keeps_the_checkpoint(small, tmp_path, monkeypatch):
    fit(small, epochs=1, checkpoint_dir=tmp_path)
    checkpoint = tmp_path / "last.pt"
    before = checkpoint.read_bytes()
    filling(monkeypatch, room=2000)  # torch.save gets some way, then the disk is full
    with pytest.raises(DiskFullError, match=f"disk full while writing {checkpoint}") as raised:
        fit(small, epochs=2, checkpoint_dir=tmp_path)
    assert "inline_container" in str(raised.value.__cause__) or isinstance(raised.value.__cause__, OSError)
    assert checkpoint.read_bytes() == before
    assert not list(tmp_path.glob(".*.tmp"))
    monkeypatch.undo()
    resumed, _ = fit(small, epochs=2, checkpoint_dir=tmp_path)
    assert same_weights(resumed, fit(small, epochs=2)[0])


def test_a_full_disk_stops_the_suite_and_keeps_the_finished_record(work, tmp_path, monkeypatch):
    config, workdir, directory, _ = work
    before = (directory / "result.json").read_bytes()
    filling(monkeypatch, room=0)
    with pytest.raises(DiskFullError, match="disk full while writing"):
        run_suite(added_metric(config, tmp_path), workdir, progress=False)
    assert (directory / "result.json").read_bytes() == before
    assert not list(directory.rglob("*.tmp"))
