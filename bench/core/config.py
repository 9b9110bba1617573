"""Configuration files, loaded into typed objects and validated before any work starts.

Errors name the file, the key path and the accepted values. Suite and tuning configs build on
:func:`read_yaml` and :func:`check_keys`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from crlbench.core import registry
from crlbench.core.errors import ConfigError, unknown_name


def read_yaml(path: str | Path) -> dict[str, Any]:
    """A YAML mapping from ``path``, with a clear error if the file is missing or malformed."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except (yaml.YAMLError, UnicodeError) as error:
        raise ConfigError(f"{path}: not valid YAML text: {error}") from None
    except OSError as error:
        raise ConfigError(f"{path}: cannot be read: {error.strerror or error}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of keys to values")
    return data


def check_keys(data: dict[str, Any], allowed: tuple[str, ...], where: str, required: tuple[str, ...] = ()) -> None:
    """Reject keys outside ``allowed`` and missing ``required`` keys, naming ``where``."""
    for key in data:
        if key not in allowed:
            raise unknown_name("key", key, allowed, where=f"{where}: ")
    for key in required:
        if key not in data:
            raise ConfigError(f"{where}: missing required key {key!r}")


@dataclass(frozen=True)
class DatasetConfig:
    """A dataset by registered name with its parameters, plus plugin modules to import first."""

    name: str
    params: dict[str, Any] = field(default_factory=dict)
    plugins: tuple[str, ...] = ()
    source: str | None = None  # the file it was read from, named in errors

    def build(self, **overrides: Any) -> Any:
        """The dataset object (plugins imported, parameters validated by the dataset)."""
        registry.load_plugins(self.plugins)
        try:
            return registry.dataset(self.name, **{**self.params, **overrides})
        except ConfigError as error:
            if self.source is None:
                raise
            raise ConfigError(f"{self.source}: key 'params': {error}") from None


def load_dataset_config(path: str | Path) -> DatasetConfig:
    """Read ``name``, ``params`` and ``plugins`` from a dataset config file."""
    data = read_yaml(path)
    check_keys(data, ("name", "params", "plugins"), str(path), required=("name",))
    name, params, plugins = data["name"], data.get("params") or {}, data.get("plugins") or []
    if not isinstance(name, str):
        raise ConfigError(f"{path}: key 'name' must be a dataset name; got {name!r}")
    if not isinstance(params, dict):
        raise ConfigError(f"{path}: key 'params' must be a mapping of parameter names to values")
    if not isinstance(plugins, list) or not all(isinstance(p, str) for p in plugins):
        raise ConfigError(f"{path}: key 'plugins' must be a list of module names")
    registry.load_plugins(plugins, source=f"{path}: key 'plugins'")
    if name not in registry.registry("dataset").names():
        raise unknown_name("dataset", name, registry.registry("dataset").names(), where=f"{path}: key 'name': ")
    return DatasetConfig(name, dict(params), tuple(plugins), source=str(path))
