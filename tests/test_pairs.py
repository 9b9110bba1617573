"""Weakly supervised pairs: drawn from the SCM for Pendulum and Flow, stored by CausalCircuit, fed to a
method that trains on them, and a not-applicable cell (not a failed one) on a dataset without them."""

import numpy as np
import pytest

from crlbench.core import registry
from crlbench.core.errors import NotApplicable
from crlbench.datasets.base import PAIR_KEYS
from crlbench.suites.results import cell_dir, read_result
from crlbench.suites.suite import plan, run_suite
from crlbench.suites.suite_config import load_suite
from suite_fixture import plugin_path, write_suite  # noqa: F401 (plugin_path: a fixture)


@pytest.mark.parametrize("name", ["pendulum", "flow"])
def test_generated_pairs_intervene_on_one_factor_with_the_same_noise(name, tmp_path):
    dataset = registry.dataset(name, cache_dir=tmp_path, size=32)
    split = dataset.split("test")
    pairs = dataset.pairs("test")
    targets, after = pairs["intervention_targets"], pairs["factors_after"]
    assert set(PAIR_KEYS) == set(pairs) and len(targets) == len(split)
    assert set(np.unique(targets)) == {-1, 0, 1, 2, 3}  # none or one factor, each drawn
    none = targets == -1
    assert np.array_equal(after[none], split.factors[none])
    assert np.array_equal(pairs["images_after"][none], split.images[none])
    for k in range(4):
        rows = targets == k
        values = after[rows, k]
        assert np.isin(values, split.factors[:, k]).all()  # a value of the factor's observed marginal
        expected = dataset.intervene(split.factors[rows], split.noise[rows], k, values)  # same noise
        assert np.array_equal(after[rows], expected)
        untouched = [j for j in range(4) if j != k and j not in dataset.card.descendants(k)]
        assert np.array_equal(after[rows][:, untouched], split.factors[rows][:, untouched])
    assert np.array_equal(pairs["images_after"][:50], dataset.render(after[:50], split.noise[:50]))


def test_generated_pairs_are_seeded_cached_and_leave_the_observations_alone(tmp_path):
    first = registry.dataset("pendulum", cache_dir=tmp_path / "a", size=32)
    images = first.split("train").images.copy()
    pairs = first.pairs("train")
    again = registry.dataset("pendulum", cache_dir=tmp_path / "b", size=32).pairs("train")
    assert all(np.array_equal(pairs[key], again[key]) for key in PAIR_KEYS)  # same seed, same pairs
    reloaded = registry.dataset("pendulum", cache_dir=tmp_path / "a", size=32)
    assert all(np.array_equal(pairs[key], reloaded.pairs("train")[key]) for key in PAIR_KEYS)  # from the cache
    assert reloaded._pair_arrays is not None and len(list((tmp_path / "a").glob("*.npz"))) == 2
    assert np.array_equal(reloaded.split("train").images, images)  # the splits' own arrays are untouched


def test_causal_circuit_gives_the_pairs_it_stores(tmp_path):
    dataset = registry.dataset("causal_circuit", cache_dir=tmp_path, size=32, n_train=40, n_val=10, n_test=10)
    extras = dataset.split("train").extras
    pairs = dataset.pairs("train")
    assert all(pairs[key] is extras[key] for key in PAIR_KEYS)


def test_a_dataset_without_pairs_says_so(tmp_path, plugin_path):
    import crl_plugin_pairs  # noqa: F401  (registers pendulum_unpaired)

    dataset = registry.dataset("pendulum_unpaired", cache_dir=tmp_path, size=32)
    with pytest.raises(NotApplicable, match="'pendulum_unpaired' has no intervention pairs"):
        dataset.pairs("train")


