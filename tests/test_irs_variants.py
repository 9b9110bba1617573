"""The IRS variants by name: irs@suter (formerly irs@paper, still accepted with a warning) and irs@icmvae."""

import warnings

import numpy as np
import pytest

from crlbench.cli import main
from crlbench.core import registry
from crlbench.metrics import compute
from crlbench.suites.suite_config import suite_from_dict
from metric_fixture import golden_fixture
from suite_fixture import TINY

RENAMED = r"metric 'irs@paper' was renamed 'irs@suter'"


def only_future_warnings(record):
    assert record and all(w.category is FutureWarning for w in record)


def test_irs_paper_warns_and_gives_the_scores_of_irs_suter():
    fixture = golden_fixture()
    with pytest.warns(FutureWarning, match=RENAMED) as record:
        old = compute("irs@paper", *fixture)
    only_future_warnings(record)
    new = compute("irs@suter", *fixture)
    assert old.scores == new.scores
    assert new.scores["irs"] == pytest.approx(0.7109275555, abs=1e-9)  # dlib with q = 1.0
    assert old.info["variant"] == "irs@suter" and old.info["options"] == {"diff_quantile": 1.0, "factor_bins": 20}


def test_the_alias_resolves_in_the_registry_but_is_not_listed(capsys):
    with pytest.warns(FutureWarning, match=RENAMED):
        assert registry.metric("irs@paper") is registry.metric("irs@suter")
    metrics = registry.registry("metric")
    assert "irs@paper" not in metrics.names() and {"irs@suter", "irs@icmvae", "irs@dlib"} <= set(metrics.names())
    assert "irs@paper" in metrics and metrics.aliases() == {"irs@paper": "irs@suter"}
    assert main(["list", "metrics"]) == 0
    out = capsys.readouterr().out
    assert "irs@suter" in out and "irs@icmvae" in out and "irs@paper" not in out


def test_a_suite_listing_irs_paper_loads_as_irs_suter_with_a_warning():
    data = {**TINY, "metrics": ["irs@paper"]}
    with pytest.warns(FutureWarning, match=RENAMED) as record:
        suite = suite_from_dict(data, "suite.yaml")
    only_future_warnings(record)
    assert [m.name for m in suite.metrics] == ["irs@suter"]
    data = {**TINY, "metrics": [{"name": "irs@paper", "options": {"diff_quantile": 0.9}}]}
    with pytest.warns(FutureWarning, match=RENAMED):
        suite = suite_from_dict(data, "suite.yaml")
    assert [(m.name, m.options) for m in suite.metrics] == [("irs@suter", {"diff_quantile": 0.9})]


def test_irs_suter_and_irs_icmvae_do_not_warn():
    y = np.repeat(np.arange(4.0), 10)[:, None]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        compute("irs@suter", y + 0.0, y)
        compute("irs@icmvae", y + 0.0, y)


def test_irs_icmvae_has_the_reference_options():
    spec = registry.metric("irs@icmvae")
    assert spec.defaults == {"diff_quantile": 0.99}
    assert not spec.needs_test and not spec.discrete_factors


def test_irs_icmvae_num_active_dims_is_the_sum_of_latent_values_not_a_count():
    z = np.array([[1.0, 2.0], [3.0, -1.0], [0.5, 4.0], [2.0, 0.0]])
    y = np.array([[0.0], [0.0], [1.0], [1.0]])
    # By hand: 1 + 2 + 3 - 1 + 0.5 + 4 + 2 + 0 = 11.5 (every value of every code), while 2 codes are active.
    result = compute("irs@icmvae", z, y)
    assert result.scores["num_active_dims"] == 11.5
    assert result.scores["num_active_dims"] != 2.0
    assert compute("irs@dlib", z, y, factor_bins=2).scores["num_active_dims"] == 2.0  # the count
    assert any("sum of all latent values" in note for note in result.notes)


def test_irs_icmvae_groups_by_exact_factor_values_without_binning():
    # 0 and 0.1 are distinct factor values but share the first of 20 equal-width bins over [0, 10].
    # Each row is repeated 10 times, which changes no quantile below, so that 20 bins are allowed.
    y = np.repeat([[0.0], [0.0], [0.1], [0.1], [10.0], [10.0]], 10, axis=0)
    z = np.repeat([[0.0], [2.0], [1.0], [3.0], [4.0], [6.0]], 10, axis=0)
    # By hand, exact groups {0, 2}, {1, 3}, {4, 6}: every deviation from the group mean is 1, so each
    # group's quantile is 1 and their mean is 1; the normaliser is max |z - 16/6| = 6 - 8/3 = 10/3.
    # IRS = 1 - 1 / (10/3) = 0.7.
    result = compute("irs@icmvae", z, y)
    assert result.scores["irs"] == pytest.approx(0.7, abs=1e-12)
    np.testing.assert_allclose(result.matrices["irs_matrix"], [[0.7]], atol=1e-12)
    # Binned (irs@dlib: 20 bins, q = 0.99), the groups are {0, 2, 1, 3} (half the deviations |z - 1.5|
    # are 0.5, half 1.5: the 99% quantile is 1.5) and {4, 6} (1): 1 - 1.25 / (10/3) = 0.625.
    assert compute("irs@dlib", z, y).scores["irs"] == pytest.approx(0.625, abs=1e-12)


def test_irs_icmvae_keeps_constant_codes_like_the_reference():
    y = np.repeat(np.arange(4.0), 10)[:, None]
    z = np.column_stack([y[:, 0], np.full(len(y), 2.0)])
    result = compute("irs@icmvae", z, y)
    assert np.isnan(result.scores["irs"]) and np.isnan(result.matrices["irs_matrix"][1]).all()
    assert any("constant codes [1]" in note for note in result.notes)
    assert compute("irs@suter", z, y).scores["irs"] == pytest.approx(1.0)  # drops the constant code
