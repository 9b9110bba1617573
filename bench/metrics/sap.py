"""SAP: the separated attribute predictability score (Kumar et al., ICLR 2018), as dlib's ``sap_score.py``.

A score matrix S [codes x factors]; SAP = mean over factors of the gap between the two best codes.

* ``sap@discrete``: S_ij = test accuracy of ``LinearSVC(C=0.01, class_weight="balanced")`` trained on
  code i alone to predict factor j (dlib's default). Seeded here.
* ``sap@continuous``: S_ij = cov(z_i, y_j)^2 / (var z_i var y_j) on the train split, 0 for a code
  whose variance is at most 1e-12.
"""

from __future__ import annotations

import numpy as np

from crlbench.metrics.base import MetricResult, top_two_gap, variant


def _result(matrix: np.ndarray) -> MetricResult:
    notes = ["single code: the second-best score is taken as 0"] if matrix.shape[0] == 1 else []
    return MetricResult({"sap": float(np.mean(top_two_gap(matrix)))}, {"sap_matrix": matrix}, notes)


@variant("sap@discrete", needs_test=True, discrete_factors=True, C=0.01)
def sap_discrete(z_train, y_train, z_test, y_test, *, seed, C):
    """SAP with one linear SVM per code and factor, scored on the test split."""
    from sklearn.svm import LinearSVC

    matrix = np.zeros((z_train.shape[1], y_train.shape[1]))
    for i in range(z_train.shape[1]):
        for j in range(y_train.shape[1]):
            classifier = LinearSVC(C=C, class_weight="balanced", random_state=seed)
            classifier.fit(z_train[:, i : i + 1], y_train[:, j])
            matrix[i, j] = np.mean(classifier.predict(z_test[:, i : i + 1]) == y_test[:, j])
    return _result(matrix)


@variant("sap@continuous")
def sap_continuous(z_train, y_train, z_test, y_test, *, seed):
    """SAP with squared correlations on the train split."""
    matrix = np.zeros((z_train.shape[1], y_train.shape[1]))
    for i in range(z_train.shape[1]):
        for j in range(y_train.shape[1]):
            covariance = np.cov(z_train[:, i], y_train[:, j], ddof=1)
            if covariance[0, 0] > 1e-12:
                matrix[i, j] = covariance[0, 1] ** 2 / (covariance[0, 0] * covariance[1, 1])
    return _result(matrix)
