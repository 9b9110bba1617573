"""Modularity and explicitness (Ridgeway & Mozer, NeurIPS 2018), as dlib's ``modularity_explicitness.py``.

Modularity: with m [codes x factors] the mutual information of binned codes and factors, each code
scores 1 - (sum_k m_jk^2 - max_k m_jk^2) / (max_k m_jk^2 (K - 1)), 0 if it carries no information;
the score is the mean over codes. Explicitness: per factor, a ``LogisticRegression`` on all z-scored
codes, scored by macro one-vs-rest ROC-AUC, on train and on test.

Two corrections to dlib, each noted in the result when it applies: the test labels are binarised
with the classes seen in training (dlib refits the binariser on test and fails when a class is
missing there), classes absent from an evaluation split are left out of its AUC; a constant code
is z-scored with a unit scale instead of dividing by zero.
"""

from __future__ import annotations

import warnings

import numpy as np

from crlbench.metrics.base import MetricResult, histogram_discretize, mutual_information_matrix, variant


def modularity(information: np.ndarray) -> float:
    squared = information**2
    best = squared.max(axis=1)
    factors = information.shape[1]
    with np.errstate(divide="ignore", invalid="ignore"):
        delta = (squared.sum(axis=1) - best) / (best * (factors - 1))
    per_code = np.where(best == 0, 0.0, 1.0 - delta)
    return float(per_code.mean())


def explicitness(z_train, labels_train, z_test, labels_test, notes: list[str]) -> tuple[float, float]:
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.preprocessing import MultiLabelBinarizer

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        classifier = LogisticRegression().fit(z_train, labels_train)
    if any(issubclass(w.category, ConvergenceWarning) for w in caught):
        notes.append("explicitness: the logistic regression (scikit-learn defaults, as dlib) did not converge")
    binarizer = MultiLabelBinarizer(classes=classifier.classes_)
    aucs = []
    for name, z, labels in (("train", z_train, labels_train), ("test", z_test, labels_test)):
        truth = binarizer.fit_transform(labels[:, None])
        probabilities = classifier.predict_proba(z)
        present = (truth.sum(axis=0) > 0) & (truth.sum(axis=0) < len(truth))
        if not present.all():
            notes.append(f"explicitness ({name}): classes {classifier.classes_[~present].tolist()} left out of the AUC")
        aucs.append(roc_auc_score(truth[:, present], probabilities[:, present]))
    return aucs[0], aucs[1]


@variant("modularity", needs_test=True, discrete_factors=True, code_bins=20)
def modularity_explicitness(z_train, y_train, z_test, y_test, *, seed, code_bins):
    """Modularity of binned codes and explicitness of a logistic regression."""
    notes: list[str] = []
    information = mutual_information_matrix(histogram_discretize(z_train, code_bins), y_train)
    if y_train.shape[1] == 1:
        notes.append("modularity is 1 by convention with a single factor")
        score = float(np.mean(information.max(axis=1) > 0))
    else:
        score = modularity(information)
    mean, scale = z_train.mean(axis=0), z_train.std(axis=0)
    if np.any(scale == 0):
        notes.append(f"constant codes {np.flatnonzero(scale == 0).tolist()} z-scored with unit scale")
        scale = np.where(scale == 0, 1.0, scale)
    train, test = (z_train - mean) / scale, (z_test - mean) / scale
    pairs = [explicitness(train, y_train[:, k], test, y_test[:, k], notes) for k in range(y_train.shape[1])]
    scores = {
        "modularity": score,
        "explicitness_train": float(np.mean([p[0] for p in pairs])),
        "explicitness_test": float(np.mean([p[1] for p in pairs])),
    }
    return MetricResult(scores, {"mutual_information": information}, notes)
