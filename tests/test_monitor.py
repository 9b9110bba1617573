"""The evaluation read during training (crlbench.suites.monitor): validation rows only, the leaderboard's
representation."""

import numpy as np
import pytest
import torch

from crlbench.core import registry
from crlbench.suites.monitor import ValidationMonitor, validation_sample
from crlbench.suites.runner import training_and_evaluation_splits


@pytest.fixture(scope="module")
def pendulum(tmp_path_factory):
    return registry.dataset("pendulum", cache_dir=tmp_path_factory.mktemp("data"), size=32)


def rows_of(factors: np.ndarray) -> set[tuple]:
    return {tuple(np.round(row, 9)) for row in factors}


def test_a_cell_evaluated_on_test_reads_generated_rows_that_are_neither_training_nor_test_rows(pendulum):
    train_split, test_split = training_and_evaluation_splits(pendulum, "test")
    sample = validation_sample(pendulum, "test", train_split, test_split, rows=64)
    assert sample.source.startswith("generated") and sample.images.shape == (64, 32, 32, 3)
    assert not rows_of(sample.factors) & (rows_of(train_split.factors) | rows_of(test_split.factors))
    assert np.all(sample.factors >= train_split.factors.min(axis=0)) and np.all(sample.factors <= train_split.factors.max(axis=0))
    again = validation_sample(pendulum, "test", train_split, test_split, rows=64)
    assert np.array_equal(sample.images, again.images)  # the same rows for every cell of the dataset


def test_a_cell_evaluated_on_val_reads_its_held_out_rows(pendulum):
    train_split, held_out = training_and_evaluation_splits(pendulum, "val")
    sample = validation_sample(pendulum, "val", train_split, held_out, rows=64)
    assert sample.source == "the held-out 10 % of the training split"
    assert rows_of(sample.factors) <= rows_of(held_out.factors)
    assert not rows_of(sample.factors) & rows_of(train_split.factors)


def test_a_dataset_with_a_val_split_gives_its_val_rows(tmp_path):
    circuit = registry.dataset("causal_circuit", cache_dir=tmp_path, size=32, n_train=40, n_val=30, n_test=20)
    train_split, test_split = training_and_evaluation_splits(circuit, "test")
    sample = validation_sample(circuit, "test", train_split, test_split, rows=16)
    assert sample.source == "the dataset's val split"
    assert rows_of(sample.factors) <= rows_of(circuit.split("val").factors)


class FactorReader(torch.nn.Module):
    """Codes that are the true factors of the sample's images (looked up by image): permuted among noise
    codes for an unaligned model, or each repeated in a concept block of 2 for an aligned one."""

    def __init__(self, images: np.ndarray, factors: np.ndarray, aligned: bool) -> None:
        super().__init__()
        self.aligned = aligned
        self.images = torch.from_numpy(images).permute(0, 3, 1, 2).float().div(255.0).flatten(1)
        standard = (factors - factors.mean(axis=0)) / factors.std(axis=0)
        noise = np.random.default_rng(0).standard_normal((len(factors), 3))
        codes = np.stack([standard[:, 2], noise[:, 0], standard[:, 0], standard[:, 3], noise[:, 1], standard[:, 1]], 1)
        self.codes = torch.from_numpy(np.repeat(standard, 2, axis=1) if aligned else codes).float()
        self.layer = torch.nn.Linear(1, 1)

    def encode(self, images):
        rows = torch.cdist(images.flatten(1), self.images).argmin(dim=1)
        codes = self.codes[rows]
        return codes.reshape(len(images), 4, 2) if self.aligned else codes[:, None, :]

    def reconstruct(self, images):
        return images


@pytest.mark.parametrize("aligned", [False, True])
def test_readings_score_the_factor_codes_the_leaderboard_reads(pendulum, aligned):
    train_split, test_split = training_and_evaluation_splits(pendulum, "test")
    sample = validation_sample(pendulum, "test", train_split, test_split, rows=128)
    model = FactorReader(sample.images, sample.factors, aligned)
    scores = ValidationMonitor(sample, "cpu", seed=0)(model)
    assert scores["mcc@pearson.mcc"] == pytest.approx(1.0)  # matched (unaligned) or block means (aligned)
    assert scores["dci@reg.disentanglement"] > 0.9 and scores["heldout_reconstruction_mse"] == 0.0
