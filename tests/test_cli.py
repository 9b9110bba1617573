"""The crlbench command line, run as a user would."""

import subprocess
import sys

from PIL import Image

from bench.cli import main


def crlbench(*args, workdir):
    return subprocess.run(
        [sys.executable, "-m", "bench", *args, "--workdir", str(workdir)], capture_output=True, text=True
    )


def test_list_shows_the_three_datasets(capsys):
    assert main(["list", "datasets"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in ("pendulum", "flow", "causal_circuit"))


def test_generate_reports_split_sizes_then_hits_the_cache(tmp_path):
    args = ("data", "generate", "causal_circuit", "--size", "16", "--set", "n_train=12",
            "--set", "n_val=3", "--set", "n_test=3")
    first = crlbench(*args, workdir=tmp_path)
    assert first.returncode == 0, first.stderr
    assert "generated" in first.stdout and "train 12, val 3, test 3" in first.stdout
    assert "loaded from cache" in crlbench(*args, workdir=tmp_path).stdout


def test_show_writes_samples_and_one_intervention_strip_per_factor(tmp_path):
    out = tmp_path / "grid.png"
    result = subprocess.run(
        [sys.executable, "-m", "bench", "data", "show", "configs/datasets/pendulum.yaml", "--size", "32",
         "--workdir", str(tmp_path), "--out", str(out), "--count", "4"],
        capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stderr
    image = Image.open(out)
    assert image.height > 5 * 32  # a sample row and four factor strips


def test_bad_input_exits_2_with_the_accepted_values(tmp_path):
    result = crlbench("data", "generate", "pendulum", "--set", "split_rule=odd", workdir=tmp_path)
    assert result.returncode == 2
    assert "'split_rule' must be one of reference, random; got 'odd'" in result.stderr
    assert not any((tmp_path / "data").glob("*")) if (tmp_path / "data").exists() else True
    result = crlbench("data", "generate", "flw", workdir=tmp_path)
    assert result.returncode == 2 and "did you mean 'flow'" in result.stderr
