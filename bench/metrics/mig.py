"""MIG: the mutual information gap (Chen et al., NeurIPS 2018), as disentanglement_lib's ``mig.py``.

Codes are binned into ``code_bins`` equal-width bins; MIG = mean_k (I_(1)k - I_(2)k) / H(y_k), the gap
between the two codes most informative about factor k, in nats, normalised by its entropy.
"""

from __future__ import annotations

import numpy as np

from crlbench.core.errors import ConfigError
from crlbench.metrics.base import (
    MetricResult,
    discrete_entropy,
    histogram_discretize,
    mutual_information_matrix,
    top_two_gap,
    variant,
)


@variant("mig", discrete_factors=True, code_bins=20)
def mig(z_train, y_train, z_test, y_test, *, seed, code_bins):
    """Mutual information gap on binned codes and discrete factors."""
    information = mutual_information_matrix(histogram_discretize(z_train, code_bins), y_train)
    entropy = discrete_entropy(y_train)
    if np.any(entropy == 0):
        constant = np.flatnonzero(entropy == 0).tolist()
        raise ConfigError(f"metric 'mig': y_train factors {constant} are constant; MIG needs varying factors")
    notes = ["single code: the second-best information is taken as 0"] if z_train.shape[1] == 1 else []
    score = float(np.mean(top_two_gap(information) / entropy))
    return MetricResult({"mig": score}, {"mutual_information": information}, notes)
