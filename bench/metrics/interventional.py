"""Interventional and counterfactual metrics: a model's do() against the dataset's true counterfactual.

Protocol (``counterfactual@probe``, version 3), for ``n_samples`` test images x with factors y and
noise u, and each factor k:

1. the target value v_k is factor k of another test sample (a seeded permutation), so it lies in
   the data distribution; the true counterfactual is x' = render(do(y_k = v_k) with noise u), every
   descendant of k recomputed from the same noise (the dataset's SCM);
2. the target is given to the model by an oracle: the model's concept k is set to what the model's
   own encoder gives the TRUE counterfactual image x' (the whole block; for an unaligned model, the
   code matched to factor k), and ``model.intervene(x, k, that value)`` gives x_hat. The oracle is
   the same for every model, so the metric measures the do() mechanism given a correct target, not
   the model's ability to choose the target;
3. the null intervention x_null = ``model.intervene(x, k, concept_value(model, x, k))`` sets
   concept k to what the encoder already gives x: it changes nothing but passes x through the
   model, so it carries the model's reconstruction error and serves as each do()'s baseline;
4. scores, with pixels in [0, 1]:

   (a) ``counterfactual_mse``: the mean squared pixel error between x_hat and x';
   (b) ``reconstruction_mse``: the mean squared pixel error between x_null and x;
   (c) a linear probe, fitted on the latents of ``probe_samples`` training images to their
       factors, reads every factor from the latents of an image. Its readings are put in
       percentiles: F_j maps a reading of factor j through the empirical CDF of the probe's readings
       of factor j on the n factual images x (mid-rank: a value tied with c readings counts half of
       them, readings closer than 1e-9 of their range counting as tied; linearly interpolated
       between distinct readings, constant beyond the smallest and the largest). G_k is the same
       empirical CDF of the true values of factor k on the n sampled test images. Both scores
       below are fractions of the evaluation distribution, in [0, 1], so they do not depend on
       the latents' scale (a near-degenerate latent cannot inflate them):
       ``non_descendant_shift`` = mean over samples and over the factors j that are neither k nor a
       descendant of k of |F_j(read_j(x_hat)) - F_j(read_j(x_null))| (0 when k has no such
       factor): how far the do() moves what a causal model should leave alone, measured against
       the null intervention, so reconstruction error alone scores 0;
       ``target_error`` = mean over samples of |F_k(read_k(x_hat)) - G_k(v_k)|: how far the
       intervened image's reading of factor k lies from the target, in the same unit;
   (d) two pixel changes that the degeneracy checks read (:mod:`crlbench.suites.checks`):
       ``copy_mse``, the mean squared pixel error between x and x' (the error of returning the source
       image unchanged, which is also how much the true counterfactual moves the image), and
       ``do_change``, the mean squared pixel difference between x_hat and x_null (how much the
       model's do() moves its own image).

A model whose do() changes nothing scores 0 ``non_descendant_shift`` whatever its reconstruction;
its failure shows in ``counterfactual_mse`` and ``target_error``, its reconstruction error in
``reconstruction_mse``, and its inertness in ``do_change`` against ``copy_mse``. Version 3 added
``copy_mse`` and ``do_change``; the other scores are computed as in version 2. Scores are averaged
over factors k and also given per factor (``..._<k>``).
Randomness: the probe's training sample, the test sample and the target values come from the seed.
"""

from __future__ import annotations

import numpy as np

from crlbench.core.errors import ConfigError
from crlbench.core.lazy import lazy_module
from crlbench.metrics.base import MetricResult, variant

TIE_TOLERANCE = 1e-9  # readings closer than this fraction of their range are one value
torch = lazy_module("torch")  # imported when a score is computed


def _images(array: np.ndarray, device=None) -> torch.Tensor:
    return torch.from_numpy(array).permute(0, 3, 1, 2).float().div_(255.0).to(device)


def _device(model) -> torch.device:
    """Where the model's weights are (its inputs go there); the CPU for a model that has none (a stand-in)."""
    parameter = next(model.parameters(), None) if hasattr(model, "parameters") else None
    return parameter.device if parameter is not None else torch.device("cpu")


def _latents(model, images: torch.Tensor, batch_size: int = 256) -> np.ndarray:
    parts = [model.encode(images[i:i + batch_size]).flatten(1).cpu() for i in range(0, len(images), batch_size)]
    return torch.cat(parts).numpy()


