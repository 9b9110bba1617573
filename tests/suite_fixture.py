"""A tiny suite for the runner tests: Pendulum at 32x32, a few steps, cheap metrics."""

import sys
from pathlib import Path

import pytest
import yaml

from crlbench.core import registry

PLUGINS = Path(__file__).parent / "plugins"

TINY = {
    "name": "tiny",
    "seeds": [0],
    "budget": {"steps": 3, "batch_size": 16},
    "datasets": [{"name": "pendulum", "params": {"size": 32}}],
    "models": [{"name": "beta_vae"}, {"name": "icm_vae"}],
    "metrics": ["dci@reg", "mcc@pearson"],
    "evaluation": {"n_train": 60, "n_test": 40, "interventions": 2},
}


def write_suite(directory: Path, name: str = "tiny.yaml", **changes) -> Path:
    """TINY with ``changes`` (top-level keys replaced), written as YAML in ``directory``."""
    path = Path(directory) / name
    path.write_text(yaml.safe_dump({**TINY, **changes}, sort_keys=False))
    return path


@pytest.fixture
def plugin_path(monkeypatch):
    """The test plugins importable; the names they register are dropped afterwards, so that other tests see
    only the built-in datasets, models and metrics."""
    monkeypatch.syspath_prepend(str(PLUGINS))
    for kind in registry.KINDS:
        names = registry.registry(kind)
        monkeypatch.setattr(names, "_objects", dict(names._objects))
        monkeypatch.setattr(names, "_registered_by", dict(names._registered_by))
    loaded = set(sys.modules)
    yield
    for module in set(sys.modules) - loaded:  # imported (and registered) again by the next test that needs them
        if module.startswith("crl_plugin_"):
            del sys.modules[module]
