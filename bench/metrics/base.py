"""The metric contract: a registered, versioned variant with declared needs, options and defaults.

A variant is a function ``fn(z_train, y_train, z_test, y_test, *, seed, **options) -> MetricResult``
on samples-first arrays (``z`` [N, codes], ``y`` [N, factors]) that have already been validated by
:func:`bench.metrics.compute`. It is registered with :func:`variant`, which records its version,
whether it needs a test split, whether its factors must be discrete, and its option defaults.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bench.registry import register_metric


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
    **defaults: Any,
) -> Callable[[Callable[..., MetricResult]], MetricVariant]:
    """Register ``fn`` as the metric variant ``name`` with its option ``defaults``."""

    def decorator(fn: Callable[..., MetricResult]) -> MetricVariant:
        summary = (fn.__doc__ or "").strip().splitlines()[0] if fn.__doc__ else ""
        spec = MetricVariant(name, version, fn, needs_test, discrete_factors, dict(defaults), summary, needs_model)
        register_metric(name)(spec)
        return spec

    return decorator


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
