"""The metric contract: a registered, versioned variant with declared needs, options and defaults.

A variant is a function ``fn(z_train, y_train, z_test, y_test, *, seed, **options) -> MetricResult``
on samples-first arrays (``z`` [N, codes], ``y`` [N, factors]) that have already been validated by
:func:`crlbench.metrics.compute`. It is registered with :func:`variant`, which records its version,
whether it needs a test split, whether its factors must be discrete, and its option defaults.

Each option has a type, checked when a suite or tune file is loaded (before any work): declared
with ``option_types`` (a type or a tuple of types; ``None`` for null), else inferred from the
default: ``bool``, ``int``, ``float`` (an integer is accepted too) or ``str``; a null default
accepts anything unless declared. ``factor_bins`` of a discrete-only variant is an integer or null.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from crlbench.core.errors import ConfigError
from crlbench.core.registry import register_metric


@dataclass
class MetricResult:
    """Scores (floats), matrices (numpy arrays, rows = codes, columns = factors) and notes.

    ``notes`` says what the variant did that the numbers alone do not show (codes dropped as
    constant, a convention for a degenerate case); ``info`` holds provenance added by ``compute``.
    """

    scores: dict[str, float]
    matrices: dict[str, np.ndarray] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class MetricVariant:
    """A registered metric variant: its function and what it declares about itself."""

    name: str
    version: str
    fn: Callable[..., MetricResult]
    needs_test: bool
    discrete_factors: bool  # factors must be integer labels (or be binned with ``factor_bins``)
    defaults: dict[str, Any]
    summary: str
    needs_model: bool = False  # evaluated with compute_with_model(model, dataset, train, test)
    declared_types: dict[str, tuple[type, ...]] = field(default_factory=dict)  # option -> accepted types

    @property
    def options(self) -> dict[str, Any]:
        """Every option the variant accepts and its default (``factor_bins`` of a discrete-only variant too)."""
        accepted = dict(self.defaults)
        if self.discrete_factors:
            accepted.setdefault("factor_bins", None)
        return accepted

    def option_types(self) -> dict[str, tuple[type, ...] | None]:
        """Each option's accepted types: declared, else inferred from its default (None: anything)."""
        types: dict[str, tuple[type, ...] | None] = {key: _inferred(value) for key, value in self.options.items()}
        if self.discrete_factors and "factor_bins" not in self.defaults:
            types["factor_bins"] = (int, type(None))
        types.update(self.declared_types)
        return types

    def check_options(self, options: dict[str, Any], where: str) -> None:
        """Raise :class:`ConfigError` ``<where>.<option> must be <type>; got <value>`` for a value of the
        wrong type; ``where`` reads like ``suite.yaml: key 'metrics[0].options``, without the closing quote."""
        types = self.option_types()
        for key, value in options.items():
            accepted = types.get(key)
            if accepted is None or _is_instance(value, accepted):
                continue
            hint = ""
            if isinstance(value, str) and (float in accepted or int in accepted) and _number_text(value):
                hint = " (YAML reads a number such as 1e-3 without a decimal point as text: write 1.0e-3)"
            raise ConfigError(f"{where}.{key}' must be {describe_types(accepted)} (metric {self.name!r}, "
                              f"default {self.options[key]!r}); got {value!r}{hint}")

    @property
    def needs(self) -> tuple[str, ...]:
        """What the variant consumes."""
        if self.needs_model:
            return ("model", "dataset", "train split", "test split")
        return ("latents", "factors", "test split") if self.needs_test else ("latents", "factors")

    def __call__(self, *args: Any, **kwargs: Any) -> MetricResult:
        return self.fn(*args, **kwargs)


