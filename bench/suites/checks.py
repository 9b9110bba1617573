"""Degeneracy checks of a cell (docs/protocol.md, "Degeneracy checks"): what the runner reads from a trained
model and its cell for each check, and the record's ``checks``. The rules, thresholds and score patterns are
:mod:`crlbench.core.degeneracy` (shared with the reports, which derive two of them for records that predate
the checks); they are re-exported here. A reference row (a model with ``reference_for``) gets every check null.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np
import torch

from crlbench.core.degeneracy import (  # noqa: F401 (the rules, re-exported)
    ACTIVE_CODE_NATS, CHECK_NAMES, CONSTANT_CODE_SPREAD, COUNTERFACTUAL_RATIO, INERT_DO_FRACTION, INTERVENTIONAL,
    POSTERIOR_INFORMATION_NATS, RECONSTRUCTION_RATIO, check, code_spread, constant_codes, counterfactual_vs_copy,
    inert_do, invalidated, not_better, not_finite, posterior_collapse, reconstruction_vs_mean_image)
from crlbench.core.references import RECONSTRUCTION
from crlbench.suites.representation import as_model_images
from crlbench.training.model import model_device

log = logging.getLogger(__name__)

KL_BATCH = 256


# --- what the checks read from a cell ------------------------------------------------------------


def mean_image_error(train_images: np.ndarray, images: np.ndarray) -> float:
    """Mean squared pixel error (pixels in [0, 1]) of the training split's mean image as the reconstruction
    of ``images`` (both uint8 [N, H, W, C])."""
    mean_image = train_images.mean(axis=0, dtype=np.float64) / 255.0
    return float(np.mean((images.astype(np.float64) / 255.0 - mean_image) ** 2))


def posterior_kl(model, images: np.ndarray, batch_size: int = KL_BATCH) -> np.ndarray | None:
    """``model.posterior_kl_per_code`` averaged over ``images`` (uint8 [N, H, W, C]) in batches, or None when
    the model gives none."""
    method = getattr(model, "posterior_kl_per_code", None)
    if method is None or len(images) == 0:
        return None
    device = model_device(model)
    total, count = None, 0
    with torch.no_grad():
        for start in range(0, len(images), batch_size):
            batch = images[start:start + batch_size]
            kl = method(as_model_images(batch).to(device))
            if kl is None:
                return None
            kl = kl.detach().double().cpu().numpy() * len(batch)
            total, count = (kl if total is None else total + kl), count + len(batch)
    return total / count


def metric_missing(name: str, suite_metrics: Iterable[str], metric_errors: Mapping[str, Any],
                   not_applicable: Mapping[str, str]) -> str:
    """Why metric ``name``'s scores are absent from a record."""
    if name in metric_errors:
        error = metric_errors[name]
        return f"{name} failed ({error.get('type', 'Error')}: {error.get('message', '')})"
    if name in not_applicable:
        return f"{name} does not apply: {not_applicable[name]}"
    if name not in set(suite_metrics):
        return f"{name} is not in the suite"
    return f"{name}'s result has no such score (computed by an older version of the metric)"


def cell_checks(model, *, train_images: np.ndarray, reconstruction_images: np.ndarray, evaluation_images: np.ndarray,
                codes: np.ndarray, scores: Mapping[str, float], suite_metrics: Iterable[str],
                latent_metrics: Iterable[str], metric_errors: Mapping[str, Any] | None = None,
                not_applicable: Mapping[str, str] | None = None) -> dict[str, dict[str, Any]]:
    """The record's ``checks`` for a trained ``model``: ``reconstruction_images`` are the rows of
    ``reconstruction.mse``, ``evaluation_images`` and ``codes`` (the factor codes the latent metrics read)
    the evaluation sample, ``scores`` the record's scores. A check that raises is null with the error."""
    suite_metrics, latent_metrics = list(suite_metrics), list(latent_metrics)
    metric_errors, not_applicable = metric_errors or {}, not_applicable or {}
    if tuple(getattr(model, "reference_for", ()) or ()):
        return _reference_row(latent_metrics)
    name = getattr(model, "name", type(model).__name__)
    probe_missing = metric_missing(INTERVENTIONAL, suite_metrics, metric_errors, not_applicable)

    def probe(score: str) -> float | None:
        return scores.get(f"{INTERVENTIONAL}.{score}")

    def reconstruction() -> dict[str, Any]:
        if "reconstruction.mse" not in scores:  # the runner lists it as not applicable for a model without a decoder
            reason = not_applicable.get(RECONSTRUCTION)
            missing = f"reconstruction.mse does not apply: {reason}" if reason else None
            return reconstruction_vs_mean_image(None, None, missing)
        return reconstruction_vs_mean_image(scores["reconstruction.mse"],
                                            mean_image_error(train_images, reconstruction_images))

    def collapse() -> dict[str, Any]:
        missing = (f"model {name!r} gives no posterior KL per code: its code is not sampled from a Gaussian "
                   "posterior held against a standard normal prior (docs/protocol.md lists why, per model)")
        return posterior_collapse(posterior_kl(model, evaluation_images), latent_metrics, missing)

    def inert() -> dict[str, Any]:
        return inert_do(probe("do_change"), probe("copy_mse"), probe_missing)

    def copy() -> dict[str, Any]:
        return counterfactual_vs_copy(probe("counterfactual_mse"), probe("copy_mse"), probe_missing)

    runs: dict[str, Callable[[], dict[str, Any]]] = {
        "reconstruction_vs_mean_image": reconstruction, "posterior_collapse": collapse,
        "constant_codes": lambda: constant_codes(codes, latent_metrics), "inert_do": inert,
        "counterfactual_vs_copy": copy,
    }
    return {check_name: _guarded(check_name, run, latent_metrics) for check_name, run in runs.items()}


def _guarded(name: str, run: Callable[[], dict[str, Any]], latent_metrics: list[str]) -> dict[str, Any]:
    try:
        return run()
    except Exception as error:  # noqa: BLE001 - a check that cannot be computed is null, the cell's scores stand
        log.warning("degeneracy check %s could not be computed: %s: %s", name, type(error).__name__, error)
        return check(None, invalidated(name, latent_metrics), f"not computed: {type(error).__name__}: {error}")


def _reference_row(latent_metrics: list[str]) -> dict[str, dict[str, Any]]:
    return {name: check(None, invalidated(name, latent_metrics), "reference row: exempt from the checks")
            for name in CHECK_NAMES}
