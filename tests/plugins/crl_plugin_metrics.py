"""A metric added from outside crlbench that fails on demand, for the tests of a cell whose metric
raises (tests/test_plugin_contract.py): ``broken@test`` raises while ``FAIL`` is true."""

import numpy as np

from crlbench.metrics.base import MetricResult, variant

FAIL = True


@variant("broken@test")
def broken(z_train, y_train, z_test, y_test, *, seed):
    """Raises while FAIL is set; else the mean absolute code."""
    if FAIL:
        raise RuntimeError("broken@test was asked to fail")
    return MetricResult({"mean_abs": float(np.abs(z_train).mean())})
