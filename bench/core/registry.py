"""Registries of models, datasets and metrics, looked up by name and loaded on first use.

Three ways put a name in a registry:

* a decorator in the module that defines it (``@register_dataset("pendulum")``), which runs when the
  module is imported;
* an entry point in one of the groups ``crlbench.models``, ``crlbench.datasets`` and
  ``crlbench.metrics`` (``name = "package.module:Object"``). crlbench declares its own models,
  datasets and metrics this way too, so listing names reads package metadata and imports nothing
  (no torch);
* a plugin module named in a config's ``plugins:`` list, imported by :func:`load_plugins`.

An unknown name fails with the known names and the closest match. A renamed name (:data:`RENAMED`)
keeps working as an alias: looking it up warns (``FutureWarning``) and gives the new name's object;
it is accepted wherever a name is but is not listed by :meth:`Registry.entries` or
:meth:`Registry.names`.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import importlib.util
import logging
import sys
import warnings
from pathlib import Path
from types import SimpleNamespace
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from importlib import metadata
from typing import Any, TypeVar

from crlbench.core.errors import ConfigError, CrlbenchError, unknown_name

log = logging.getLogger(__name__)

T = TypeVar("T")

KINDS = ("model", "dataset", "metric")

# Old names that still resolve, per kind: old name -> (new name, why it was renamed).
RENAMED: dict[str, dict[str, tuple[str, str]]] = {
    "metric": {
        "irs@paper": ("irs@suter", "it is Suter et al.'s IRS with diff quantile 1.0, not the ICM-VAE "
                                   "paper's IRS (which is irs@icmvae)"),
    },
}


@dataclass(frozen=True)
class Entry:
    """One listed name: where it comes from (``module:attr`` or a module name) and its provider."""

    name: str
    target: str
    provider: str


class Registry:
    """Names of one kind mapped to objects, filled by decorators and entry points."""

    def __init__(self, kind: str, group: str) -> None:
        self.kind = kind
        self.group = group
        self._objects: dict[str, Any] = {}
        self._registered_by: dict[str, str] = {}
        self._aliases: dict[str, tuple[str, str]] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator registering an object under ``name``; re-registering the same object is a no-op."""

        def decorator(obj: T) -> T:
            self.add(name, obj)
            return obj

        return decorator

    def add(self, name: str, obj: Any) -> None:
        existing = self._objects.get(name)
        if existing is not None and existing is not obj and _qualname(existing) != _qualname(obj):
            raise CrlbenchError(
                f"{self.kind} {name!r} is registered twice: by {_qualname(existing)} "
                f"and by {_qualname(obj)}"
            )
        self._objects[name] = obj
        self._registered_by[name] = _qualname(obj)

    def rename(self, old: str, new: str, reason: str = "") -> None:
        """Keep ``old`` working as an alias of ``new``: :meth:`resolve` maps it and warns."""
        if old == new:
            raise CrlbenchError(f"{self.kind} {old!r} cannot be renamed to itself")
        self._aliases[old] = (new, reason)

    def aliases(self) -> dict[str, str]:
        """Renamed names still accepted: old name -> new name."""
        return {old: new for old, (new, _) in sorted(self._aliases.items())}

    def resolve(self, name: str) -> str:
        """``name``, or the new name of a renamed one (with a ``FutureWarning`` saying so)."""
        if not isinstance(name, str) or name not in self._aliases:
            return name
        new, reason = self._aliases[name]
        why = f" because {reason}" if reason else ""
        warnings.warn(
            f"{self.kind} {name!r} was renamed {new!r}{why}; use {new!r} (the old name will be removed)",
            FutureWarning,
            stacklevel=3,
        )
        return new

    def __contains__(self, name: object) -> bool:
        """Whether ``name`` is known, as a listed name or as an alias of a renamed one."""
        return name in self._aliases or name in self.names()

    def entries(self) -> list[Entry]:
        """Every known name, from entry points and registrations, without importing anything.

        Aliases of renamed names are left out (see :meth:`aliases`), also when a stale install
        still declares an entry point under the old name.
        """
        listed = {ep.name: Entry(ep.name, ep.value, _provider(ep)) for ep in self._entry_points()}
        for name, target in self._registered_by.items():
            listed.setdefault(name, Entry(name, target, "registered at run time"))
        return [listed[name] for name in sorted(listed) if name not in self._aliases]

    def names(self) -> list[str]:
        """The listed names (aliases of renamed names are accepted by :meth:`get` but not listed)."""
        return [entry.name for entry in self.entries()]

    def get(self, name: str) -> Any:
        """The object registered as ``name``, importing its entry point if needed.

        A renamed ``name`` warns (``FutureWarning``) and gives the object of its new name.
        """
        name = self.resolve(name)
        if name in self._objects:
            return self._objects[name]
        for entry_point in self._entry_points():
            if entry_point.name == name:
                self.add(name, _load_entry_point(entry_point, self.kind))
                return self._objects[name]
        raise unknown_name(self.kind, name, self.names())

    def _entry_points(self) -> Iterable[metadata.EntryPoint]:
        return _group_entry_points(self.group, tuple(sys.path))


@functools.lru_cache(maxsize=32)
def _group_entry_points(group: str, search_path: tuple[str, ...]) -> tuple[metadata.EntryPoint, ...]:
    """The entry points of ``group``, the first of each name (an editable install can list a distribution
    twice). Reading them scans every installed distribution's metadata (about 30 ms), so the scan is kept per
    ``sys.path`` (``search_path``): planning a 10,000-cell suite asked it once per cell
    (benchmarks/dry_run_speed.py). A distribution installed into a folder already on ``sys.path`` while the
    process runs is seen after :func:`refresh_entry_points`."""
    seen, found = set(), []
    for entry_point in metadata.entry_points(group=group):
        if entry_point.name not in seen:
            seen.add(entry_point.name)
            found.append(entry_point)
    return tuple(found)


