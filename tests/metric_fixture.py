"""The metrics reference fixture, samples-first.

A project-defined sample from one ``numpy.random.RandomState(0)`` (stable across numpy versions):
three integer factors and four codes, train drawn before test. ``tests/test_metrics_golden.py`` holds
the values that google-research/disentanglement_lib's own metric functions
(``disentanglement_lib/evaluation/metrics/``) give on it.
"""

import numpy as np


def make(rs: np.random.RandomState, n: int) -> tuple[np.ndarray, np.ndarray]:
    ys = rs.randint(0, 10, size=(3, n)).astype(np.float64)
    eps = rs.randn(4, n)
    z = np.stack([ys[0] + 0.1 * eps[0], ys[1] + 0.5 * ys[0] + 0.1 * eps[1], ys[2] ** 2 / 10 + 0.1 * eps[2], eps[3]])
    return z.T, ys.T


def golden_fixture():
    """(z_train, y_train, z_test, y_test): train n = 2000 drawn first, test n = 1000, one RandomState(0)."""
    rs = np.random.RandomState(0)
    z_train, y_train = make(rs, 2000)
    z_test, y_test = make(rs, 1000)
    return z_train, y_train, z_test, y_test
