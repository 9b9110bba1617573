"""DEAR: the SCM prior, its support, supervision targets, the monotone link and do() in the prior."""

import numpy as np
import pytest
import torch

from crlbench.core import registry
from model_fixtures import card_32, random_batch
from crlbench.baselines.dear import MonotoneMap
from crlbench.core.errors import ConfigError
from crlbench.training.train import build_model


@pytest.fixture(scope="module")
def card(tmp_path_factory):
    return card_32("flow", tmp_path_factory)


def batch(count=8):
    return random_batch(count)


def test_the_graph_is_learned_only_on_the_given_support(card):
    model = build_model("dear", card, seed=0)
    assert not model.adjacency.any()  # zero-initialised, as the reference
    for step in range(3):
        model.training_step(batch(), step)
    support = torch.as_tensor(np.asarray(card.adjacency), dtype=torch.float32)
    assert torch.all(model.adjacency[support == 0] == 0) and torch.any(model.adjacency[support == 1] != 0)


def test_prior_samples_follow_the_linear_scm(card):
    model = build_model("dear", card, seed=0)
    with torch.no_grad():
        model.adjacency.copy_(0.5 * model.support)
    noise = torch.randn(5, 4)
    v = model.solve(noise)
    torch.testing.assert_close(v, v @ (model.adjacency * model.support) + noise)


@pytest.mark.parametrize("kind", ["linear", "nonlinear"])
def test_the_link_is_increasing_and_inverted(kind):
    torch.manual_seed(0)
    link = MonotoneMap(3, kind, positive_gain=True)
    v = torch.linspace(-4, 4, 50)[:, None].expand(50, 3)
    z = link(v)
    assert torch.all(z[1:] > z[:-1])
    torch.testing.assert_close(link.inverse(z), v, atol=1e-4, rtol=1e-4)


def test_supervision_targets_are_min_max_labels_optionally_clipped(card):
    model = build_model("dear", card, seed=0, target_clip=0.1)
    labels = torch.stack([(torch.tensor(card.label_stats["min"]) - torch.tensor(card.label_stats["mean"]))
                          / torch.tensor(card.label_stats["std"])])  # every factor at its minimum
    mean = torch.zeros(1, 6)
    expected = torch.nn.functional.binary_cross_entropy_with_logits(torch.zeros(1, 4), torch.full((1, 4), 0.1))
    assert model.supervised_loss(mean, labels).item() == pytest.approx(expected.item(), abs=1e-5)
    l2 = build_model("dear", card, seed=0, sup_type="l2")
    assert l2.supervised_loss(mean, labels).item() == pytest.approx(labels.pow(2).mean().item(), rel=1e-6)


def test_do_holds_the_value_and_propagates_to_descendants_only(card):
    model = build_model("dear", card, seed=0, positive_gain=True)
    with torch.no_grad():
        model.adjacency.copy_(0.8 * model.support)  # flow: ball -> height -> flow <- hole
    seen = []
    generate = model.generate
    model.generate = lambda latent: seen.append(latent.clone()) or generate(latent)
    x = batch(4)["images"]
    factual = model.posterior(x)[0]
    model.intervene(x, 2, 1.5)  # water height
    after = seen[0]
    torch.testing.assert_close(after[:, 2], torch.full((4,), 1.5), atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(after[:, [0, 1, 4, 5]], factual[:, [0, 1, 4, 5]], atol=1e-5, rtol=1e-5)
    assert not torch.allclose(after[:, 3], factual[:, 3])


def test_bad_configuration_is_refused(card):
    with pytest.raises(ConfigError, match="'sup_type' must be one of ce, l2"):
        registry.model("dear", card, sup_type="hinge")
    with pytest.raises(ConfigError, match="target must be a factor index in 0..3; got 4"):
        build_model("dear", card, seed=0).intervene(batch(2)["images"], 4, 0.0)


@pytest.fixture(scope="module")
def card_64(tmp_path_factory):
    return registry.dataset("pendulum", cache_dir=tmp_path_factory.mktemp("d"), size=64).card


def test_reference_networks_encode_reconstruct_and_intervene_at_64(card_64):
    model = build_model("dear", card_64, seed=0, networks="reference")
    x = random_batch(4, size=64)["images"]
    assert model.encode(x).shape == (4, 4, 1)
    assert model.reconstruct(x).shape == x.shape
    out = model.intervene(x, 1, 0.5)
    assert out.shape == x.shape and 0 <= out.min() and out.max() <= 1


def test_reference_networks_train_one_step_with_finite_losses(card_64):
    from crlbench.training.train import optimisation_step

    model = build_model("dear", card_64, seed=0, networks="reference")
    losses = optimisation_step(model, model.optimizers(), random_batch(4, size=64), 0)
    assert set(losses) == {"discriminator", "encoder", "supervision", "generator"}
    assert all(np.isfinite(value) for value in losses.values())


def test_reference_networks_have_the_hand_counted_sizes(card_64):
    """Encoder 27 723 852, generator 8 553 956, discriminator 13 283 892 (hand counts in test_nets.py),
    A 16 and the linear link's gain and offset 8: 49 561 724 in all."""
    model = registry.model("dear", card_64, networks="reference")
    sizes = {name: sum(p.numel() for p in getattr(model, name).parameters())
             for name in ("encoder", "generator", "discriminator")}
    assert sizes == {"encoder": 27_723_852, "generator": 8_553_956, "discriminator": 13_283_892}
    assert sum(p.numel() for p in model.parameters()) == 49_561_724


def test_reference_networks_refuse_other_sizes(card):
    with pytest.raises(ConfigError, match="image size must be 64 .*got 32"):
        registry.model("dear", card, networks="reference")
