"""Typed parameters: a frozen dataclass with documented defaults, validated at the edge.

Datasets (and later models and metrics) declare their parameters as a dataclass whose defaults are
the reference values. :func:`parse_params` turns user input (keyword arguments, YAML, CLI strings)
into that dataclass, rejecting unknown names, wrong types and values outside declared choices with
one message that names the owner, the key and what is accepted.
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from collections.abc import Mapping
from typing import Any, Literal, TypeVar, Union

from crlbench.core.errors import ConfigError, accepted, unknown_name

P = TypeVar("P")

# A field's metadata key: the value of an option added after cells were recorded that reproduces how they
# trained. At that value the option stays out of the cell hash (crlbench.suites.cell), so those cells keep
# their hashes; any other value, the default included, is hashed. Declare such a field with legacy_field().
LEGACY_VALUE = "legacy_value"


def legacy_field(default: Any, legacy: Any) -> Any:
    """A dataclass field defaulting to ``default`` that is left out of cell hashes while it equals ``legacy``."""
    return dataclasses.field(default=default, metadata={LEGACY_VALUE: legacy})


# A field's metadata key: the field says where something is, not what it is (a folder of published data), so it
# never enters a cell hash: the same data read from another folder keeps its cells. Declare it with location_field().
LOCATION = "location"


def location_field(default: Any) -> Any:
    """A dataclass field defaulting to ``default`` that is always left out of cell hashes (a path to data)."""
    return dataclasses.field(default=default, metadata={LOCATION: True})


def parse_params(params_type: type[P], values: Mapping[str, Any], owner: str) -> P:
    """Build ``params_type`` from ``values``, checking names, types and choices.

    ``owner`` says whose parameters these are in error messages (for example ``"dataset 'flow'"``).
    Range checks that need more than the type live in the dataclass's ``__post_init__``, which
    should raise :class:`ConfigError`.
    """
    fields, hints = _fields_and_hints(params_type)
    converted = {}
    for key, value in values.items():
        if not isinstance(key, str):
            raise ConfigError(f"{owner}: parameter names must be strings; got {key!r}")
        if key not in fields:
            raise unknown_name("parameter", key, fields, where=f"{owner}: ")
        converted[key] = _convert(value, hints[key], f"{owner}: parameter {key!r}")
    return params_type(**converted)


@functools.lru_cache(maxsize=None)
def _fields_and_hints(params_type: type) -> tuple[dict[str, dataclasses.Field], dict[str, Any]]:
    """A params dataclass's fields and resolved annotations, read once per class (``typing.get_type_hints``
    evaluates every annotation anew on each call: most of a 10,000-cell dry run once it was asked per cell)."""
    return {f.name: f for f in dataclasses.fields(params_type)}, typing.get_type_hints(params_type)


def require(condition: bool, owner: str, key: str, expected: str, value: Any) -> None:
    """Raise a :class:`ConfigError` unless ``condition`` holds (for ``__post_init__`` checks)."""
    if not condition:
        raise ConfigError(f"{owner}: parameter {key!r} must be {expected}; got {value!r}")


def require_counts(params: Any, owner: str, positive: tuple[str, ...]) -> None:
    """The checks every generator shares: ``positive`` parameters > 0 and ``seed`` >= 0."""
    for key in positive:
        require(getattr(params, key) > 0, owner, key, "a positive integer", getattr(params, key))
    require(params.seed >= 0, owner, "seed", "a non-negative integer", params.seed)


def _convert(value: Any, annotation: Any, where: str) -> Any:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{where} must be one of {accepted(args)}; got {value!r}")
        return value
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for option in (a for a in args if a is not type(None)):
            try:
                return _convert(value, option, where)
            except ConfigError:
                continue
        raise ConfigError(f"{where} must be {_type_name(annotation)}; got {value!r}")
    if annotation is bool:
        if isinstance(value, bool):
            return value
    elif annotation is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif annotation is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads 1e-3 (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
    elif annotation is str:
        if isinstance(value, str):
            return value
    else:
        return value
    raise ConfigError(f"{where} must be {_type_name(annotation)}; got {value!r}")


def _type_name(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    if origin is Literal:
        return "one of " + accepted(typing.get_args(annotation))
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(annotation))
    if annotation is type(None):
        return "null"
    return getattr(annotation, "__name__", str(annotation))
