"""Registry lookups, listing without heavy imports, and plugins from configs and entry points."""

import subprocess
import sys
import textwrap

import pytest

from crlbench.core import registry
from crlbench.core.config import load_dataset_config
from crlbench.core.errors import ConfigError, CrlbenchError, UnknownNameError

TOY_PLUGIN = '''
import numpy as np
from dataclasses import dataclass
from crlbench.core.registry import register_dataset
from crlbench.datasets.base import Factor, SCMDataset, grid_split
from crlbench.datasets.raster import Canvas


@dataclass(frozen=True)
class ToyParams:
    size: int = 8
    seed: int = 0


@register_dataset("{name}")
class Toy(SCMDataset):
    name = "{name}"
    version = "0"
    Params = ToyParams
    original_order = ("cause", "effect")
    permutation = (0, 1)
    adjacency = ((0, 1), (0, 0))

    def factor_definitions(self):
        return (Factor("cause", "continuous", 0, 1), Factor("effect", "continuous", 0, 2))

    def mechanism(self, k, factors, noise):
        return noise[:, 0] if k == 0 else 2 * factors[:, 0]

    def sample_splits(self):
        noise = np.zeros((10, 2))
        noise[:, 0] = np.linspace(0, 1, 10)
        return grid_split(np.arange(10) >= 8, {{"factors": self.solve(noise), "noise": noise}})

    def render_batch(self, factors, noise, size):
        canvas = Canvas(len(factors), size, size, factors[:, :1] * np.ones(3))
        return canvas.to_uint8()
'''


def write_plugin(folder, module, name):
    (folder / f"{module}.py").write_text(TOY_PLUGIN.format(name=name))


def test_builtin_datasets_are_listed_and_built_by_name(tmp_path):
    assert {"pendulum", "flow", "causal_circuit", "chamber", "chamber_f3"} <= set(registry.registry("dataset").names())
    dataset = registry.dataset("causal_circuit", cache_dir=tmp_path, n_train=5, n_val=2, n_test=2)
    assert dataset.card.factor_names == ("arm", "blue", "green", "red")


def test_unknown_name_lists_known_names_and_the_closest(tmp_path):
    with pytest.raises(UnknownNameError, match=r"unknown dataset 'pendulm'; known: causal_circuit, chamber, chamber_f3, flow, pendulum \(did you mean 'pendulum'\?\)"):
        registry.dataset("pendulm", cache_dir=tmp_path)


def test_unknown_parameter_names_the_dataset_and_accepted_parameters(tmp_path):
    with pytest.raises(ConfigError, match=r"dataset 'pendulum': unknown parameter 'sise'; known: .*size.*did you mean 'size'"):
        registry.dataset("pendulum", cache_dir=tmp_path, sise=32)


@pytest.mark.parametrize(
    "name, params, message",
    [
        ("pendulum", {"size": 0}, "'size' must be a positive integer; got 0"),
        ("causal_circuit", {"n_train": -3}, "'n_train' must be a positive integer; got -3"),
        ("flow", {"split_rule": "odd"}, "'split_rule' must be one of reference, legacy, random; got 'odd'"),
        ("flow", {"size": "big"}, "'size' must be int; got 'big'"),
        ("pendulum", {"test_fraction": 1.5}, r"'test_fraction' must be in \(0, 1\); got 1.5"),
    ],
)
def test_bad_parameter_values_are_refused_with_the_accepted_values(tmp_path, name, params, message):
    with pytest.raises(ConfigError, match=message):
        registry.dataset(name, cache_dir=tmp_path, **params)


def test_unknown_split_is_refused(pendulum):
    with pytest.raises(ConfigError, match="unknown split 'val'; known: test, train"):
        pendulum.split("val")


def test_config_plugins_register_a_dataset_without_editing_crlbench(tmp_path, monkeypatch):
    write_plugin(tmp_path, "toy_plugin_module", "toy_from_config")
    monkeypatch.syspath_prepend(str(tmp_path))
    config = tmp_path / "toy.yaml"
    config.write_text("name: toy_from_config\nplugins: [toy_plugin_module]\nparams: {size: 4}\n")
    dataset = load_dataset_config(config).build(cache_dir=tmp_path / "data")
    assert dataset.split("test").images.shape == (2, 4, 4, 3)
    assert "toy_from_config" in registry.registry("dataset").names()


def test_config_errors_name_the_file_and_key(tmp_path):
    config = tmp_path / "bad.yaml"
    config.write_text("name: pendulum\nparamz: {}\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: unknown key 'paramz'; known: name, params, plugins"):
        load_dataset_config(config)
    config.write_text("name: pendulum\nplugins: [no_such_module_anywhere]\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: key 'plugins': plugin module 'no_such_module_anywhere'"):
        load_dataset_config(config)
    config.write_text("name: pendulumm\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: key 'name': unknown dataset 'pendulumm'"):
        load_dataset_config(config)


def test_entry_point_plugin_of_another_distribution_is_found(tmp_path):
    write_plugin(tmp_path, "toy_entry_module", "toy_from_entry_point")
    dist_info = tmp_path / "toy_plugin-1.0.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: toy-plugin\nVersion: 1.0\n")
    (dist_info / "entry_points.txt").write_text("[crlbench.datasets]\ntoy_from_entry_point = toy_entry_module:Toy\n")
    script = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {str(tmp_path)!r})
        from crlbench.core import registry
        entry = [e for e in registry.registry("dataset").entries() if e.name == "toy_from_entry_point"][0]
        assert entry.provider == "toy-plugin 1.0", entry
        assert "toy_entry_module" not in sys.modules  # listing imports nothing
        dataset = registry.dataset("toy_from_entry_point", cache_dir={str(tmp_path / "data")!r})
        print(dataset.card.factor_names)
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "('cause', 'effect')" in result.stdout


def test_listing_imports_no_dataset_module_and_no_torch():
    script = (
        "import sys; from crlbench.core import registry\n"
        "names = [registry.registry(k).names() for k in registry.KINDS]\n"
        "assert 'pendulum' in names[1]\n"
        "print(sorted(m for m in sys.modules\n"
        "             if m.split('.')[0] in ('torch', 'scipy') or m.startswith('crlbench.datasets')))"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_registering_a_different_object_under_a_taken_name_fails():
    taken = registry.registry("dataset")
    taken.get("pendulum")
    with pytest.raises(CrlbenchError, match="registered twice"):
        registry.register_dataset("pendulum")(type("Impostor", (), {}))
