"""benchmarks/icmvae_warmup.py, the measurement behind docs/models.md's account of ICM-VAE's warm-up."""

import pytest

from benchmark_fixture import load_benchmark


@pytest.fixture(scope="module")
def warmup_benchmark():
    return load_benchmark("icmvae_warmup")


def test_it_logs_the_weights_spread_correlations_and_reconstruction_of_every_epoch(warmup_benchmark, tmp_path):
    log = warmup_benchmark.run(0, 1, 32, {"warmup_start_epoch": 0}, str(tmp_path))
    (entry,) = log
    assert entry["epoch"] == 0 and entry["beta"] == pytest.approx(1.2 / 93)  # the warm-up started in epoch 0
    assert entry["spread"] > 0 and 0 < entry["reconstruction_mse"] < 1
    assert len(entry["correlations"]) == 4 and all(0 <= c <= 1 for c in entry["correlations"])
