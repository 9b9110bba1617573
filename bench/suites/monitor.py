"""The evaluation read during training: DCI, MCC and the reconstruction error of a fixed validation sample.

The sample (:func:`validation_sample`) is never from the test split and never from the rows a cell
trains on: the dataset's own ``val`` split where it has one (CausalCircuit); the held-out 10 % of the
training split for a cell evaluated on ``split: val`` (which it does not train on); otherwise rows
generated for the purpose (Pendulum, Flow evaluated on test): each exogenous noise column drawn
uniformly between its training minimum and maximum, the factors solved by the dataset's mechanisms and
rendered by its renderer. Pendulum's and Flow's roots are grids whose every point is a training or test
row, so these rows lie between grid points: new scenes of the same mechanisms and ranges. The draw
comes from stream 5 of seed 0, so the sample is the same for every cell of a dataset, and it touches
nothing the cell trains on (its hash and weights are those of a cell without the monitor).

Half the sample (``fit``) is what DCI's trees are fitted on and what matches an unaligned model's codes
to factors; the other half (``score``) is where MCC and the reconstruction error are read. Scores are
computed on the representation the leaderboard reads (:func:`crlbench.suites.representation.evaluation_representation`).
MCC is the registered ``mcc@pearson`` with the suite's options. DCI is ``dci@reg``'s importance and
formulas (:mod:`crlbench.metrics.dci`) with cheaper trees: :data:`DCI_TREES` gradient-boosted trees at
learning rate :data:`DCI_LEARNING_RATE` instead of 100 at 0.1 (the same shrinkage budget, trees x rate =
10), a quarter of the cost; on four synthetic code sets of 256 rows its disentanglement was within 0.009
of the 100-tree value (0.30-0.73).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from crlbench.core import registry
from crlbench.core.errors import NotApplicable
from crlbench.metrics import compute, dci
from crlbench.training.convergence import MONITOR_KEY
from crlbench.training.model import RECONSTRUCTION, model_device, stands_for
from crlbench.suites.representation import (MONITOR_STREAM, VALIDATION_SEED, as_model_images,
                                            evaluation_representation, factor_alignment, reconstruction_error)

log = logging.getLogger(__name__)

MONITOR_ROWS = 512  # the validation sample: half fits DCI's trees and the matching, half is scored
MONITOR_METRICS = ("dci@reg", "mcc@pearson")
DCI_TREES, DCI_LEARNING_RATE = 25, 0.4  # dci@reg's GradientBoostingRegressor has 100 at 0.1


@dataclass(frozen=True)
class ValidationSample:
    """The monitor's rows: images uint8 [N, H, W, C] and raw factors [N, K], and where they come from."""

    images: np.ndarray
    factors: np.ndarray
    source: str

    def description(self) -> dict[str, Any]:
        return {"source": self.source, "rows": int(len(self.images)), "fit_rows": int(len(self.images) // 2)}


def validation_sample(dataset, split: str, train_split, eval_split, rows: int = MONITOR_ROWS) -> ValidationSample:
    """The monitor's validation rows of ``dataset`` for a cell evaluated on ``split`` (module docstring)."""
    stream = np.random.default_rng(np.random.SeedSequence(VALIDATION_SEED, spawn_key=(MONITOR_STREAM,)))
    if "val" in dataset.split_names or split == "val":
        held = dataset.split("val") if "val" in dataset.split_names else eval_split
        source = "the dataset's val split" if "val" in dataset.split_names else "the held-out 10 % of the training split"
        chosen = np.sort(stream.choice(len(held), size=min(rows, len(held)), replace=False))
        return ValidationSample(held.images[chosen], held.factors[chosen], source)
    low, high = train_split.noise.min(axis=0), train_split.noise.max(axis=0)
    noise = stream.uniform(low, high, size=(rows, len(low)))
    factors = dataset.solve(noise)
    return ValidationSample(dataset.render(factors, noise), factors,
                            "generated: noise uniform in its training range, the dataset's mechanisms and renderer")


class ValidationMonitor:
    """The trainer's monitor (:data:`crlbench.training.train.Monitor`): the model -> ``dci@reg.disentanglement``,
    ``dci@reg.completeness``, ``mcc@pearson.mcc`` and ``heldout_reconstruction_mse`` on ``sample``, each only
    where the model is scored on it (a reference row stands for some scores only; a model without a decoder
    has no reconstruction error). ``seed`` seeds DCI's trees;
    ``options`` are the suite's options per metric name. ``seconds`` adds up the time its readings took."""

    def __init__(self, sample: ValidationSample, device: str, *, seed: int, representation: str = "factor_codes",
                 options: dict[str, dict[str, Any]] | None = None) -> None:
        half = len(sample.images) // 2
        self.fit = as_model_images(sample.images[:half]).to(device)
        self.score = as_model_images(sample.images[half:]).to(device)
        self.y_fit, self.y_score = sample.factors[:half], sample.factors[half:]
        self.seed, self.representation, self.options = seed, representation, options or {}
        self.seconds = 0.0

    def __call__(self, model) -> dict[str, float]:
        start = time.perf_counter()
        values: dict[str, float] = {}
        if any(stands_for(model, name) for name in MONITOR_METRICS):
            values.update(_latent_scores(model, self.fit, self.score, self.y_fit, self.y_score, self.seed,
                                         self.representation, self.options))
        if stands_for(model, RECONSTRUCTION):
            try:
                values[MONITOR_KEY] = reconstruction_error(model, self.score)
            except NotApplicable:  # a method without a decoder (Contrastive CRL): no reconstruction to read
                pass
        self.seconds += time.perf_counter() - start
        return values


def _latent_scores(model, fit: torch.Tensor, score: torch.Tensor, y_fit: np.ndarray, y_score: np.ndarray, seed: int,
                   representation: str, options: dict[str, dict[str, Any]]) -> dict[str, float]:
    """DCI and MCC of the model's codes; a score that cannot be computed (NaN codes) is left out and logged."""
    try:
        z_fit, blocks = _codes(model, fit)
        z_score, _ = _codes(model, score)
        latents = {"z_train": z_fit, "y_train": y_fit, "z_test": z_score, "y_test": y_score, "blocks": np.asarray(blocks)}
        codes = evaluation_representation(latents, factor_alignment(model.aligned, latents), representation)
    except Exception as error:  # noqa: BLE001 - a reading that fails costs its scores, not the training run
        log.warning("monitor: no latent scores at this reading (%s: %s)", type(error).__name__, error)
        return {}
    values: dict[str, float] = {}
    if stands_for(model, "dci@reg"):
        scores = _compute(dci_scores, codes.z_train, y_fit, seed=seed) or {}
        values.update({f"dci@reg.{name}": value for name, value in scores.items()})
    if stands_for(model, "mcc@pearson"):
        mcc = _compute(_registered("mcc@pearson"), codes.z_test, y_score, seed=seed, **_options("mcc@pearson", options))
        values.update({"mcc@pearson.mcc": mcc["mcc"]} if mcc else {})
    return values


def dci_scores(z: np.ndarray, y: np.ndarray, *, seed: int) -> dict[str, float]:
    """DCI disentanglement and completeness (Eastwood & Williams 2018) of codes ``z`` [N, codes] for factors
    ``y`` [N, K]: ``dci@reg``'s importance matrix (|impurity importances| of one gradient-boosted regressor per
    factor, seeded) from :data:`DCI_TREES` trees at :data:`DCI_LEARNING_RATE`."""
    from sklearn.ensemble import GradientBoostingRegressor

    importance = np.stack([np.abs(GradientBoostingRegressor(n_estimators=DCI_TREES, learning_rate=DCI_LEARNING_RATE,
                                                            random_state=seed).fit(z, y[:, k]).feature_importances_)
                           for k in range(y.shape[1])], axis=1)
    return {"disentanglement": dci.disentanglement(importance)[0], "completeness": dci.completeness(importance)[0]}


def _registered(name: str):
    return lambda *arrays, **options: compute(name, *arrays, **options).scores


def _compute(scores, *arrays, **options) -> dict[str, float] | None:
    """``scores(*arrays, **options)`` with scikit-learn's per-call input and parameter checks off (the arrays are
    checked finite here; same results, about a quarter less time for many small trees); None, logged, when it
    fails (non-finite codes early in a diverging run)."""
    import sklearn

    try:
        if not all(np.isfinite(array).all() for array in arrays):
            raise ValueError("the codes or factors hold NaN or infinite values")
        with sklearn.config_context(assume_finite=True, skip_parameter_validation=True):
            return scores(*arrays, **options)
    except Exception as error:  # noqa: BLE001 - a reading that fails costs its score, not the training run
        log.warning("monitor: a score was not read at this reading (%s: %s)", type(error).__name__, error)
        return None


def _options(name: str, given: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The suite's options for metric ``name``, with ``n_jobs`` = 1 where the metric takes it (a reading
    runs inside a training step's thread budget)."""
    result = dict(given.get(name, {}))
    if "n_jobs" in registry.metric(name).defaults:
        result["n_jobs"] = 1
    return result


@torch.no_grad()
def _codes(model, images: torch.Tensor) -> tuple[np.ndarray, tuple[int, int]]:
    """The model's codes of ``images`` in eval mode, flattened to [N, codes] (float64 on the CPU), and its
    block shape (blocks, codes per block)."""
    model.eval()
    device = model_device(model)
    encoded = model.encode(images.to(device))
    return encoded.flatten(1).cpu().double().numpy(), tuple(int(v) for v in encoded.shape[1:])
