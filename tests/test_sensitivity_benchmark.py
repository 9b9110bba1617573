"""benchmarks/sensitivity.py, the paired comparison of the top pair behind the sensitivity suites (docs/suites.md)."""

import json

import pytest

from benchmark_fixture import load_benchmark
from report_fixture import write_cells


@pytest.fixture(scope="module")
def sensitivity():
    return load_benchmark("sensitivity")


def test_a_pair_apart_on_every_seed_is_ordered_and_one_seed_orders_nothing(sensitivity, tmp_path):
    write_cells(tmp_path / "three", datasets=("pendulum",), labels=("icm_vae", "causal_vae"), failed=None,
                codes=4, samples=2, epochs=3)  # the fixture's icm_vae is far better on every latent score
    write_cells(tmp_path / "one", datasets=("pendulum",), labels=("icm_vae", "causal_vae"), seeds=(0,),
                failed=None, codes=4, samples=2, epochs=3)
    rows = sensitivity.table(sensitivity.condition_records({"32px-long": tmp_path / "three", "64px-long": tmp_path / "one"}),
                             "icm_vae", "causal_vae")
    by = {(row["condition"], row["score"]): row for row in rows}
    three = by["32px-long", "dci@reg.disentanglement"]
    assert three["pairs"] == 3 and three["low"] > 0 and three["ahead"] == "icm_vae" and three["d_z"] > 0
    assert by["64px-long", "dci@reg.disentanglement"]["ahead"] == "neither (fewer than 3 pairs)"


def test_flagged_seeds_are_counted_per_method(sensitivity, tmp_path):
    (folder, *_), = [write_cells(tmp_path, datasets=("pendulum",), labels=("icm_vae",), seeds=(0,), failed=None,
                                 codes=4, samples=2, epochs=3)]
    record = json.loads((folder / "result.json").read_text())
    record["checks"] = {"constant_codes": {"flagged": True, "invalidates": ["dci@reg.*"]}}
    (folder / "result.json").write_text(json.dumps(record))
    records = sensitivity.load_records(tmp_path / "cells")
    assert sensitivity.flagged_seeds(records, "icm_vae", "dci@reg.disentanglement") == 1
    assert sensitivity.flagged_seeds(records, "icm_vae", "mcc@pearson.mcc") == 0


def test_only_the_condition_suites_cells_are_read(sensitivity, tmp_path):
    """32px-long reads the standard suite's work directory, which holds seeds 5-7 too: they are left out."""
    folders = write_cells(tmp_path, datasets=("pendulum",), labels=("icm_vae", "causal_vae"), failed=None,
                          codes=4, samples=2, epochs=3)
    records = sensitivity.load_records(tmp_path / "cells")
    keep = {record["hash"] for record in records if record["cell"]["seed"] in (0, 1)}
    assert len(folders) > len(keep) > 0
    (row, *_), = [sensitivity.table(sensitivity.condition_records({"32px-long": tmp_path}, {"32px-long": keep}),
                                    "icm_vae", "causal_vae")]
    assert row["pairs"] == 2
    assert sensitivity.table(sensitivity.condition_records({"32px-long": tmp_path}), "icm_vae", "causal_vae")[0]["pairs"] == 3
    long = sensitivity.suite_cells("32px-long")  # 2 methods and 3 reference rows x 5 seeds on Pendulum
    standard = {cell.hash for cell in sensitivity.load_suite(sensitivity.SUITES.parent / "standard.yaml").cells()}
    assert len(long) == 25 and long <= standard  # the standard suite's own cells


def test_the_written_summary_names_its_sources_and_hides_an_effect_from_too_few_pairs(sensitivity, tmp_path):
    write_cells(tmp_path, datasets=("pendulum",), labels=("icm_vae", "causal_vae"), failed=None, seeds=(0, 1),
                codes=4, samples=2, epochs=3)
    records = sensitivity.load_records(tmp_path / "cells")
    cells = {"64px-long": {record["hash"] for record in records}}
    found = sensitivity.condition_records({"64px-long": tmp_path}, cells)
    text = sensitivity.markdown(sensitivity.table(found, "icm_vae", "causal_vae"), "icm_vae", "causal_vae",
                                header=sensitivity.sources(found, {"64px-long": tmp_path}, cells))
    commit = records[0]["provenance"]["git_commit"][:7]
    assert f"- 64px-long: `configs/suites/sensitivity/64px-long.yaml`, 4 of its 4 cells from `{tmp_path}`" in text
    assert f"written at {commit}" in text
    assert "| 2 |" in text and "| – |" in text and "neither (fewer than 3 pairs)" in text  # d_z from 2 pairs: none