def refresh_entry_points() -> None:
    """Forget the entry points read so far (after installing a distribution into this process's path)."""
    _group_entry_points.cache_clear()


_REGISTRIES = {kind: Registry(kind, f"crlbench.{kind}s") for kind in KINDS}
for _kind, _renamed in RENAMED.items():
    for _old, (_new, _reason) in _renamed.items():
        _REGISTRIES[_kind].rename(_old, _new, _reason)


def registry(kind: str) -> Registry:
    """The registry of ``kind`` (one of ``model``, ``dataset``, ``metric``)."""
    if kind not in _REGISTRIES:
        raise unknown_name("registry", kind, _REGISTRIES)
    return _REGISTRIES[kind]


def register_model(name: str) -> Callable[[T], T]:
    """Register a model class (a ``torch.nn.Module`` built from a dataset card and parameters)."""
    return _REGISTRIES["model"].register(name)


def register_dataset(name: str) -> Callable[[T], T]:
    """Register a dataset class (see :class:`crlbench.datasets.base.SCMDataset`)."""
    return _REGISTRIES["dataset"].register(name)


def register_metric(name: str) -> Callable[[T], T]:
    """Register a metric under its versioned name, such as ``dci@reg``."""
    return _REGISTRIES["metric"].register(name)


def model(name: str, *args: Any, **kwargs: Any) -> Any:
    """Build the model registered as ``name``."""
    return _REGISTRIES["model"].get(name)(*args, **kwargs)


def dataset(name: str, **params: Any) -> Any:
    """Build the dataset registered as ``name`` with ``params`` (validated by the dataset)."""
    return _REGISTRIES["dataset"].get(name)(**params)


def metric(name: str) -> Any:
    """The metric registered as ``name``."""
    return _REGISTRIES["metric"].get(name)


def model_declaration(name: str) -> Any:
    """What a cell's hash needs of model ``name`` (its ``Config``, ``version`` and ``needs_pairs``), without
    importing torch where it can: the model class when it is loaded already; else, for a model declared by an
    entry point ``package.module:Class``, the light module ``package.module_config`` when its ``MODELS`` maps
    ``Class`` to ``(Config, version)`` or ``(Config, version, {"needs_pairs": True})`` (crlbench's own models
    do); else the model class, imported.
    """
    models = _REGISTRIES["model"]
    name = models.resolve(name)
    if name not in models._objects:
        entry_point = _model_entry_point(name)
        if entry_point is not None:
            module, _, attr = entry_point.value.partition(":")
            light = _find_module(module.strip() + "_config")
            declared = getattr(importlib.import_module(light), "MODELS", {}) if light else {}
            if attr.strip() in declared:
                config, version, *attributes = declared[attr.strip()]  # and optionally {"needs_pairs": True}
                return SimpleNamespace(Config=config, version=str(version), **(attributes[0] if attributes else {}))
    return models.get(name)


def model_source(name: str) -> dict[str, str] | None:
    """``{"module", "file", "sha256"}`` of the file that defines model ``name``, read without importing it
    when it is declared by an entry point and not loaded yet (as
    :func:`crlbench.training.model.source_fingerprint` of the class gives); None otherwise."""
    models = _REGISTRIES["model"]
    name = models.resolve(name)
    if name not in models._objects:
        entry_point = _model_entry_point(name)
        if entry_point is not None:
            module = entry_point.value.partition(":")[0].strip()
            loaded = sys.modules.get(module)
            path = getattr(loaded, "__file__", None) if loaded is not None else _module_file(module)
            if path:
                try:
                    digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()
                except OSError:
                    return None
                return {"module": module, "file": str(Path(path).resolve()), "sha256": digest}
    return None  # loaded, or not declared by an entry point: the caller fingerprints the class


def _model_entry_point(name: str) -> metadata.EntryPoint | None:
    return next((ep for ep in _REGISTRIES["model"]._entry_points() if ep.name == name), None)


def _find_module(module: str) -> str | None:
    """``module`` when it exists (found without importing it; its parent packages are imported)."""
    try:
        return module if importlib.util.find_spec(module) is not None else None
    except (ImportError, ValueError):
        return None


def _module_file(module: str) -> str | None:
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    return spec.origin if spec is not None and spec.has_location else None


def load_plugins(modules: Iterable[str], source: str = "plugins") -> None:
    """Import plugin modules so that their decorators register their names.

    ``source`` names where the list came from (a config file and key) for the error message.
    """
    for module in modules:
        if not isinstance(module, str) or not module:
            raise ConfigError(f"{source}: each plugin must be a module name; got {module!r}")
        try:
            importlib.import_module(module)
        except Exception as error:  # a plugin may fail in any way while it imports
            raise ConfigError(
                f"{source}: plugin module {module!r} could not be imported ({type(error).__name__}: "
                f"{error}); plugins must be importable module names such as 'my_package.my_model'"
            ) from error
        log.debug("loaded plugin %s", module)


def _load_entry_point(entry_point: metadata.EntryPoint, kind: str) -> Any:
    try:
        return entry_point.load()
    except Exception as error:
        raise CrlbenchError(
            f"{kind} {entry_point.name!r} ({entry_point.value}, entry point group "
            f"{entry_point.group!r}) failed to load: {type(error).__name__}: {error}"
        ) from error


def _provider(entry_point: metadata.EntryPoint) -> str:
    dist = getattr(entry_point, "dist", None)
    return f"{dist.name} {dist.version}" if dist is not None else "entry point"


def _qualname(obj: Any) -> str:
    return f"{getattr(obj, '__module__', '?')}:{getattr(obj, '__qualname__', repr(obj))}"
