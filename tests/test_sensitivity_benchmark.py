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
    rows = sensitivity.table({"32px-long": tmp_path / "three", "64px-long": tmp_path / "one"}, "icm_vae", "causal_vae")
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
