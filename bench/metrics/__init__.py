"""Disentanglement and causal metrics as named, versioned variants.

:func:`compute` is the one entry point: it validates the arrays and options once, runs the variant
and records provenance. Variants live one family per module (``dci``, ``irs``, ``mig``, ``sap``,
``modularity``, ``identifiability``, ``mic``, ``interventional``, ``graph``) and are registered in the
metric registry.

May import: :mod:`crlbench.core`, numpy, scipy, scikit-learn and numba; torch only in ``interventional``
(it calls a model's ``intervene``) and ``graph`` (it hands a model a training batch).
"""

from __future__ import annotations

import platform
import time
from typing import Any

import numpy as np

from crlbench.core import registry
from crlbench.core.errors import ConfigError, unknown_name
from crlbench.metrics.base import MetricResult, MetricVariant

__all__ = ["MetricResult", "MetricVariant", "compute", "compute_with_model", "library_versions"]

BIN_OPTIONS = ("code_bins", "factor_bins")


def compute(
    variant: str,
    z_train: Any,
    y_train: Any,
    z_test: Any = None,
    y_test: Any = None,
    *,
    seed: int = 0,
    **options: Any,
) -> MetricResult:
    """Evaluate the metric ``variant`` on latents ``z`` [N, codes] and factors ``y`` [N, factors].

    Options override the variant's defaults (``crlbench.core.registry.metric(variant).defaults``); a
    discrete-only variant also accepts ``factor_bins`` to bin continuous factors with equal-width
    bins fitted on the train split.
    """
    spec = registry.metric(variant)
    if not isinstance(spec, MetricVariant):
        raise ConfigError(f"metric {variant!r} is not a metric variant; register it with crlbench.metrics.base.variant")
    where = f"metric {variant!r}"
    if spec.needs_model:
        raise ConfigError(f"{where}: evaluates a model; call compute_with_model(variant, model, dataset, train, test)")
    z_train, y_train = _matrix(z_train, "z_train", where), _matrix(y_train, "y_train", where)
    _same_length(z_train, y_train, "z_train", "y_train", where)
    if z_test is None and y_test is None:
        if spec.needs_test:
            raise ConfigError(f"{where}: needs a test split; pass z_test and y_test")
    else:
        if z_test is None or y_test is None:
            raise ConfigError(f"{where}: pass both z_test and y_test, or neither")
        z_test, y_test = _matrix(z_test, "z_test", where), _matrix(y_test, "y_test", where)
        _same_length(z_test, y_test, "z_test", "y_test", where)
        if z_test.shape[1] != z_train.shape[1] or y_test.shape[1] != y_train.shape[1]:
            raise ConfigError(
                f"{where}: train and test must have the same columns; got z {z_train.shape[1]} vs "
                f"{z_test.shape[1]} codes, y {y_train.shape[1]} vs {y_test.shape[1]} factors"
            )
    accepted = dict(spec.defaults)
    if spec.discrete_factors:
        accepted.setdefault("factor_bins", None)
    for key in options:
        if key not in accepted:
            raise unknown_name("option", key, accepted, where=f"{where}: ")
    chosen = {**accepted, **options}
    _check_bins(chosen, len(z_train), where)
    recorded = dict(chosen)
    notes: list[str] = []
    if spec.discrete_factors:
        y_train, y_test = _discrete_factors(y_train, y_test, chosen.pop("factor_bins"), where, notes)
    start = time.perf_counter()
    result = spec.fn(z_train, y_train, z_test, y_test, seed=seed, **chosen)
    result.notes[:0] = notes
    result.info.update(
        variant=spec.name,
        version=spec.version,
        options=recorded,
        seed=seed,
        n_train=len(z_train),
        n_test=None if z_test is None else len(z_test),
        seconds=time.perf_counter() - start,
        libraries=library_versions(),
    )
    return result


