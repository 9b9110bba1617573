"""MIC and TIC against minepy 1.2.6 (tests/data/minepy_golden.json, made by tests/tools/make_minepy_golden.py)."""

import json
import re
from pathlib import Path

import numpy as np
import pytest

from crlbench.metrics import compute
from crlbench.metrics.mine import mine_score
from metric_fixture import golden_fixture

GOLDEN = json.loads((Path(__file__).parent / "data" / "minepy_golden.json").read_text())
TOOL = (Path(__file__).parent / "tools" / "make_minepy_golden.py").read_text()


def minepy_pairs():
    """The oracle's samples, built by the generator's own function (minepy itself not needed)."""
    namespace = {}
    exec(re.sub(r"^from minepy import MINE$", "", TOOL, flags=re.M), namespace)
    return namespace["fixture_pairs"]()


PAIRS = minepy_pairs()


@pytest.mark.parametrize("case", GOLDEN, ids=lambda g: f"{g['pair']}-{g['est']}-a{g['alpha']}-c{g['c']}")
def test_mic_and_tic_equal_minepy(case):
    x, y = PAIRS[case["pair"]]
    score = mine_score(x, y, alpha=case["alpha"], c=case["c"], est=case["est"])
    assert score.mic == pytest.approx(case["mic"], abs=1e-6)
    assert score.tic() == pytest.approx(case["tic"], abs=1e-6)
    assert score.tic(norm=True) == pytest.approx(case["tic_norm"], abs=1e-6)


def test_reductions_reproduce_the_reference_fixture_values():
    z_train, y_train, _, _ = golden_fixture()
    matched = compute("mic@matched", z_train, y_train)
    expected = [[.9997, .1009, .1003], [.3017, .7430, .1034], [.0992, .1093, 1.0000], [.0956, .1070, .0974]]
    np.testing.assert_allclose(matched.matrices["mic"], expected, atol=5e-5)
    np.testing.assert_allclose(np.diag(matched.matrices["tic_raw"]), [255.94, 146.33, 253.70], atol=5e-3)
    np.testing.assert_allclose(np.diag(matched.matrices["tic"]), [0.9920, 0.5672, 0.9833], atol=5e-5)
    assert matched.scores["mic"] == pytest.approx(0.91421, abs=5e-6)
    assert compute("mic@aligned", z_train, y_train).scores["mic"] == pytest.approx(0.91421, abs=5e-6)
    flat = compute("mic@flat", z_train, y_train)
    assert flat.scores["mic"] == pytest.approx(0.76976, abs=5e-6)
    assert flat.matrices["tic_raw"][0, 0] == pytest.approx(346.66, abs=5e-3)
    assert flat.scores["tic"] == pytest.approx(0.55378, abs=5e-6)
    mic_e = mine_score(z_train[:, 0], y_train[:, 0], est="mic_e")
    assert mic_e.mic == pytest.approx(0.99965, abs=5e-6) and mic_e.tic() == pytest.approx(245.54, abs=5e-3)


def test_matched_alignment_is_saved_with_the_result():
    z_train, y_train, _, _ = golden_fixture()
    result = compute("mic@matched", z_train[:, ::-1], y_train)  # codes reversed: 3, 2, 1, 0
    assert result.info["alignment"] == {"kind": "matched", "blocks": ((3,), (2,), (1,))}


def test_aligned_block_reduction_best_picks_the_best_code_of_each_block():
    z_train, y_train, _, _ = golden_fixture()
    blocks = np.repeat(z_train[:, :3], 2, axis=1)  # two copies per concept
    blocks[:, 1::2] = np.random.default_rng(0).normal(size=(len(blocks), 3))  # second copy is noise
    best = compute("mic@aligned", blocks, y_train, block_size=2, block_reduce="best")
    assert best.scores["mic"] == pytest.approx(0.91421, abs=5e-6)
    assert best.info["alignment"]["blocks"] == ((0, 1), (2, 3), (4, 5))
    assert compute("mic@aligned", blocks, y_train, block_size=2).scores["mic"] < best.scores["mic"]


def test_a_constant_variable_has_no_information():
    assert mine_score(np.ones(100), np.arange(100.0)).mic == 0.0
