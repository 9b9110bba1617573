"""Degeneracy checks (crlbench.suites.checks): each fires on a crafted degenerate case and passes a healthy
one; beta-VAE's KL per code is the closed form; a runner cell records all five; counterfactual@probe gives
the copy error and the do()'s movement they read."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from crlbench.core import registry
from crlbench.metrics import compute_with_model
from crlbench.suites import checks
from crlbench.suites.results import cell_dir, read_result
from crlbench.suites.suite import run_suite
from crlbench.suites.suite_config import load_suite
from crlbench.training.train import build_model
from suite_fixture import write_suite

FIELDS = {"flagged", "value", "threshold", "reference_value", "invalidates", "reason"}
LATENT = ["dci@reg", "mcc@pearson"]


# --- each check on crafted inputs ----------------------------------------------------------------


def test_reconstruction_worse_than_the_mean_image_is_flagged_and_a_better_one_passes():
    bad = checks.reconstruction_vs_mean_image(0.06, 0.001)
    assert bad["flagged"] is True and bad["value"] == 0.06 and bad["reference_value"] == 0.001
    assert set(bad) == FIELDS and bad["invalidates"] == ["reconstruction.mse", "counterfactual@probe.*"]
    assert checks.reconstruction_vs_mean_image(0.001, 0.001)["flagged"] is True  # equal is not better
    assert checks.reconstruction_vs_mean_image(0.0005, 0.001)["flagged"] is False


def test_posterior_collapse_fires_when_the_codes_carry_less_than_one_bit():
    collapsed = checks.posterior_collapse(np.full(16, 0.002), LATENT)
    assert collapsed["flagged"] is True and collapsed["value"] == pytest.approx(0.032)
    assert collapsed["threshold"] == pytest.approx(math.log(2))
    assert collapsed["invalidates"] == ["dci@reg.*", "mcc@pearson.*", "counterfactual@probe.*"]
    assert "0 of 16 codes" in collapsed["reason"]
    healthy = checks.posterior_collapse(np.r_[np.full(4, 3.0), np.zeros(12)], LATENT)
    assert healthy["flagged"] is False and "4 of 16 codes" in healthy["reason"]


def test_posterior_collapse_is_null_with_the_reason_for_a_model_without_a_posterior_kl():
    result = checks.posterior_collapse(None, LATENT, "model 'x' has a deterministic code")
    assert result["flagged"] is None and result["value"] is None
    assert result["reason"] == "model 'x' has a deterministic code"


def test_a_constant_or_nearly_constant_code_is_flagged_and_varying_codes_pass():
    rng = np.random.default_rng(0)
    healthy = rng.normal(size=(200, 4))
    assert checks.constant_codes(healthy, LATENT)["flagged"] is False
    for degenerate in (0.0, 5.0):  # a column of zeros, and a column constant at 5 up to a 1e-5 jitter
        codes = healthy.copy()
        codes[:, 2] = degenerate + 1e-5 * rng.normal(size=200) * (degenerate != 0)
        result = checks.constant_codes(codes, LATENT)
        assert result["flagged"] is True and result["value"] < checks.CONSTANT_CODE_SPREAD
        assert "codes [2] of 4" in result["reason"] and result["invalidates"] == ["dci@reg.*", "mcc@pearson.*"]


def test_code_spread_does_not_depend_on_the_codes_scale():
    codes = np.random.default_rng(1).normal(loc=3.0, size=(100, 3))
    assert checks.code_spread(1e-6 * codes) == pytest.approx(checks.code_spread(codes))


def test_a_do_that_moves_less_than_a_tenth_of_the_truth_is_inert():
    inert = checks.inert_do(1e-9, 0.01)
    assert inert["flagged"] is True and inert["threshold"] == pytest.approx(0.001) and inert["reference_value"] == 0.01
    assert inert["invalidates"] == ["counterfactual@probe.*"]  # not DCI
    assert checks.inert_do(0.008, 0.01)["flagged"] is False


def test_counterfactuals_no_better_than_copying_the_source_are_flagged():
    assert checks.counterfactual_vs_copy(0.0134, 0.0096)["flagged"] is True
    assert checks.counterfactual_vs_copy(0.0096, 0.0096)["flagged"] is True
    passed = checks.counterfactual_vs_copy(0.005, 0.0096)
    assert passed["flagged"] is False and passed["invalidates"] == ["counterfactual@probe.*"]


def test_mean_image_error_is_the_mse_of_the_training_mean():
    train = np.array([[[[0]]], [[[255]]]], dtype=np.uint8)  # mean image 0.5
    images = np.array([[[[255]]], [[[51]]]], dtype=np.uint8)  # 1.0 and 0.2
    assert checks.mean_image_error(train, images) == pytest.approx((0.5**2 + 0.3**2) / 2)


def test_why_an_interventional_score_is_missing():
    name = "counterfactual@probe"
    failed = checks.metric_missing(name, [name], {name: {"type": "ConfigError", "message": "cyclic"}}, {})
    assert failed == "counterfactual@probe failed (ConfigError: cyclic)"
    assert "does not apply: no do()" in checks.metric_missing(name, [name], {}, {name: "no do()"})
    assert checks.metric_missing(name, ["dci@reg"], {}, {}) == "counterfactual@probe is not in the suite"
    assert "older version" in checks.metric_missing(name, [name], {}, {})


class _Stub(nn.Module):
    name = "stub"

    def __init__(self, reference_for=()):
        super().__init__()
        self.reference_for = reference_for


def test_a_reference_row_gets_every_check_null():
    images = np.zeros((2, 2, 2, 3), np.uint8)
    record = checks.cell_checks(_Stub(reference_for=("counterfactual@probe",)), train_images=images,
                                reconstruction_images=images, evaluation_images=images, codes=np.zeros((2, 4)),
                                scores={"counterfactual@probe.counterfactual_mse": 1.0}, suite_metrics=LATENT,
                                latent_metrics=LATENT)
    assert set(record) == set(checks.CHECK_NAMES)
    assert all(check["flagged"] is None and check["reason"].startswith("reference row") for check in record.values())


def test_checks_whose_scores_are_missing_are_null_with_the_reason():
    record = checks.cell_checks(_Stub(), train_images=np.zeros((2, 2, 2, 3), np.uint8),
                                reconstruction_images=np.zeros((2, 2, 2, 3), np.uint8),
                                evaluation_images=np.zeros((2, 2, 2, 3), np.uint8),
                                codes=np.random.default_rng(0).normal(size=(10, 4)), scores={"reconstruction.mse": 0.1},
                                suite_metrics=LATENT, latent_metrics=LATENT)
    assert record["reconstruction_vs_mean_image"]["flagged"] is True  # the mean image (all 0) reconstructs exactly
    assert record["constant_codes"]["flagged"] is False
    for name in ("inert_do", "counterfactual_vs_copy"):
        assert record[name]["flagged"] is None and record[name]["reason"] == "counterfactual@probe is not in the suite"
    collapse = record["posterior_collapse"]
    assert collapse["flagged"] is None and "gives no posterior KL per code" in collapse["reason"]


# --- beta-VAE's KL per code ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def card(tmp_path_factory):
    return registry.dataset("pendulum", cache_dir=tmp_path_factory.mktemp("d"), size=32).card


class FixedPosterior(nn.Module):
    """An 'encoder' whose output is the same (mean, log-variance) for every image."""

    def __init__(self, mean, log_variance):
        super().__init__()
        self.register_buffer("out", torch.tensor([*mean, *log_variance], dtype=torch.float32))

    def forward(self, images):
        return self.out.expand(len(images), -1)


def test_beta_vae_kl_per_code_matches_the_closed_form_by_hand(card):
    model = build_model("beta_vae", card, seed=0, latent_dim=3)
    model.encoder = FixedPosterior(mean=[1.0, 0.0, 0.0], log_variance=[0.0, math.log(4.0), 0.0])
    kl = model.posterior_kl_per_code(torch.rand(5, 3, 32, 32))
    # 0.5 (mu^2 + s^2 - log s^2 - 1): code 0: 0.5 (1 + 1 - 0 - 1); code 1: 0.5 (0 + 4 - log 4 - 1); code 2: 0
    assert kl.tolist() == pytest.approx([0.5, 0.5 * (3 - math.log(4.0)), 0.0], abs=1e-6)


def test_beta_vae_kl_per_code_is_the_mean_of_the_loss_kl_over_images(card):
    model = build_model("beta_vae", card, seed=0)
    images = torch.rand(6, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    mean, log_variance = model.posterior(images)
    expected = torch.distributions.kl_divergence(torch.distributions.Normal(mean, (0.5 * log_variance).exp()),
                                                 torch.distributions.Normal(0.0, 1.0)).mean(dim=0)
    # float32 cancellation in the closed form: agreement to 1e-6 nats
    assert model.posterior_kl_per_code(images).detach().numpy() == pytest.approx(expected.detach().numpy(), abs=1e-6)
    uint8 = (images.permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)  # batches of 4 and 2: weighted mean
    assert checks.posterior_kl(model, uint8, batch_size=4) == pytest.approx(checks.posterior_kl(model, uint8), abs=1e-6)


def test_models_without_a_standard_normal_posterior_give_none(card):
    assert build_model("icm_vae", card, seed=0).posterior_kl_per_code(torch.rand(2, 3, 32, 32)) is None


# --- counterfactual@probe's copy error and do() movement -----------------------------------------


class Copier:
    """Encodes by a fixed random projection; its do() returns the source image unchanged (the copy row)."""

    aligned = True

    def __init__(self, n_factors=4, size=32):
        generator = torch.Generator().manual_seed(0)
        self.n_factors = n_factors
        self.weights = torch.randn(3 * size * size, n_factors, generator=generator) / (3 * size * size) ** 0.5

    def eval(self):
        return self

    def encode(self, x):
        return (x.flatten(1) @ self.weights).view(len(x), self.n_factors, 1)

    def intervene(self, x, k, value):
        return x.clone()


@pytest.fixture(scope="module")
def pendulum_32(tmp_path_factory):
    dataset = registry.dataset("pendulum", cache_dir=tmp_path_factory.mktemp("p"), size=32)
    return dataset, dataset.split("train"), dataset.split("test")


def test_copy_mse_is_the_error_of_returning_the_source_image(pendulum_32):
    dataset, train, test = pendulum_32
    scores = compute_with_model("counterfactual@probe", Copier(), dataset, train, test, n_samples=32,
                                probe_samples=100).scores
    for k in range(4):  # the copier's counterfactual is its input, so its error is the copy error, factor by factor
        assert scores[f"copy_mse_{k}"] == scores[f"counterfactual_mse_{k}"] > 0
        assert scores[f"do_change_{k}"] == 0.0
    assert scores["copy_mse"] == pytest.approx(np.mean([scores[f"copy_mse_{k}"] for k in range(4)]))
    assert checks.counterfactual_vs_copy(scores["counterfactual_mse"], scores["copy_mse"])["flagged"] is True
    assert checks.inert_do(scores["do_change"], scores["copy_mse"])["flagged"] is True


# --- a runner cell records them --------------------------------------------------------------------


def test_a_cell_records_all_five_checks_with_the_interface_fields(tmp_path):
    probe = {"name": "counterfactual@probe", "options": {"n_samples": 16, "probe_samples": 60}}
    config = load_suite(write_suite(tmp_path, models=[{"name": "beta_vae"}], metrics=["dci@reg", probe]))
    run_suite(config, tmp_path / "work", progress=False)
    record = read_result(cell_dir(tmp_path / "work", config.cells()[0].hash))
    assert record["status"] == "ok" and set(record["checks"]) == set(checks.CHECK_NAMES)
    for check in record["checks"].values():
        assert set(check) == FIELDS and isinstance(check["reason"], str) and check["flagged"] in (True, False, None)
        assert all(isinstance(pattern, str) for pattern in check["invalidates"])
    assert record["checks"]["posterior_collapse"]["flagged"] is not None  # beta-VAE has a posterior KL
    assert record["checks"]["posterior_collapse"]["invalidates"] == ["dci@reg.*", "counterfactual@probe.*"]
    scores = record["scores"]
    assert record["checks"]["counterfactual_vs_copy"]["reference_value"] == scores["counterfactual@probe.copy_mse"]
    assert record["checks"]["inert_do"]["value"] == scores["counterfactual@probe.do_change"]
    assert record["checks"]["reconstruction_vs_mean_image"]["value"] == scores["reconstruction.mse"]


def test_a_diverged_run_is_neither_passed_nor_flagged():
    nan = float("nan")
    assert checks.reconstruction_vs_mean_image(nan, 0.001)["flagged"] is None
    assert checks.posterior_collapse(np.array([nan, 1.0]), LATENT)["flagged"] is None
    assert checks.constant_codes(np.full((5, 2), nan), LATENT)["flagged"] is None
    assert checks.inert_do(nan, 0.01)["flagged"] is None
    assert checks.counterfactual_vs_copy(nan, 0.01)["flagged"] is None
