"""The data cache: keyed by content, atomic, verified on load, regenerated when corrupted."""

import json
import os
import stat

import numpy as np
import pytest

from crlbench.core import registry
from crlbench.datasets.cache import CacheCorruptedWarning

SMALL = {"n_train": 20, "n_val": 4, "n_test": 4, "size": 16}


def build(tmp_path, **params):
    return registry.dataset("causal_circuit", cache_dir=tmp_path, **{**SMALL, **params})


def test_second_build_loads_the_same_arrays_from_the_cache(tmp_path):
    first = build(tmp_path).split("train")
    dataset = build(tmp_path)
    assert dataset.cache_path().exists()
    dataset.generate = None  # loading must not render again
    np.testing.assert_array_equal(dataset.split("train").images, first.images)


def test_key_changes_with_every_parameter(tmp_path):
    changes = [{}, {"seed": 1}, {"size": 17}, {"n_train": 21}, {"n_val": 5}, {"n_test": 5}]
    assert len({build(tmp_path, **change).cache_key for change in changes}) == len(changes)
    flows = [registry.dataset("flow", cache_dir=tmp_path, split_rule=rule).cache_key for rule in ("reference", "legacy")]
    assert flows[0] != flows[1]


@pytest.mark.parametrize("damage", ["truncate", "flip_byte", "bad_manifest"])
def test_damaged_entry_is_reported_and_regenerated(tmp_path, damage):
    original = build(tmp_path).split("train").images.copy()
    arrays, manifest = build(tmp_path).cache.paths(build(tmp_path).cache_key)
    if damage == "truncate":
        arrays.write_bytes(arrays.read_bytes()[: arrays.stat().st_size // 2])
    elif damage == "flip_byte":
        data = bytearray(arrays.read_bytes())
        data[len(data) // 2] ^= 0xFF
        arrays.write_bytes(bytes(data))
    else:
        manifest.write_text("{not json")
    with pytest.warns(CacheCorruptedWarning, match="generating the data again"):
        images = build(tmp_path).split("train").images
    np.testing.assert_array_equal(images, original)
    assert json.loads(manifest.read_text())["sha256"]


def test_arrays_without_a_manifest_are_an_unfinished_write_and_regenerated(tmp_path, recwarn):
    original = build(tmp_path).split("train").images.copy()
    dataset = build(tmp_path)
    dataset.cache.paths(dataset.cache_key)[1].unlink()
    np.testing.assert_array_equal(build(tmp_path).split("train").images, original)
    assert not [w for w in recwarn if issubclass(w.category, CacheCorruptedWarning)]


def test_a_reader_removing_an_unfinished_entry_cannot_break_the_writer(tmp_path, monkeypatch):
    dataset = build(tmp_path)
    real_replace = os.replace

    def replace_then_interfere(source, target):
        real_replace(source, target)
        if str(target).endswith(".npz"):  # another process looks in between the two renames
            assert build(tmp_path).cache.load(dataset.cache_key) is None

    monkeypatch.setattr(os, "replace", replace_then_interfere)
    dataset.split("train")
    monkeypatch.undo()
    assert build(tmp_path).cache.load(dataset.cache_key) is not None


def test_cache_files_follow_the_umask(tmp_path):
    dataset = build(tmp_path)
    dataset.split("train")
    old = os.umask(0o022)
    os.umask(old)
    for path in dataset.cache.paths(dataset.cache_key):
        assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~old


def test_failed_write_leaves_nothing_behind(tmp_path, monkeypatch):
    dataset = build(tmp_path)

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "savez_compressed", interrupted)
    with pytest.raises(KeyboardInterrupt):
        dataset.split("train")
    assert list(tmp_path.iterdir()) == []


def test_manifest_records_the_card(tmp_path):
    dataset = build(tmp_path)
    dataset.split("train")
    manifest = json.loads(dataset.cache.paths(dataset.cache_key)[1].read_text())
    assert manifest["card"]["factors"][0]["name"] == "arm"
    assert manifest["card"]["params"]["n_train"] == 20


def test_temporaries_of_killed_writes_are_swept_when_no_writer_holds_them(tmp_path):
    dataset = build(tmp_path)
    dataset.split("train")
    abandoned = tmp_path / f".{dataset.cache_key}.npz.k1ll3d.tmp"  # a generation killed while writing
    young = tmp_path / ".other-v1-0123.npz.w0rk1ng.tmp"  # another process may be writing it right now
    for path in (abandoned, young):
        path.write_bytes(b"PK\x03\x04 half an archive")
    old = os.stat(abandoned).st_mtime - 600
    os.utime(abandoned, (old, old))
    dataset = build(tmp_path)
    dataset.split("train")
    assert not abandoned.exists() and young.exists()
