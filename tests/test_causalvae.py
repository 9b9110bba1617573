"""CausalVAE: DAG layer, acyclicity, the reference loss, A's initialisation and do() on the learned graph."""

import numpy as np
import pytest
import torch

from bench import registry
from model_fixtures import card_32, random_batch
from bench.errors import ConfigError
from bench.train import build_model
from baselines.causalvae import REFERENCE_A0, acyclicity


@pytest.fixture(scope="module")
def card(tmp_path_factory):
    return card_32("pendulum", tmp_path_factory)


def batch(count=4):
    return random_batch(count)


def test_acyclicity_is_zero_on_a_dag_and_positive_on_a_cycle():
    assert acyclicity(torch.tensor(REFERENCE_A0, dtype=torch.float32)).item() == pytest.approx(0.0, abs=1e-6)
    cycle = torch.tensor([[0, 1.0], [1.0, 0]])
    assert acyclicity(cycle).item() > 0.1


def test_dag_layer_solves_the_linear_scm(card):
    model = build_model("causal_vae", card, seed=0)
    with torch.no_grad():
        model.adjacency.add_(0.1 * torch.randn(4, 4).triu(1))
    eps = torch.randn(3, 4, 4)
    latent = model.dag_layer(eps)
    torch.testing.assert_close(latent, torch.einsum("bid,ij->bjd", latent, model.adjacency) + eps, atol=1e-5, rtol=1e-5)


def test_initial_graph_is_the_reference_or_zeros(card):
    assert torch.equal(registry.model("causal_vae", card).adjacency.detach(), torch.tensor(REFERENCE_A0, dtype=torch.float32))
    assert not registry.model("causal_vae", card, a_init="zeros").adjacency.any()


def test_loss_is_the_sum_of_the_reference_terms(card):
    model = build_model("causal_vae", card, seed=0, alpha=0.5, beta=2.0)
    losses = model.training_step(batch(), 0)
    h = losses["acyclicity"]
    expected = (losses["reconstruction"] + 0.5 * losses["exogenous_kl"] + 2.0 * losses["causal_kl"] + losses["mask_kl"]
                + losses["label_mechanism"] + 3 * h + 0.5 * h * h)
    assert losses["loss"].item() == pytest.approx(expected.item(), rel=1e-6)


def test_label_mechanism_runs_on_raw_labels_by_default(card):
    raw = build_model("causal_vae", card, seed=0).training_step(batch(), 0)["label_mechanism"]
    standardised = build_model("causal_vae", card, seed=0, label_mechanism_on="standardised").training_step(batch(), 0)
    assert raw.item() > 100 * standardised["label_mechanism"].item()  # light index j is around 100


def test_do_holds_the_value_keeps_non_descendants_and_recomputes_descendants(card):
    model = build_model("causal_vae", card, seed=0)
    x = batch()["images"]
    seen = []
    decode = model.decode
    model.decode = lambda latent: seen.append(latent.clone()) or decode(latent)
    model.intervene(x, 1, 2.0)  # reference A0: 0 -> 1, 1 -> 2, 1 -> 3
    after = seen[0]
    factual = model.encode(x)
    assert torch.all(after[:, 1] == 2.0)
    torch.testing.assert_close(after[:, 0], factual[:, 0])
    assert not torch.allclose(after[:, 2], factual[:, 2]) and not torch.allclose(after[:, 3], factual[:, 3])


def test_attention_can_be_dropped_and_cycles_refuse_interventions(card):
    model = build_model("causal_vae", card, seed=0, attention=False)
    assert model.attention_weights is None
    eps = torch.randn(2, 4, 4)
    assert not model.residual(model.dag_layer(eps), eps).any()
    with torch.no_grad():
        model.adjacency[2, 0] = 1.0  # 0 -> 2 and 2 -> 0
    with pytest.raises(ConfigError, match="learned graph the graph has a cycle"):
        model.intervene(batch()["images"], 0, 1.0)
    assert np.array_equal(model.learned_graph()[[0, 2], [2, 0]], [1, 1])
