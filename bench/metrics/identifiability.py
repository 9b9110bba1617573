"""Identifiability up to permutation: MCC and linear R^2 (Hyvarinen & Morioka 2016; Khemakhem et al. 2020).

* ``mcc@pearson`` / ``mcc@spearman``: C_ij = |corr(z_i, y_j)| [codes x factors]; the Hungarian
  assignment gives each factor a distinct code (more codes than factors allowed) and MCC is the mean
  of the matched entries (icebeem's ``mean_corr_coef``). ``protocol="in_sample"`` assigns and scores
  on the train split (the reference); ``"out_of_sample"`` assigns on train, scores on test.
* ``r2@linear``: ordinary least squares from all codes to each factor on train, R^2 on test.
"""

from __future__ import annotations

import numpy as np

from crlbench.core.errors import ConfigError
from crlbench.core.lazy import lazy_module
from crlbench.metrics import alignment
from crlbench.metrics.base import MetricResult, variant

stats = lazy_module("scipy.stats")  # imported when a score is computed


def correlation_matrix(z: np.ndarray, y: np.ndarray, method: str) -> tuple[np.ndarray, list[str]]:
    if method == "spearman":
        z, y = stats.rankdata(z, axis=0), stats.rankdata(y, axis=0)
    codes = z.shape[1]
    with np.errstate(divide="ignore", invalid="ignore"):
        corr = np.abs(np.corrcoef(z, y, rowvar=False)[:codes, codes:])
    notes = []
    if np.isnan(corr).any():
        notes.append("correlations with constant columns are taken as 0")
        corr = np.nan_to_num(corr)
    return corr, notes


def _mcc(z_train, y_train, z_test, y_test, method, protocol) -> MetricResult:
    if protocol not in ("in_sample", "out_of_sample"):
        raise ConfigError(f"metric 'mcc@{method}': option 'protocol' must be one of in_sample, out_of_sample; got {protocol!r}")
    corr, notes = correlation_matrix(z_train, y_train, method)
    matching = alignment.matched(corr)
    if protocol == "out_of_sample":
        if z_test is None:
            raise ConfigError(f"metric 'mcc@{method}': protocol 'out_of_sample' needs z_test and y_test")
        corr, more = correlation_matrix(z_test, y_test, method)
        notes += more
    assignment = matching.matrix(z_train.shape[1])
    matched = [corr[block[0], k] for k, block in enumerate(matching.blocks) if block]
    result = MetricResult({"mcc": float(np.mean(matched))}, {"corr": corr, "assignment": assignment}, notes)
    result.info["alignment"] = matching.to_dict()
    return result


@variant("mcc@pearson", protocol="in_sample")
def mcc_pearson(z_train, y_train, z_test, y_test, *, seed, protocol):
    """Mean correlation coefficient (Pearson) after Hungarian matching."""
    return _mcc(z_train, y_train, z_test, y_test, "pearson", protocol)


@variant("mcc@spearman", protocol="in_sample")
def mcc_spearman(z_train, y_train, z_test, y_test, *, seed, protocol):
    """Mean correlation coefficient (Spearman) after Hungarian matching."""
    return _mcc(z_train, y_train, z_test, y_test, "spearman", protocol)


@variant("r2@linear", needs_test=True)
def r2_linear(z_train, y_train, z_test, y_test, *, seed):
    """Linear R^2 of each factor from all codes, fitted on train, scored on test."""
    from sklearn.linear_model import LinearRegression
    from sklearn.metrics import r2_score

    model = LinearRegression().fit(z_train, y_train)
    per_factor = r2_score(y_test, model.predict(z_test), multioutput="raw_values")
    scores = {"r2": float(per_factor.mean())}
    scores.update({f"r2_{k}": float(value) for k, value in enumerate(per_factor)})
    return MetricResult(scores, {"coefficients": model.coef_.T.copy()})
