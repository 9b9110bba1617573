"""Agreement with disentanglement_lib's own functions on the reference fixture (tests/metric_fixture.py).

Agreement to every printed digit (1e-9 on values printed to 10 decimals) is asserted only for scores
that are closed forms of the data: counts, histograms, mutual information, correlations, a least-squares
fit. BLAS and SIMD kernels, which differ between CPUs, change those only in their last bits (about
1e-15), far inside the printed digits. Scores of fitted classifiers are not closed forms: the iterative
solvers of ``LinearSVC`` (``sap@discrete``) and ``LogisticRegression`` (``modularity``'s explicitness)
and seeded gradient-boosted trees (``dci@dlib``) run on BLAS, whose rounding differs between CPUs, and
may then classify (or rank) a few samples differently. For those, reproducibility is two runs on one
machine, and the golden holds within a stated cross-machine tolerance.
"""

import numpy as np
import pytest
import sklearn

from crlbench.metrics import compute
from metric_fixture import golden_fixture

FIXTURE = golden_fixture()

# dlib's values, measured with numpy 1.26.4, scipy 1.17.1, scikit-learn 1.9.1 (deterministic metrics).
GOLDEN = {
    ("mig", "mig"): 0.6934361297,
    ("sap@continuous", "sap"): 0.8459607258,
    ("modularity", "modularity"): 0.7588650167,
    ("irs@dlib", "irs"): 0.7368607247,
    ("irs@suter", "irs"): 0.7109275555,
    ("mcc@pearson", "mcc"): 0.9529953953,
    ("mcc@spearman", "mcc"): 0.9620256862,
    ("r2@linear", "r2"): 0.9745953138,
    ("r2@linear", "r2_0"): 0.998858,
    ("r2@linear", "r2_1"): 0.998568,
    ("r2@linear", "r2_2"): 0.926360,
}
PRINTED_DIGITS = {("r2@linear", "r2_0"): 5e-7, ("r2@linear", "r2_1"): 5e-7, ("r2@linear", "r2_2"): 5e-7}
TEST_PREDICTIONS = 1000 * 3  # test samples x factors of the fixture
# dlib's values for fitted classifiers (same measurement), with the cross-machine tolerance each holds to.
FITTED = {
    # An accuracy of one SVM moves by 1/1000 per changed prediction, SAP (a mean over 3 factors of gaps
    # between accuracies) by up to 1/3000: tolerance 3 predictions.
    ("sap@discrete", "sap"): (0.1573333333, 3 / TEST_PREDICTIONS),
    # A one-vs-rest ROC AUC moves by 1/(positives x negatives), about 1e-5, per pair of samples whose
    # probabilities swap order: tolerance about ten swaps.
    ("modularity", "explicitness_train"): (0.9944764311, 1e-4),
    ("modularity", "explicitness_test"): (0.9940054081, 1e-4),
}


@pytest.mark.parametrize("variant, key", sorted(GOLDEN))
def test_deterministic_variant_equals_dlib(variant, key):
    result = compute(variant, *FIXTURE, seed=0)
    # The goldens are printed to 10 decimals: agreement to 1e-9 is agreement to every printed digit.
    assert result.scores[key] == pytest.approx(GOLDEN[variant, key], abs=PRINTED_DIGITS.get((variant, key), 1e-9))


@pytest.mark.parametrize("variant, key", sorted(FITTED))
def test_fitted_variant_is_reproducible_and_within_the_cross_machine_tolerance_of_dlib(variant, key):
    first, again = compute(variant, *FIXTURE, seed=0), compute(variant, *FIXTURE, seed=0)
    assert first.scores == again.scores  # exactly the same numbers on one machine
    golden, tolerance = FITTED[variant, key]
    assert first.scores[key] == pytest.approx(golden, abs=tolerance)


def test_irs_counts_active_dimensions():
    assert compute("irs@dlib", *FIXTURE).scores["num_active_dims"] == 4.0


def test_seeded_dci_dlib_is_within_the_cross_release_tolerance_and_reproducible():
    first = compute("dci@dlib", *FIXTURE, seed=0, n_jobs=2)
    again = compute("dci@dlib", *FIXTURE, seed=0, n_jobs=1)
    assert first.scores == again.scores  # the same numbers on one machine, whatever the process count
    # Across CPUs the boosted trees may classify a few of the 3000 test predictions (1000 samples x 3
    # factors) differently: 0.95567 and 0.95533 (one prediction apart) were measured on two x86-64
    # machines. Tolerance: 6 predictions of 3000.
    samples = 6 / TEST_PREDICTIONS
    assert first.scores["informativeness_train"] == pytest.approx(0.9973333333, abs=samples)
    assert first.scores["informativeness_test"] == pytest.approx(0.9556666667, abs=samples)
    # Measured: D 0.77217 and C 0.81579 against dlib's 0.77208 / 0.81578 on scikit-learn 1.9.1 (its seeding
    # of the per-factor trees differs from ours, so only closeness is asserted).
    assert first.scores["disentanglement"] == pytest.approx(0.7720763619, abs=1e-3)
    assert first.scores["completeness"] == pytest.approx(0.8157803325, abs=1e-3)
    assert first.info["libraries"]["scikit-learn"] == sklearn.__version__


def test_dci_regressor_reports_r2_and_mse_and_is_seeded():
    result = compute("dci@reg", *FIXTURE, seed=3)
    assert set(result.scores) == {"disentanglement", "completeness", "informativeness_train",
                                  "informativeness_test", "mse_train", "mse_test"}
    assert 0.9 < result.scores["informativeness_test"] <= 1.0
    assert result.matrices["importance"].shape == (4, 3)
    np.testing.assert_allclose(result.matrices["importance"].sum(axis=0), 1.0)
    assert compute("dci@reg", *FIXTURE, seed=3).scores == result.scores