def compute_with_model(variant: str, model: Any, dataset: Any, train: Any, test: Any, *, seed: int = 0,
                       **options: Any) -> MetricResult:
    """Evaluate a model-based variant (e.g. ``counterfactual@probe``) on a dataset's train and test splits."""
    spec = registry.metric(variant)
    where = f"metric {variant!r}"
    if not isinstance(spec, MetricVariant) or not spec.needs_model:
        raise ConfigError(f"{where}: does not evaluate a model; call compute(variant, z_train, y_train, ...)")
    for key in options:
        if key not in spec.defaults:
            raise unknown_name("option", key, spec.defaults, where=f"{where}: ")
    chosen = {**spec.defaults, **options}
    for key in ("n_samples", "probe_samples"):
        if key in chosen and (not isinstance(chosen[key], int) or chosen[key] < 2):
            raise ConfigError(f"{where}: option {key!r} must be an integer >= 2; got {chosen[key]!r}")
    start = time.perf_counter()
    model.eval()
    result = spec.fn(model, dataset, train, test, seed=seed, **chosen)
    result.info.update(variant=spec.name, version=spec.version, options=chosen, seed=seed,
                       n_train=len(train), n_test=len(test), seconds=time.perf_counter() - start,
                       libraries=library_versions())
    return result


def library_versions() -> dict[str, str]:
    """Versions that change metric values (scikit-learn especially: dlib issue #33)."""
    import scipy
    import sklearn

    return {"python": platform.python_version(), "numpy": np.__version__, "scipy": scipy.__version__,
            "scikit-learn": sklearn.__version__}


def _matrix(values: Any, name: str, where: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 2:
        raise ConfigError(f"{where}: argument {name} must be a 2-D array [samples, columns]; got shape {array.shape}")
    if len(array) < 2:
        raise ConfigError(f"{where}: argument {name} needs at least 2 samples; got {len(array)}")
    if not np.all(np.isfinite(array)):
        bad = np.argwhere(~np.isfinite(array))[0]
        raise ConfigError(f"{where}: argument {name} holds NaN or infinite values (first at row {bad[0]}, column {bad[1]})")
    return array


def _same_length(z: np.ndarray, y: np.ndarray, z_name: str, y_name: str, where: str) -> None:
    if len(z) != len(y):
        raise ConfigError(f"{where}: {z_name} and {y_name} must have the same number of samples; got {len(z)} and {len(y)}")


def _check_bins(options: dict[str, Any], samples: int, where: str) -> None:
    for key in BIN_OPTIONS:
        bins = options.get(key)
        if bins is None:
            continue
        if not isinstance(bins, (int, np.integer)) or bins < 2:
            raise ConfigError(f"{where}: option {key!r} must be an integer >= 2; got {bins!r}")
        if samples < 2 * bins:
            raise ConfigError(
                f"{where}: option {key!r}={bins} leaves fewer than two samples per bin for {samples} samples; "
                f"use at most {samples // 2} bins"
            )


def _discrete_factors(y_train, y_test, bins, where, notes):
    """Integer labels pass; continuous factors are binned when ``factor_bins`` is given, else refused."""
    if bins is None:
        for name, y in (("y_train", y_train), ("y_test", y_test)):
            if y is not None and not np.all(y == np.round(y)):
                column = int(np.flatnonzero(np.any(y != np.round(y), axis=0))[0])
                raise ConfigError(
                    f"{where}: argument {name} column {column} is continuous (non-integer values) and this "
                    "variant needs discrete labels; pass factor_bins=N to bin it into N equal-width bins"
                )
        return y_train, y_test
    edges = [np.histogram(y_train[:, k], bins)[1][:-1] for k in range(y_train.shape[1])]
    binned = lambda y: None if y is None else np.stack(  # noqa: E731
        [np.digitize(y[:, k], edges[k]) for k in range(y.shape[1])], axis=1
    ).astype(np.float64)
    notes.append(f"factors binned into {bins} equal-width bins fitted on the train split")
    return binned(y_train), binned(y_test)
