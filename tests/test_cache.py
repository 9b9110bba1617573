"""The data cache: keyed by content, atomic, verified on load, regenerated when corrupted."""

import json

import numpy as np
import pytest

from bench import registry
from datasets.cache import CacheCorruptedWarning

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
    keys = {build(tmp_path).cache_key, build(tmp_path, seed=1).cache_key, build(tmp_path, size=17).cache_key}
    assert len(keys) == 3


@pytest.mark.parametrize("damage", ["truncate", "flip_byte", "drop_manifest", "bad_manifest"])
def test_damaged_entry_is_reported_and_regenerated(tmp_path, damage):
    original = build(tmp_path).split("train").images.copy()
    arrays, manifest = build(tmp_path).cache.paths(build(tmp_path).cache_key)
    if damage == "truncate":
        arrays.write_bytes(arrays.read_bytes()[: arrays.stat().st_size // 2])
    elif damage == "flip_byte":
        data = bytearray(arrays.read_bytes())
        data[len(data) // 2] ^= 0xFF
        arrays.write_bytes(bytes(data))
    elif damage == "drop_manifest":
        manifest.unlink()
    else:
        manifest.write_text("{not json")
    with pytest.warns(CacheCorruptedWarning, match="generating the data again"):
        images = build(tmp_path).split("train").images
    np.testing.assert_array_equal(images, original)
    assert json.loads(manifest.read_text())["sha256"]


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
