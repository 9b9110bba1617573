"""Hand-checkable cases and bad input for every metric variant."""

import numpy as np
import pytest

from crlbench.core import registry
from crlbench.core.errors import ConfigError, UnknownNameError
from crlbench.metrics import compute
from crlbench.metrics.dci import completeness, disentanglement
from crlbench.metrics.modularity import modularity

ALL_VARIANTS = ["dci@dlib", "dci@reg", "irs@dlib", "irs@suter", "irs@icmvae", "mig", "sap@discrete", "sap@continuous",
                "modularity", "mcc@pearson", "mcc@spearman", "r2@linear", "mic@aligned", "mic@matched", "mic@flat"]


def discrete_factors(n=400, k=3, seed=0):
    return np.random.default_rng(seed).integers(0, 5, size=(n, k)).astype(float)


def test_every_variant_is_registered_with_a_version():
    for name in ALL_VARIANTS:
        spec = registry.metric(name)
        assert spec.name == name and spec.version


def test_importance_identity_is_perfectly_disentangled_and_complete():
    assert disentanglement(np.eye(3))[0] == pytest.approx(1.0, abs=1e-9)
    assert completeness(np.eye(3))[0] == pytest.approx(1.0, abs=1e-9)


def test_uniform_importance_is_fully_entangled():
    assert disentanglement(np.ones((3, 3)))[0] == pytest.approx(0.0, abs=1e-9)
    assert completeness(np.ones((3, 3)))[0] == pytest.approx(0.0, abs=1e-9)
    # Two codes each spread evenly over two factors: every entropy is maximal.
    assert disentanglement(np.array([[0.5, 0.5], [0.5, 0.5]]))[0] == pytest.approx(0.0, abs=1e-9)


def test_modularity_of_one_factor_per_code_is_one_and_of_spread_codes_zero():
    assert modularity(np.eye(3)) == pytest.approx(1.0)
    assert modularity(np.ones((2, 3))) == pytest.approx(0.0)


def test_perfect_codes_score_one_on_correlation_metrics():
    y = np.random.default_rng(1).normal(size=(500, 3))
    z = y[:, [2, 0, 1]] * [2.0, -1.0, 0.5] + 3.0  # permuted, rescaled, sign-flipped
    result = compute("mcc@pearson", z, y)
    assert result.scores["mcc"] == pytest.approx(1.0)
    np.testing.assert_array_equal(result.matrices["assignment"], np.eye(3)[:, [1, 2, 0]])
    assert compute("r2@linear", z, y, z, y).scores["r2"] == pytest.approx(1.0)
    assert compute("sap@continuous", z, y).scores["sap"] > 0.99


def test_codes_equal_to_discrete_factors_have_irs_one():
    y = discrete_factors()
    assert compute("irs@suter", y.copy(), y).scores["irs"] == pytest.approx(1.0)


def test_a_constant_code_is_dropped_and_said_so():
    y = discrete_factors()
    z = np.column_stack([y + 0.01 * np.random.default_rng(0).normal(size=y.shape), np.zeros(len(y))])
    irs = compute("irs@dlib", z, y)
    assert irs.scores["num_active_dims"] == 3.0
    assert "constant codes dropped: [3]" in irs.notes
    assert np.isnan(irs.matrices["irs_matrix"][3]).all()
    mcc = compute("mcc@pearson", z, y)
    assert mcc.scores["mcc"] > 0.99 and any("constant" in note for note in mcc.notes)
    explicit = compute("modularity", z, y, z, y)
    assert any("unit scale" in note for note in explicit.notes)


def test_more_codes_than_factors_assign_each_factor_a_distinct_code():
    y = np.random.default_rng(2).normal(size=(300, 2))
    z = np.column_stack([np.random.default_rng(3).normal(size=300), y[:, 1], y[:, 0], np.zeros(300) + 1])
    result = compute("mcc@spearman", z, y)
    assert result.scores["mcc"] == pytest.approx(1.0)
    assert result.info["alignment"]["blocks"] == ((2,), (1,))


def test_a_single_factor_is_handled_with_a_stated_convention():
    y = discrete_factors(k=1)
    z = np.column_stack([y[:, 0] + 0.1, np.random.default_rng(0).normal(size=len(y))])
    dci = compute("dci@reg", z, y, z, y)
    assert dci.scores["disentanglement"] == 1.0 and any("single factor" in n for n in dci.notes)
    assert compute("mig", z, y).scores["mig"] > 0.5
    assert compute("modularity", z, y, z, y).scores["modularity"] == pytest.approx(1.0)


def test_continuous_factors_need_a_bin_count_for_discrete_variants():
    y = np.random.default_rng(0).normal(size=(200, 2))
    z = y + 0.1
    with pytest.raises(ConfigError, match=r"metric 'mig': argument y_train column 0 is continuous.*factor_bins=N"):
        compute("mig", z, y)
    result = compute("mig", z, y, factor_bins=10)
    assert "factors binned into 10 equal-width bins fitted on the train split" in result.notes
    assert result.info["options"]["factor_bins"] == 10


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"z_train": np.full((10, 2), np.nan)}, "argument z_train holds NaN or infinite values"),
        ({"y_train": np.ones((9, 2))}, "z_train and y_train must have the same number of samples; got 10 and 9"),
        ({"z_train": np.ones(10)}, "argument z_train must be a 2-D array"),
        ({"z_train": np.ones((1, 2)), "y_train": np.ones((1, 2))}, "argument z_train needs at least 2 samples"),
    ],
)
def test_bad_arrays_are_refused_naming_the_variant_and_argument(kwargs, message):
    arrays = {"z_train": np.random.default_rng(0).normal(size=(10, 2)), "y_train": np.ones((10, 2))}
    arrays.update(kwargs)
    with pytest.raises(ConfigError, match=f"metric 'sap@continuous': {message}"):
        compute("sap@continuous", arrays["z_train"], arrays["y_train"])


def test_too_many_bins_for_the_samples_is_refused():
    y = discrete_factors(n=30)
    with pytest.raises(ConfigError, match="option 'code_bins'=20 leaves fewer than two samples per bin for 30 samples"):
        compute("mig", y, y)


def test_unknown_options_variants_and_missing_test_split_are_refused():
    y = discrete_factors()
    with pytest.raises(UnknownNameError, match=r"metric 'irs@dlib': unknown option 'quantile'.*did you mean"):
        compute("irs@dlib", y, y, quantile=0.5)
    with pytest.raises(UnknownNameError, match=r"unknown metric 'dci@regg'.*did you mean 'dci@reg'"):
        compute("dci@regg", y, y)
    with pytest.raises(ConfigError, match="metric 'r2@linear': needs a test split"):
        compute("r2@linear", y, y)
    with pytest.raises(ConfigError, match="option 'est' must be one of mic_approx, mic_e"):
        compute("mic@matched", y, y, est="mic_b")
    with pytest.raises(ConfigError, match="option 'block_size' must give each of the 3 factors a block"):
        compute("mic@aligned", y, y, block_size=2)


def test_results_record_provenance():
    y = discrete_factors()
    result = compute("sap@discrete", y + 0.5, y, y + 0.5, y, seed=7)
    assert result.info["variant"] == "sap@discrete" and result.info["seed"] == 7
    assert {"numpy", "scipy", "scikit-learn", "python"} <= set(result.info["libraries"])
    assert result.info["n_train"] == 400 and result.info["options"] == {"C": 0.01, "factor_bins": None}
