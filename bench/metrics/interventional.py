"""Interventional and counterfactual metrics: a model's do() against the dataset's true counterfactual.

Protocol (``counterfactual@probe``), for ``n_samples`` test images x with factors y and noise u, and
each factor k:

1. the target value v_k is factor k of another test sample (a seeded permutation), so it lies in
   the data distribution; the true counterfactual is x' = render(do(y_k = v_k) with noise u), every
   descendant of k recomputed from the same noise (the dataset's SCM);
2. the model's concept k is set to what its encoder gives x' (the whole block; for an unaligned
   model, the code matched to factor k), and ``model.intervene(x, k, that value)`` gives x_hat;
3. (a) ``counterfactual_mse``: the mean squared pixel error between x_hat and x' (pixels in [0, 1]);
   (b) ``non_descendant_shift``: a linear probe fitted on training latents to the standardised
   factors reads x_hat and x; the mean absolute change of its readings on the factors that are not
   k and not descendants of k (a causal model should leave them alone), in standard deviations;
   ``target_error`` is the probe's distance from v_k on factor k itself.

Scores are averaged over factors and also given per factor (``..._<k>``). Randomness: the sample
and the target values come from the seed.
"""

from __future__ import annotations

import numpy as np
import torch

from bench.errors import ConfigError
from bench.metrics.base import MetricResult, variant


def _images(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(array).permute(0, 3, 1, 2).float().div_(255.0)


def _latents(model, images: torch.Tensor, batch_size: int = 256) -> np.ndarray:
    parts = [model.encode(images[i:i + batch_size]).flatten(1) for i in range(0, len(images), batch_size)]
    return torch.cat(parts).numpy()


def concept_value(model, images: torch.Tensor, k: int) -> torch.Tensor:
    """What the model's encoder gives for concept k: its block, or the matched code if unaligned."""
    code = model.encode(images)
    if model.aligned:
        block = code[:, k]
        return block[:, 0] if block.shape[1] == 1 else block
    matched = int(model.factor_codes[k])
    if matched < 0:
        raise ConfigError("metric 'counterfactual@probe': the unaligned model needs set_alignment before evaluation")
    return code[:, 0, matched]


@variant("counterfactual@probe", needs_model=True, n_samples=256, probe_samples=2000)
def counterfactual_probe(model, dataset, train, test, *, seed, n_samples, probe_samples):
    """Pixel error of do() against the true counterfactual, and probe shifts on non-descendants."""
    from sklearn.linear_model import LinearRegression

    rng = np.random.default_rng(seed)
    card = dataset.card
    mean, std = np.asarray(card.label_stats["mean"]), np.asarray(card.label_stats["std"])
    std = np.where(std > 0, std, 1.0)
    probe_rows = rng.choice(len(train), size=min(probe_samples, len(train)), replace=False)
    probe = LinearRegression().fit(_latents(model, _images(train.images[probe_rows])),
                                   (train.factors[probe_rows] - mean) / std)
    rows = rng.choice(len(test), size=min(n_samples, len(test)), replace=False)
    factors, noise = test.factors[rows], test.noise[rows]
    x = _images(test.images[rows])
    factual = probe.predict(_latents(model, x))
    scores, per_factor = {}, {"counterfactual_mse": [], "non_descendant_shift": [], "target_error": []}
    for k in range(len(card.factors)):
        values = factors[rng.permutation(len(factors)), k]
        truth = dataset.intervene(factors, noise, k, values)
        x_true = _images(dataset.render(truth, noise))
        x_hat = model.intervene(x, k, concept_value(model, x_true, k))
        readings = probe.predict(_latents(model, x_hat))
        others = [j for j in range(len(card.factors)) if j != k and j not in card.descendants(k)]
        results = {
            "counterfactual_mse": float(((x_hat - x_true) ** 2).mean()),
            "non_descendant_shift": float(np.abs(readings - factual)[:, others].mean()) if others else 0.0,
            "target_error": float(np.abs(readings[:, k] - (values - mean[k]) / std[k]).mean()),
        }
        for key, value in results.items():
            scores[f"{key}_{k}"] = value
            per_factor[key].append(value)
    scores.update({key: float(np.mean(values)) for key, values in per_factor.items()})
    return MetricResult(scores)
