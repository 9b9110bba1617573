"""IRS: the interventional robustness score (Suter et al., ICML 2019, arXiv 1811.00007).

For latent j and factor i: the ``diff_quantile`` quantile of |z_j - E[z_j | y_i = g]| over the samples
with y_i = g, averaged (unweighted) over the values g, normalised by max |z_j - E z_j|; the IRS matrix
is 1 minus that. Each latent scores its best factor; the score is their average weighted by the
normaliser. All variants use the training latents only.

Three variants, which differ in the quantile and in what is done to the factors and codes:

* ``irs@suter``: Suter et al.'s IRS as in the ICML 2019 paper, the maximal deviation (diff quantile
  1.0, "the version in the paper" in disentanglement_lib's docstring); factors binned into
  ``factor_bins`` equal-width bins, constant codes dropped. Formerly named ``irs@paper``, which still
  resolves to it with a ``FutureWarning`` (it is not the ICM-VAE paper's IRS).
* ``irs@dlib``: disentanglement_lib's default (``evaluation/metrics/irs.py``, ``compute_irs``):
  diff quantile 0.99, factors binned into ``factor_bins`` equal-width bins, constant codes dropped.
* ``irs@icmvae``: the IRS exactly as the ICM-VAE reference code computes it (github.com/Akomand/ICM-VAE,
  ``codebase/metrics.py``, ``compute_irs`` calling ``scalable_disentanglement_score``, called by
  ``experiments/test_{pendulum,flow,circuit}.py`` with the training codes and factors and the default
  diff quantile 0.99). It groups samples by the exact factor values (no binning) and drops no codes.

Unlike dlib and the reference, ``irs@suter`` and ``irs@dlib`` report ``num_active_dims`` as a count
of the non-constant codes; dlib sums the values of the active codes and the ICM-VAE code sums the
values of all codes, which ``irs@icmvae`` reproduces.
"""

from __future__ import annotations

import numpy as np

from crlbench.metrics.base import MetricResult, histogram_discretize, variant


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


def _weighted_score(per_latent: np.ndarray, max_deviations: np.ndarray) -> float:
    if max_deviations.sum() > 0:
        return float(np.average(per_latent, weights=max_deviations))
    return float(per_latent.mean())


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
    score = _weighted_score(irs_active.max(axis=1), max_deviations)
    scores = {"irs": score, "num_active_dims": float(active.sum())}
    return MetricResult(scores, {"irs_matrix": matrix}, notes)


@variant("irs@dlib", diff_quantile=0.99, factor_bins=20)
def irs_dlib(z_train, y_train, z_test, y_test, *, seed, diff_quantile, factor_bins):
    """IRS as disentanglement_lib computes it (q = 0.99, 20 factor bins)."""
    return _irs(z_train, y_train, diff_quantile, factor_bins)


@variant("irs@suter", diff_quantile=1.0, factor_bins=20)
def irs_suter(z_train, y_train, z_test, y_test, *, seed, diff_quantile, factor_bins):
    """IRS of Suter et al. (ICML 2019): the maximal deviation (q = 1.0, 20 factor bins)."""
    return _irs(z_train, y_train, diff_quantile, factor_bins)


@variant("irs@icmvae", diff_quantile=0.99)
def irs_icmvae(z_train, y_train, z_test, y_test, *, seed, diff_quantile):
    """IRS as the ICM-VAE reference code computes it (q = 0.99, exact factor values, all codes).

    Reproduces ``compute_irs`` in ICM-VAE's ``codebase/metrics.py``, flaws included:

    * ``num_active_dims`` is the sum of every latent value (all samples, all codes), not a count of
      active codes: a bug inherited from disentanglement_lib, made worse by summing constant codes too;
    * factors are not discretised: samples are grouped by exact factor values, so a continuous factor
      puts each sample in a group of its own and that factor's IRS column is 1 for every code;
    * constant codes are not dropped: a constant code has a zero normaliser, its row of the matrix
      is NaN (0 / 0) and so is the score, unless every latent value is exactly 0 (then the score is 0).
    """
    notes = ["num_active_dims is the sum of all latent values (ICM-VAE's compute_irs), not a count "
             "of active codes"]
    matrix = np.full((z_train.shape[1], y_train.shape[1]), np.nan)
    if not z_train.any():
        notes.append("every latent value is 0: score 0 by the reference's convention")
        return MetricResult({"irs": 0.0, "num_active_dims": 0.0}, {"irs_matrix": matrix}, notes)
    constant = np.flatnonzero(np.var(z_train, axis=0) == 0)
    if constant.size:
        notes.append(f"constant codes {constant.tolist()} are kept as the reference does: their IRS is "
                     "NaN (0 / 0), and so is the score")
    singletons = [i for i in range(y_train.shape[1]) if len(np.unique(y_train[:, i])) == len(y_train)]
    if singletons:
        notes.append(f"factors {singletons} take a distinct value in every sample: without binning each "
                     "group is one sample and their IRS is 1 for every code")
    with np.errstate(divide="ignore", invalid="ignore"):
        matrix, max_deviations = robustness_matrix(y_train, z_train, diff_quantile)
        score = _weighted_score(matrix.max(axis=1), max_deviations)
    scores = {"irs": score, "num_active_dims": float(np.sum(z_train))}
    return MetricResult(scores, {"irs_matrix": matrix}, notes)