def concept_value(model, images: torch.Tensor, k: int) -> torch.Tensor:
    """What the model's encoder gives for concept k: its block, or the matched code if unaligned."""
    code = model.encode(images)
    if model.aligned:
        block = code[:, k]
        return block[:, 0] if block.shape[1] == 1 else block
    try:
        matched = model.matched_code(k)  # the model contract (crlbench.training.model.CausalModel)
    except ConfigError as error:
        raise ConfigError(f"metric 'counterfactual@probe': {error}") from None
    return code[:, 0, matched]


def percentiles(reference: np.ndarray, values: np.ndarray, tie_tolerance: float = TIE_TOLERANCE) -> np.ndarray:
    """Positions of ``values`` in the distribution of the 1-D sample ``reference``, in [0, 1].

    The mid-rank empirical CDF of ``reference`` (a value tied with c reference values counts half
    of them), linearly interpolated between distinct reference values and constant beyond the
    smallest and the largest. Reference values closer than ``tie_tolerance`` times the reference's
    range count as tied (float noise must not rank copies of one value). Unchanged by any increasing
    affine map applied to both arguments.
    """
    ordered = np.sort(np.asarray(reference, dtype=np.float64))
    starts = np.flatnonzero(np.r_[True, np.diff(ordered) > tie_tolerance * (ordered[-1] - ordered[0])])
    counts = np.diff(np.r_[starts, len(ordered)])
    centres = np.add.reduceat(ordered, starts) / counts
    return np.interp(np.asarray(values, dtype=np.float64), centres, (starts + counts / 2.0) / len(ordered))


@variant("counterfactual@probe", version="3", needs_model=True, n_samples=256, probe_samples=2000)
def counterfactual_probe(model, dataset, train, test, *, seed, n_samples, probe_samples):
    """do() against the true counterfactual and against the model's null do(): pixel errors, percentile shifts."""
    from sklearn.linear_model import LinearRegression

    rng = np.random.default_rng(seed)
    card, device = dataset.card, _device(model)
    probe_rows = rng.choice(len(train), size=min(probe_samples, len(train)), replace=False)
    probe = LinearRegression().fit(_latents(model, _images(train.images[probe_rows], device)), train.factors[probe_rows])
    rows = rng.choice(len(test), size=min(n_samples, len(test)), replace=False)
    factors, noise = test.factors[rows], test.noise[rows]
    x = _images(test.images[rows], device)
    factual = probe.predict(_latents(model, x))

    def in_percentiles(readings: np.ndarray) -> np.ndarray:
        return np.stack([percentiles(factual[:, j], readings[:, j]) for j in range(readings.shape[1])], axis=1)

    keys = ("counterfactual_mse", "reconstruction_mse", "non_descendant_shift", "target_error", "copy_mse",
            "do_change")
    scores, per_factor = {}, {key: [] for key in keys}
    for k in range(len(card.factors)):
        values = factors[rng.permutation(len(factors)), k]
        truth = dataset.intervene(factors, noise, k, values)
        x_true = _images(dataset.render(truth, noise), device)
        x_hat = model.intervene(x, k, concept_value(model, x_true, k))
        x_null = model.intervene(x, k, concept_value(model, x, k))
        moved = in_percentiles(probe.predict(_latents(model, x_hat)))
        still = in_percentiles(probe.predict(_latents(model, x_null)))
        others = [j for j in range(len(card.factors)) if j != k and j not in card.descendants(k)]
        results = {
            "counterfactual_mse": float(((x_hat - x_true) ** 2).mean()),
            "reconstruction_mse": float(((x_null - x) ** 2).mean()),
            "non_descendant_shift": float(np.abs(moved - still)[:, others].mean()) if others else 0.0,
            "target_error": float(np.abs(moved[:, k] - percentiles(factors[:, k], values)).mean()),
            "copy_mse": float(((x - x_true) ** 2).mean()),
            "do_change": float(((x_hat - x_null) ** 2).mean()),
        }
        for key, value in results.items():
            scores[f"{key}_{k}"] = value
            per_factor[key].append(value)
    scores.update({key: float(np.mean(values)) for key, values in per_factor.items()})
    return MetricResult(scores)