def variant(
    name: str,
    version: str = "1",
    *,
    needs_test: bool = False,
    discrete_factors: bool = False,
    needs_model: bool = False,
    option_types: dict[str, type | None | tuple[type | None, ...]] | None = None,
    **defaults: Any,
) -> Callable[[Callable[..., MetricResult]], MetricVariant]:
    """Register ``fn`` as the metric variant ``name`` with its option ``defaults``; ``option_types``
    declares the type of an option whose default does not tell it (``{"c": float}`` for a default of
    15 that may be 15.5, ``{"n_jobs": (int, None)}``)."""
    declared = {key: _as_types(value) for key, value in (option_types or {}).items()}

    def decorator(fn: Callable[..., MetricResult]) -> MetricVariant:
        summary = (fn.__doc__ or "").strip().splitlines()[0] if fn.__doc__ else ""
        unknown = set(declared) - set(defaults) - ({"factor_bins"} if discrete_factors else set())
        if unknown:
            raise TypeError(f"metric {name!r}: option_types names options without a default: {sorted(unknown)}")
        spec = MetricVariant(name, version, fn, needs_test, discrete_factors, dict(defaults), summary, needs_model,
                             declared)
        register_metric(name)(spec)
        return spec

    return decorator


TYPE_NAMES = {bool: "true or false", int: "an integer", float: "a number", str: "a string", type(None): "null"}


def _inferred(default: Any) -> tuple[type, ...] | None:
    """The types a default stands for: a float default accepts integers too; null accepts anything."""
    if default is None:
        return None
    if isinstance(default, bool):
        return (bool,)
    if isinstance(default, int):
        return (int,)
    if isinstance(default, float):
        return (float, int)
    if isinstance(default, str):
        return (str,)
    if isinstance(default, (list, tuple)):
        return (list, tuple)
    return (type(default),)


def _as_types(value: Any) -> tuple[type, ...]:
    values = value if isinstance(value, tuple) else (value,)
    types = tuple(type(None) if item is None else item for item in values)
    if float in types and int not in types:
        types += (int,)
    return types


def _is_instance(value: Any, types: tuple[type, ...]) -> bool:
    if isinstance(value, bool) and bool not in types:  # True is an int to Python, not to a config
        return False
    if isinstance(value, (np.integer, np.floating)):
        value = value.item()
    return isinstance(value, types)


def describe_types(types: tuple[type, ...]) -> str:
    """``an integer``, ``a number or null``, ... (an integer alongside a number goes without saying)."""
    shown = [t for t in types if not (t is int and float in types)]
    return " or ".join(TYPE_NAMES.get(t, t.__name__) for t in shown)


def _number_text(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def histogram_discretize(values: np.ndarray, num_bins: int) -> np.ndarray:
    """dlib's discretiser, per column: the bin id (1..num_bins) in an equal-width histogram of that column."""
    binned = np.zeros(values.shape, dtype=np.int64)
    for j in range(values.shape[1]):
        edges = np.histogram(values[:, j], num_bins)[1][:-1]
        binned[:, j] = np.digitize(values[:, j], edges)
    return binned


def mutual_information_matrix(codes: np.ndarray, factors: np.ndarray) -> np.ndarray:
    """Discrete mutual information in nats, [codes x factors] (dlib's ``discrete_mutual_info``)."""
    from sklearn.metrics import mutual_info_score

    return np.array(
        [[mutual_info_score(factors[:, k], codes[:, j]) for k in range(factors.shape[1])] for j in range(codes.shape[1])]
    )


def discrete_entropy(factors: np.ndarray) -> np.ndarray:
    """Entropy in nats of each discrete factor column."""
    from sklearn.metrics import mutual_info_score

    return np.array([mutual_info_score(factors[:, k], factors[:, k]) for k in range(factors.shape[1])])


def top_two_gap(matrix: np.ndarray) -> np.ndarray:
    """Per column, the largest entry minus the second largest (0 stands in for a missing second)."""
    ordered = np.sort(matrix, axis=0)[::-1]
    second = ordered[1] if len(ordered) > 1 else np.zeros(matrix.shape[1])
    return ordered[0] - second
