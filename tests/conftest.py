"""Shared fixtures: datasets generated once per test session into a temporary cache."""

from __future__ import annotations

from pathlib import Path

import pytest

from crlbench.core import registry

SMALL_CIRCUIT = {"n_train": 200, "n_val": 40, "n_test": 40}
REFERENCE_SAMPLES = Path(__file__).parent / "data" / "reference_samples"


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("data")


@pytest.fixture(scope="session")
def pendulum(data_dir):
    return registry.dataset("pendulum", cache_dir=data_dir)


@pytest.fixture(scope="session")
def flow(data_dir):
    return registry.dataset("flow", cache_dir=data_dir)


@pytest.fixture(scope="session")
def circuit(data_dir):
    return registry.dataset("causal_circuit", cache_dir=data_dir, size=32, **SMALL_CIRCUIT)


@pytest.fixture(params=["pendulum", "flow", "circuit"])
def any_dataset(request):
    return request.getfixturevalue(request.param)
