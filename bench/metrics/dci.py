"""DCI: disentanglement, completeness and informativeness (Eastwood & Williams, ICLR 2018).

An importance matrix R [codes x factors] comes from one gradient-boosted-tree predictor per factor
(impurity importances). Disentanglement is sum_j rho_j (1 - H_K(P_j.)), with P_jk = R_jk / sum_k R_jk
and rho_j = sum_k R_jk / sum R; completeness is the same over columns with entropy base D = codes.
Both add 1e-11 to R before the entropies, as disentanglement_lib does.

* ``dci@dlib``: disentanglement_lib's ``dci.py``: ``GradientBoostingClassifier`` on the labels as
  classes, informativeness = mean accuracy (train and test). Seeded here (dlib's is not).
* ``dci@reg``: the regressor of ICM-VAE and ILCM, ``GradientBoostingRegressor``; informativeness
  is the mean R^2 (ICM-VAE's own ``mean(predict == y)`` on a regressor is meaningless), with MSE.
"""

from __future__ import annotations

import numpy as np

from crlbench.core.lazy import lazy_module
from crlbench.metrics.base import MetricResult, variant

ENTROPY_GUARD = 1e-11

stats = lazy_module("scipy.stats")  # imported when a score is computed


def disentanglement(importance: np.ndarray) -> tuple[float, list[str]]:
    """Importance-weighted mean over codes of 1 - entropy (base: number of factors)."""
    codes, factors = importance.shape
    if factors == 1:
        return 1.0, ["disentanglement is 1 by convention with a single factor (entropy base 1 is undefined)"]
    per_code = 1.0 - stats.entropy(importance.T + ENTROPY_GUARD, base=factors)
    weights = importance if importance.sum() > 0 else np.ones_like(importance)
    return float(np.sum(per_code * weights.sum(axis=1) / weights.sum())), []


def completeness(importance: np.ndarray) -> tuple[float, list[str]]:
    """Importance-weighted mean over factors of 1 - entropy (base: number of codes)."""
    codes, factors = importance.shape
    if codes == 1:
        return 1.0, ["completeness is 1 by convention with a single code (entropy base 1 is undefined)"]
    per_factor = 1.0 - stats.entropy(importance + ENTROPY_GUARD, base=codes)
    weights = importance if importance.sum() > 0 else np.ones_like(importance)
    return float(np.sum(per_factor * weights.sum(axis=0) / weights.sum())), []


def _fit_factor(make_model, z_train, target_train, z_test, target_test):
    model = make_model().fit(z_train, target_train)
    return np.abs(model.feature_importances_), model.predict(z_train), model.predict(z_test)


def _importance(make_model, z_train, y_train, z_test, y_test, n_jobs):
    """Fit one model per factor (in parallel over factors); importance and predictions."""
    from joblib import Parallel, delayed

    fits = Parallel(n_jobs=n_jobs)(
        delayed(_fit_factor)(make_model, z_train, y_train[:, k], z_test, y_test[:, k])
        for k in range(y_train.shape[1])
    )
    importance = np.stack([fit[0] for fit in fits], axis=1)
    train_predictions = np.stack([fit[1] for fit in fits], axis=1)
    test_predictions = np.stack([fit[2] for fit in fits], axis=1)
    return importance, train_predictions, test_predictions


def _scores(importance: np.ndarray) -> tuple[dict[str, float], list[str]]:
    d, d_notes = disentanglement(importance)
    c, c_notes = completeness(importance)
    return {"disentanglement": d, "completeness": c}, d_notes + c_notes


@variant("dci@dlib", needs_test=True, discrete_factors=True, option_types={"n_jobs": (int, None)}, n_jobs=-1)
def dci_dlib(z_train, y_train, z_test, y_test, *, seed, n_jobs):
    """DCI with disentanglement_lib's classifier; informativeness is accuracy."""
    from sklearn.ensemble import GradientBoostingClassifier

    importance, train_pred, test_pred = _importance(
        lambda: GradientBoostingClassifier(random_state=seed), z_train, y_train, z_test, y_test, n_jobs
    )
    scores, notes = _scores(importance)
    scores["informativeness_train"] = float(np.mean(train_pred == y_train, axis=0).mean())
    scores["informativeness_test"] = float(np.mean(test_pred == y_test, axis=0).mean())
    return MetricResult(scores, {"importance": importance}, notes)


@variant("dci@reg", needs_test=True, option_types={"n_jobs": (int, None)}, n_jobs=-1)
def dci_regressor(z_train, y_train, z_test, y_test, *, seed, n_jobs):
    """DCI with a gradient-boosted regressor; informativeness is R^2 (and MSE)."""
    from sklearn.ensemble import GradientBoostingRegressor
    from sklearn.metrics import mean_squared_error, r2_score

    importance, train_pred, test_pred = _importance(
        lambda: GradientBoostingRegressor(random_state=seed), z_train, y_train, z_test, y_test, n_jobs
    )
    scores, notes = _scores(importance)
    scores["informativeness_train"] = float(r2_score(y_train, train_pred))
    scores["informativeness_test"] = float(r2_score(y_test, test_pred))
    scores["mse_train"] = float(mean_squared_error(y_train, train_pred))
    scores["mse_test"] = float(mean_squared_error(y_test, test_pred))
    return MetricResult(scores, {"importance": importance}, notes)
