"""IRS: the interventional robustness score (Suter et al., ICML 2019, arXiv 1811.00007).

For latent j and factor i: the ``diff_quantile`` quantile of |z_j - E[z_j | y_i = g]| over the samples
with y_i = g, averaged (unweighted) over the values g, normalised by max |z_j - E z_j|; the IRS matrix
is 1 minus that. Each latent scores its best factor; the score is their average weighted by the
normaliser. As disentanglement_lib's ``irs.py``: factors binned into ``factor_bins`` equal-width
bins, constant latents dropped. Unlike dlib, ``num_active_dims`` is a count (dlib sums latent values).

* ``irs@dlib``: diff quantile 0.99 (dlib's default).
* ``irs@paper``: diff quantile 1.0 ("the version in the paper", dlib's docstring).
"""

from __future__ import annotations

import numpy as np

from bench.metrics.base import MetricResult, histogram_discretize, variant


def robustness_matrix(factors: np.ndarray, latents: np.ndarray, diff_quantile: float):
    """IRS matrix [latents x factors] and each latent's maximal deviation from its mean."""
    max_deviations = np.max(np.abs(latents - latents.mean(axis=0)), axis=0)
    cumulative = np.zeros((latents.shape[1], factors.shape[1]))
    for i in range(factors.shape[1]):
        values = np.unique(factors[:, i])
        for value in values:
            group = latents[factors[:, i] == value]
            deviation = np.abs(group - group.mean(axis=0))
            cumulative[:, i] += np.percentile(deviation, diff_quantile * 100, axis=0)
        cumulative[:, i] /= len(values)
    return 1.0 - cumulative / max_deviations[:, None], max_deviations


def _irs(z_train, y_train, diff_quantile, factor_bins) -> MetricResult:
    binned = histogram_discretize(y_train, factor_bins)
    active = np.var(z_train, axis=0) > 0
    matrix = np.full((z_train.shape[1], y_train.shape[1]), np.nan)
    notes = []
    if not active.all():
        notes.append(f"constant codes dropped: {np.flatnonzero(~active).tolist()}")
    if not active.any():
        return MetricResult({"irs": 0.0, "num_active_dims": 0.0}, {"irs_matrix": matrix}, notes)
    irs_active, max_deviations = robustness_matrix(binned, z_train[:, active], diff_quantile)
    matrix[active] = irs_active
    per_latent = irs_active.max(axis=1)
    if max_deviations.sum() > 0:
        score = np.average(per_latent, weights=max_deviations)
    else:
        score = per_latent.mean()
    scores = {"irs": float(score), "num_active_dims": float(active.sum())}
    return MetricResult(scores, {"irs_matrix": matrix}, notes)


@variant("irs@dlib", diff_quantile=0.99, factor_bins=20)
def irs_dlib(z_train, y_train, z_test, y_test, *, seed, diff_quantile, factor_bins):
    """IRS as disentanglement_lib computes it (q = 0.99, 20 factor bins)."""
    return _irs(z_train, y_train, diff_quantile, factor_bins)


@variant("irs@paper", diff_quantile=1.0, factor_bins=20)
def irs_paper(z_train, y_train, z_test, y_test, *, seed, diff_quantile, factor_bins):
    """IRS with the paper's maximal deviation (q = 1.0, 20 factor bins)."""
    return _irs(z_train, y_train, diff_quantile, factor_bins)