def test_a_method_on_pairs_trains_on_them_and_is_not_applicable_without_them(tmp_path, plugin_path):
    import crl_plugin_pairs

    crl_plugin_pairs.SEEN_AFTER.clear()
    path = write_suite(tmp_path, plugins=["crl_plugin_models", "crl_plugin_pairs"],
                       datasets=[{"name": "pendulum", "params": {"size": 32}},
                                 {"name": "pendulum_unpaired", "params": {"size": 32}}],
                       models=[{"name": "paired_ae"}, {"name": "linear_ae"}], metrics=["mcc@pearson", "needs_pairs@test"])
    config = load_suite(path)
    workdir = tmp_path / "work"
    summary = run_suite(config, workdir, progress=False)
    assert (summary.ok, summary.not_applicable, summary.failed) == (3, 1, 0)
    records = {(c.dataset, c.model): read_result(cell_dir(workdir, c.hash)) for c in config.cells()}

    skipped = records[("pendulum_unpaired", "paired_ae")]
    assert skipped["status"] == "not_applicable" and skipped["error"]["type"] == "NotApplicable"
    assert "has no intervention pairs" in skipped["error"]["message"] and "scores" not in skipped
    paired = records[("pendulum", "paired_ae")]
    assert paired["status"] == "ok" and paired["given"] == ["pairs"] and "after" in paired["history"]["epochs"][0]
    assert paired["scores"]["needs_pairs@test.one"] == 1.0 and "not_applicable" not in paired
    assert crl_plugin_pairs.SEEN_AFTER and all(shape == (16, 3, 32, 32) for shape, _ in crl_plugin_pairs.SEEN_AFTER)
    for dataset in ("pendulum", "pendulum_unpaired"):  # a metric that does not apply: listed, not an error
        plain = records[(dataset, "linear_ae")]
        assert plain["status"] == "ok" and "partial" not in plain and "metric_errors" not in plain
        assert plain["not_applicable"] == {"needs_pairs@test": "model 'linear_ae' does not train on pairs"}

    assert {p.state for p in plan(config, workdir)} == {"done"}  # nothing to retry
    again = run_suite(config, workdir, retry_failed=True, progress=False)
    assert (again.ok, again.cached, again.not_applicable, again.failed) == (0, 3, 1, 0)


def test_the_hash_of_a_cell_on_generated_pairs_records_their_version(tmp_path, plugin_path):
    path = write_suite(tmp_path, plugins=["crl_plugin_models", "crl_plugin_pairs"],
                       models=[{"name": "paired_ae"}, {"name": "linear_ae"}])
    paired, plain = load_suite(path).cells()
    assert paired.identity()["pairs"] == "1" and "pairs" not in plain.identity()


def test_the_report_prints_scores_that_do_not_apply_as_n_a(tmp_path, plugin_path):
    from crlbench.reports.report import write_report
    from crlbench.suites.results import load_records

    path = write_suite(tmp_path, plugins=["crl_plugin_models", "crl_plugin_pairs"],
                       datasets=[{"name": "pendulum", "params": {"size": 32}},
                                 {"name": "pendulum_unpaired", "params": {"size": 32}}],
                       models=[{"name": "paired_ae"}, {"name": "linear_ae"}], metrics=["mcc@pearson", "needs_pairs@test"])
    run_suite(load_suite(path), tmp_path / "work", progress=False)
    write_report(load_records(tmp_path / "work"), tmp_path / "report", title="pairs",
                 metrics=["mcc@pearson.mcc", "needs_pairs@test.one"], reference_label="paired_ae")
    text = (tmp_path / "report" / "leaderboard.md").read_text()
    assert "4 (3 finished, 0 failed, 1 not applicable)" in text
    assert "## Failed cells\n\nNone." in text  # a method that does not apply has not failed

    def scores(dataset):  # model -> its score cells in the leaderboard of ``dataset``
        table = text.split(f"### {dataset}\n\n")[1].split("\n\n")[0]
        return {line.split("|")[1].strip(): [cell.strip() for cell in line.split("|")[4:-1]]
                for line in table.splitlines()[2:]}

    paired, unpaired = scores("pendulum"), scores("pendulum_unpaired")
    assert paired["linear_ae"][1] == "n/a" and paired["paired_ae"][1] not in ("n/a", "")
    assert unpaired["paired_ae"] == ["n/a", "n/a"] and unpaired["linear_ae"][1] == "n/a"
    assert unpaired["linear_ae"][0] not in ("n/a", "")
