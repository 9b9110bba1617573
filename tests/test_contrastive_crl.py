"""Contrastive CRL: the reference's logit and loss by hand, pooled environments, the graph's orientation,
determinism, training on a dataset's environments, and no decoder (not applicable, never failed)."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from crlbench.baselines.contrastive_crl import (ChamberEncoder, classifier_terms, environment_logits, notears,
                                                observational_mean_penalty, whitening_matrix)
from crlbench.core import registry
from crlbench.core.errors import ConfigError, NotApplicable
from crlbench.metrics import compute_with_model
from crlbench.training.train import Budget, build_model, optimisation_step, train

SIZE = 16


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """CausalCircuit at 16x16 in the environments mode: 64 observations and 64 rows per environment (K = 4)."""
    return registry.dataset("causal_circuit", cache_dir=tmp_path_factory.mktemp("d"), size=SIZE, n_train=64, n_val=2,
                            n_test=8, environments=True)


@pytest.fixture(scope="module")
def card(dataset):
    return dataset.card


def batch(environment, count=None, seed=0):
    environment = torch.as_tensor(environment, dtype=torch.long)
    generator = torch.Generator().manual_seed(seed)
    count = len(environment) if count is None else count
    return {"images": torch.rand(count, 3, SIZE, SIZE, generator=generator),
            "factors": torch.randn(count, 4, generator=generator), "environment": environment}


def softplus(x):  # plain floats: CE([l, 0], 0) = softplus(-l), CE([l, 0], 1) = softplus(l)
    return math.log1p(math.exp(x))


def cross_entropy(scores, label):  # plain floats, -log softmax(scores)[label]
    return -scores[label] + math.log(sum(math.exp(s) for s in scores))


class CodesInPixels(nn.Module):
    """A stand-in encoder: the codes are the first d pixels of channel 0, so a test chooses z exactly."""

    def __init__(self, d):
        super().__init__()
        self.d = d
        self.unused = nn.Parameter(torch.zeros(()))  # so that the optimiser has an encoder group

    def forward(self, images):
        return images[:, 0, 0, :self.d] + 0 * self.unused


def test_defaults_and_bad_hyperparameters(card):
    model = registry.model("contrastive_crl", card)
    config = model.config
    assert (config.lr, config.lr_parametric, config.weight_decay) == (5e-4, None, 0.0)
    assert (config.kappa, config.eta, config.mu, config.graph_threshold) == (0.1, 1e-4, 1e-5, 0.3)
    assert (config.backbone, config.conv_blocks, config.conv_channels, config.hidden_units) == ("reference", 2, 64, 1024)
    assert model.latent_size() == len(card.factors) == 4 and model.aligned and model.needs_environments
    assert model.supervision() == ["environments"] and model.manual_optimization is False
    assert model.A.detach().equal(torch.eye(4)) and model.constants.detach().equal(torch.zeros(4))
    assert model.linear.detach().equal(torch.ones(4)) and model.quadratic.detach().equal(torch.ones(4))
    assert model.scales.detach().equal(torch.ones(1, 4))
    with pytest.raises(ConfigError, match="model 'contrastive_crl': parameter 'kappa' must be non-negative; got -0.1"):
        registry.model("contrastive_crl", card, kappa=-0.1)
    with pytest.raises(ConfigError, match="parameter 'lr' must be positive; got 0.0"):
        registry.model("contrastive_crl", card, lr=0)
    with pytest.raises(ConfigError, match="parameter 'lr_parametric' must be positive or null; got -1.0"):
        registry.model("contrastive_crl", card, lr_parametric=-1)
    with pytest.raises(ConfigError, match="parameter 'conv_channels' must be a multiple of 8 .*; got 12"):
        registry.model("contrastive_crl", card, conv_channels=12)
    with pytest.raises(ConfigError, match="parameter 'backbone' must be one of"):
        registry.model("contrastive_crl", card, backbone="resnet18")
    with pytest.raises(ConfigError, match="unknown parameter 'latent_dim'"):
        registry.model("contrastive_crl", card, latent_dim=8)


def test_the_light_declaration_says_it_needs_environments():
    declared = registry.model_declaration("contrastive_crl")
    model_class = registry.registry("model").get("contrastive_crl")
    assert declared.Config is model_class.Config and declared.version == model_class.version
    assert declared.needs_environments is True


def test_the_logit_is_the_reference_formula_by_hand():
    z = [[0.5, -1.0, 2.0], [1.5, 0.25, -0.5]]
    c, b, l, s = [0.1, -0.2, 0.3], [1.0, 2.0, -1.0], [0.5, 1.5, 1.0], [1.0, 2.0, 0.5]
    A = [[9.0, 0.4, 0.0], [-0.3, 9.0, 0.7], [0.2, 0.0, 9.0]]  # the diagonal is never read
    t = lambda values: torch.tensor(values, dtype=torch.float64)  # noqa: E731
    B = whitening_matrix(t([s]), t(A))
    logits = environment_logits(t(z), t(c), t(b), t(l), B)
    for n in range(2):
        for k in range(3):
            row = sum(s[k] * ((1.0 if i == k else -A[k][i]) * z[n][i]) for i in range(3))
            expected = c[k] + b[k] * z[n][k] + (l[k] * z[n][k]) ** 2 - row ** 2
            assert logits[n, k].item() == pytest.approx(expected, rel=1e-12)


def test_the_loss_is_the_reference_loss_by_hand(card):
    model = build_model("contrastive_crl", card, seed=0, kappa=0.5, eta=0.01, mu=0.1)
    model.encoder = CodesInPixels(4)
    with torch.no_grad():
        model.constants.copy_(torch.tensor([0.1, -0.2, 0.0, 0.3]))
        model.linear.copy_(torch.tensor([1.0, 0.5, -1.0, 2.0]))
        model.quadratic.copy_(torch.tensor([0.5, 1.0, 1.5, 0.2]))
        model.scales.copy_(torch.tensor([[1.0, 0.5, 2.0, 1.5]]))
        model.A.copy_(torch.tensor([[0.3, 0.0, 0.0, 0.0], [0.6, 0.0, 0.0, 0.0], [0.0, -0.4, 0.1, 0.0],
                                    [0.2, 0.0, 0.5, 0.0]]))
    z = [[0.5, -1.0, 0.25, 1.0], [-0.5, 0.75, 1.0, 0.0], [1.0, 0.5, -0.25, 0.5], [0.0, 0.25, 0.5, -1.0],
         [0.25, 0.0, -0.5, 0.75]]
    environment = [0, 2, 0, 4, 1]  # two observations; environments 2, 4, 1 (latents 1, 3, 0)
    data = batch(environment)
    data["images"][:, 0, 0, :4] = torch.tensor(z)
    losses = model.training_step(data, 0)

    A, s = model.A.tolist(), model.scales[0].tolist()
    c, b, l = model.constants.tolist(), model.linear.tolist(), model.quadratic.tolist()

    def logit(row, k):  # models.py ParametricPart.forward for one row and environment index k
        whitened = s[k] * sum((1.0 if i == k else -A[k][i]) * row[i] for i in range(4))
        return c[k] + b[k] * row[k] + (l[k] * row[k]) ** 2 - whitened ** 2

    observations = [z[n] for n, e in enumerate(environment) if e == 0]
    interventions = [(z[n], e) for n, e in enumerate(environment) if e > 0]
    observational_ce = sum(sum(cross_entropy([logit(row, k), 0.0], 0) for k in range(4)) / 4
                           for row in observations) / len(observations)
    interventional_ce = sum(cross_entropy([logit(row, e - 1), 0.0], 1) for row, e in interventions) / len(interventions)
    mean_penalty = sum((sum(row[k] for row in observations) / len(observations)) ** 2 for k in range(4))
    l1 = sum(abs(value) for line in A for value in line)
    acyclicity = float(np.trace(matrix_exp([[value * value for value in line] for line in A]))) - 4
    expected = {"observational_ce": observational_ce, "interventional_ce": interventional_ce,
                "classifier": observational_ce + interventional_ce, "mean_penalty": mean_penalty, "l1": l1,
                "notears": acyclicity,
                "loss": observational_ce + interventional_ce + 0.5 * mean_penalty + 0.01 * l1 + 0.1 * acyclicity}
    for name, value in expected.items():
        assert losses[name].item() == pytest.approx(value, rel=1e-5), name
    assert observational_ce == pytest.approx(sum(softplus(-logit(r, k)) for r in observations for k in range(4)) / 8)


def matrix_exp(matrix, terms=30):
    """exp(M) by its power series, in plain floats."""
    size = len(matrix)
    result = [[float(i == j) for j in range(size)] for i in range(size)]
    power = [row[:] for row in result]
    for n in range(1, terms):
        power = [[sum(power[i][m] * matrix[m][j] for m in range(size)) / n for j in range(size)] for i in range(size)]
        result = [[result[i][j] + power[i][j] for j in range(size)] for i in range(size)]
    return np.array(result)


def test_notears_is_zero_for_a_dag_and_positive_for_a_cycle():
    dag = torch.tensor([[0.0, 0.8, 0.0], [0.0, 0.0, -0.5], [0.0, 0.0, 0.0]])
    assert notears(dag).item() == pytest.approx(0.0, abs=1e-6)
    assert notears(dag + dag.T).item() > 0.1


def test_a_batch_without_observations_has_no_observational_terms(card):
    logits = torch.tensor([[0.5, -1.0], [2.0, 0.25]])
    only_interventions = classifier_terms(logits, torch.tensor([1, 2]))
    assert only_interventions["observational_ce"].item() == 0.0
    assert only_interventions["interventional_ce"].item() == pytest.approx((softplus(0.5) + softplus(0.25)) / 2)
    only_observations = classifier_terms(logits, torch.tensor([0, 0]))
    assert only_observations["interventional_ce"].item() == 0.0
    assert only_observations["observational_ce"].item() == pytest.approx(
        sum(softplus(-value) for value in (0.5, -1.0, 2.0, 0.25)) / 4)
    z = torch.tensor([[1.0, 2.0], [3.0, -4.0]])
    assert observational_mean_penalty(z, torch.tensor([1, 2])).item() == 0.0
    assert observational_mean_penalty(z, torch.tensor([0, 2])).item() == pytest.approx(5.0)

    model = build_model("contrastive_crl", card, seed=0)
    losses = model.training_step(batch([1, 2, 3, 4, 2]), 0)
    assert losses["observational_ce"].item() == 0.0 and losses["mean_penalty"].item() == 0.0
    losses["loss"].backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.encoder.parameters())


def test_every_parameter_is_trained_by_a_pooled_step(card):
    model = build_model("contrastive_crl", card, seed=0)
    model.training_step(batch([0, 1, 2, 3, 4, 0]), 0)["loss"].backward()
    assert [name for name, p in model.named_parameters() if p.grad is None] == []


@pytest.mark.parametrize("environment, message", [
    ([0, 5], r"environment indices must be in 0..4 .*got \[0, 5\]"),
    ([-1, 1], r"environment indices must be in 0..4 .*got \[-1, 1\]"),
])
def test_an_environment_beyond_the_latents_is_a_config_error(card, environment, message):
    model = build_model("contrastive_crl", card, seed=0)
    with pytest.raises(ConfigError, match=message):
        model.training_step(batch(environment), 0)


def test_a_batch_without_environments_is_a_config_error(card):
    model = build_model("contrastive_crl", card, seed=0)
    data = batch([0, 1])
    del data["environment"]
    with pytest.raises(ConfigError, match="each batch needs 'environment'"):
        model.training_step(data, 0)


def test_the_graph_is_a_transposed_in_the_cards_orientation(card):
    # the reference's data: X = W^T X + eps, W[i, j] != 0 meaning i -> j (data_generation.py sample_lganm_copy)
    W = np.zeros((4, 4))
    W[0, 2], W[1, 2], W[2, 3], W[0, 1] = 0.8, -0.5, 0.9, 0.2  # 0 -> 2, 1 -> 2, 2 -> 3, and a weak 0 -> 1
    eps = np.random.default_rng(0).normal(size=(5, 4))
    X = eps @ np.linalg.inv(np.eye(4) - W.T).T
    model = build_model("contrastive_crl", card, seed=0)
    with torch.no_grad():
        model.A.copy_(torch.tensor(W.T + 0.7 * np.eye(4)))  # A estimates W^T; the diagonal is ignored
    B = whitening_matrix(model.scales, model.A).detach().double().numpy()
    np.testing.assert_allclose(X @ B.T, eps, atol=1e-6)  # B z is the noise: A[j, i] makes z_i a parent of z_j
    graph = model.learned_graph()
    expected = np.zeros((4, 4), dtype=int)
    expected[0, 2] = expected[1, 2] = expected[2, 3] = 1  # |0.2| is under the threshold 0.3
    assert np.array_equal(graph["adjacency"], expected)
    np.testing.assert_allclose(graph["scores"], np.abs(W), atol=1e-7)
    assert graph["scores"][0, 1] == pytest.approx(0.2) and np.all(np.diag(graph["scores"]) == 0)


def test_the_reference_encoder_at_64_pixels_has_the_reference_size():
    # ImageEncoderChambers(5): convs 3*64*9 + 3 * 64*64*9, four GroupNorms (128 each), Linear(16*16*64, 1024),
    # LayerNorm(1024), Linear(1024, 5)
    encoder = ChamberEncoder(5, 3, 64, 2, 64, 1024)
    expected = 3 * 64 * 9 + 3 * 64 * 64 * 9 + 4 * 128 + (16 * 16 * 64 * 1024 + 1024) + 2048 + (1024 * 5 + 5)
    assert sum(p.numel() for p in encoder.parameters()) == expected == 16_898_245
    for size in (16, 24, 32):
        assert ChamberEncoder(5, 3, size, 2, 64, 128)(torch.rand(2, 3, size, size)).shape == (2, 5)


def test_the_two_parameter_groups_take_their_own_rates(card):
    model = build_model("contrastive_crl", card, seed=0, lr=1e-3, lr_parametric=0.01, weight_decay=1e-4)
    parametric, encoder = model.optimizers()["adam"].param_groups
    assert parametric["lr"] == 0.01 and encoder["lr"] == 1e-3
    assert parametric["weight_decay"] == encoder["weight_decay"] == 1e-4
    assert {id(p) for p in parametric["params"]} == {id(p) for p in model.parametric_parameters()}
    assert len(encoder["params"]) == len(list(model.encoder.parameters()))
    default = build_model("contrastive_crl", card, seed=0).optimizers()["adam"].param_groups
    assert default[0]["lr"] == default[1]["lr"] == 5e-4  # lr_parametric null: the encoder's rate


def test_there_is_no_decoder(card):
    model = build_model("contrastive_crl", card, seed=0)
    x = torch.rand(2, 3, SIZE, SIZE)
    with pytest.raises(NotApplicable, match="has no decoder"):
        model.reconstruct(x)
    with pytest.raises(NotApplicable, match="has no decoder"):
        model.intervene(x, 1, 0.5)


def test_a_short_run_on_a_datasets_environments_trains_and_encodes(dataset):
    split = dataset.split("train")
    environment = split.extras["environment"]
    assert sorted(set(environment.tolist())) == [0, 1, 2, 3, 4]
    model = build_model("contrastive_crl", dataset.card, seed=0)
    before = model.A.detach().clone()
    history = train(model, split.images, split.factors, budget=Budget(steps=4, batch_size=64), seed=0, progress=False,
                    environments=environment)
    assert history.steps == 4 and {"loss", "observational_ce", "interventional_ce", "accuracy"} <= set(history.epochs[0])
    assert all(math.isfinite(value) for value in history.epochs[0].values())
    assert not torch.equal(model.A.detach(), before)
    codes = model.encode(torch.rand(3, 3, SIZE, SIZE))
    assert codes.shape == (3, 4, 1)
    result = compute_with_model("graph@card", model, dataset, split, dataset.split("test"), seed=0)
    assert {"shd", "auroc"} <= set(result.scores)


def test_the_same_seed_gives_the_same_weights(dataset):
    split = dataset.split("train")
    states = []
    for _ in range(2):
        model = build_model("contrastive_crl", dataset.card, seed=3)
        train(model, split.images, split.factors, budget=Budget(steps=3, batch_size=64), seed=3, progress=False,
              environments=split.extras["environment"])
        states.append(model.state_dict())
    assert all(torch.equal(states[0][key], states[1][key]) for key in states[0])


def test_an_optimisation_step_on_a_hand_built_batch(card):
    model = build_model("contrastive_crl", card, seed=0)
    optimizers = model.optimizers()
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    losses = optimisation_step(model, optimizers, batch([0, 1, 2, 3, 4, 0, 2, 1]), 0)
    assert math.isfinite(losses["loss"]) and 0.0 <= losses["accuracy"] <= 1.0
    assert all(not torch.equal(p.detach(), before[name]) for name, p in model.named_parameters())


def test_the_monitor_and_the_checks_leave_out_what_needs_a_decoder(card):
    from crlbench.suites.checks import cell_checks
    from crlbench.suites.monitor import ValidationMonitor, ValidationSample
    from crlbench.training.convergence import MONITOR_KEY

    model = build_model("contrastive_crl", card, seed=0)
    rng = np.random.default_rng(0)
    sample = ValidationSample(rng.integers(0, 256, size=(32, SIZE, SIZE, 3), dtype=np.uint8),
                              rng.normal(size=(32, 4)), "test")
    readings = ValidationMonitor(sample, "cpu", seed=0)(model)
    assert MONITOR_KEY not in readings and "mcc@pearson.mcc" in readings
    reason = "model 'contrastive_crl' has no decoder"
    checks = cell_checks(model, train_images=sample.images, reconstruction_images=sample.images[:4],
                         evaluation_images=sample.images, codes=rng.normal(size=(32, 4)), scores={},
                         suite_metrics=["mcc@pearson", "counterfactual@probe"], latent_metrics=["mcc@pearson"],
                         not_applicable={"reconstruction": reason, "counterfactual@probe": reason})
    assert checks["reconstruction_vs_mean_image"]["flagged"] is None
    assert checks["reconstruction_vs_mean_image"]["reason"] == f"reconstruction.mse does not apply: {reason}"
    assert checks["inert_do"]["flagged"] is None and "does not apply" in checks["inert_do"]["reason"]


def test_a_cell_records_what_needs_a_decoder_as_not_applicable(tmp_path):
    from crlbench.suites.results import cell_dir, read_result
    from crlbench.suites.suite import run_suite
    from crlbench.suites.suite_config import load_suite
    from suite_fixture import write_suite

    path = write_suite(tmp_path, datasets=[{"name": "pendulum", "params": {"size": SIZE, "environments": True}}],
                       models=[{"name": "contrastive_crl"}], budget={"steps": 2, "batch_size": 64},
                       metrics=["mcc@pearson", "graph@card", "counterfactual@probe"])
    config = load_suite(path)
    summary = run_suite(config, tmp_path / "work", progress=False)
    assert (summary.ok, summary.not_applicable, summary.failed) == (1, 0, 0)
    record = read_result(cell_dir(tmp_path / "work", config.cells()[0].hash))
    assert record["status"] == "ok" and "partial" not in record and "metric_errors" not in record
    assert record["given"] == ["environments"] and record["latent_size"] == 4
    assert set(record["not_applicable"]) == {"reconstruction", "counterfactual@probe", "intervention_grid"}
    assert all("has no decoder" in reason for reason in record["not_applicable"].values())
    assert "reconstruction.mse" not in record["scores"] and "mcc@pearson.mcc" in record["scores"]
    assert {"graph@card.shd", "graph@card.auroc"} <= set(record["scores"])
    assert record["checks"]["reconstruction_vs_mean_image"]["flagged"] is None
    assert "does not apply" in record["checks"]["reconstruction_vs_mean_image"]["reason"]
    assert all("heldout_reconstruction_mse" not in reading["scores"] for reading in record["history"]["evaluations"])
