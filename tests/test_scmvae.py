"""SCM-VAE: the reference's hyperparameters, its loss and structural prior, its mechanisms, do() and seeding."""

import ast
import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from crlbench.baselines.scmvae_config import SCMVAEConfig
from crlbench.core import registry
from crlbench.core.errors import ConfigError
from crlbench.training.train import Budget, build_model, train
from model_fixtures import card_32, random_batch

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def card(tmp_path_factory):
    return card_32("pendulum", tmp_path_factory)


@pytest.fixture(scope="module")
def flow_card(tmp_path_factory):
    return card_32("flow", tmp_path_factory)


def reference_encode(model, eps, target=None, value=None):
    """``SCM_VAE.encode``'s loop, node by node in index order: roots keep eps, the others
    g((A + I)[:, i] * z_temp), where z_temp still holds the node's own eps; do() overwrites after the node."""
    graph = torch.as_tensor(model.graph, dtype=torch.float32)
    mask = graph + torch.eye(len(graph))
    z_temp = eps.clone()
    for i in range(len(graph)):
        if graph[:, i].any():
            z_temp[:, i] = model.mechanism_nets[0]((mask[:, i].reshape(-1, 1) * z_temp).flatten(1))
        if target == i:
            z_temp[:, i] = value
    return z_temp


def reference_prior_mean(labels, graph, k):
    """``structural_condition_prior`` with offsets 0 and scales 1 (the labels come standardised)."""
    inp = torch.as_tensor(np.asarray(graph), dtype=torch.float32).t() + torch.eye(len(graph))
    counts = torch.count_nonzero(inp, dim=1)
    mean = torch.ones(labels.shape[0], labels.shape[1], k)
    for i in range(labels.shape[0]):
        for j in range(labels.shape[1]):
            mean[i][j] = torch.ones(k) * (torch.matmul(inp, labels[i])[j] / counts[j]).item()
    return mean


def kl_normal(qm, qv, pm, pv):
    return (0.5 * (torch.log(pv) - torch.log(qv) + qv / pv + (qm - pm).pow(2) / pv - 1)).sum(-1)


def test_defaults_are_the_reference_training_script():
    config = SCMVAEConfig()
    assert (config.concept_dim, config.alpha, config.beta, config.sampling_variance) == (4, 0.1, 1.0, 1e-3)
    assert (config.lr, config.adam_beta1, config.adam_beta2) == (1e-3, 0.9, 0.999)
    assert (config.shared_mechanism_net, config.mechanism, config.rec_reduction) == (True, "joint", "width")
    assert (config.decoder, config.backbone) == ("per_concept", "conv")  # the reference's decode_sep on the conv backbone


@pytest.mark.parametrize("options, message", [
    ({"alpha": -1.0}, "model 'scm_vae': parameter 'alpha' must be non-negative; got -1.0"),
    ({"beta": -0.5}, "parameter 'beta' must be non-negative"),
    ({"sampling_variance": -1e-3}, "parameter 'sampling_variance' must be non-negative"),
    ({"concept_dim": 0}, "parameter 'concept_dim' must be a positive integer; got 0"),
    ({"mechanism": "linear"}, "'mechanism' must be one of joint, additive; got 'linear'"),
    ({"lambda_v": 1e-3}, "lambda_v"),
])
def test_a_bad_hyperparameter_is_a_config_error_that_names_it(card, options, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        registry.model("scm_vae", card, **options)


def test_the_structural_prior_averages_each_concept_with_its_parents_by_hand(card, flow_card):
    labels = torch.tensor([[1.0, 2.0, 3.0, 4.0]])
    pendulum = build_model("scm_vae", card, seed=0).prior_mean(labels)[0, :, 0]  # 0, 1 -> 2, 3
    torch.testing.assert_close(pendulum, torch.tensor([1.0, 2.0, 2.0, 7 / 3]))
    flow = build_model("scm_vae", flow_card, seed=0).prior_mean(labels)[0, :, 0]  # 0 -> 2, 1 -> 3, 2 -> 3
    torch.testing.assert_close(flow, torch.tensor([1.0, 2.0, 2.0, 3.0]))
    labels = torch.randn(5, 4)
    for model_card in (card, flow_card):
        model = build_model("scm_vae", model_card, seed=0)
        torch.testing.assert_close(model.prior_mean(labels), reference_prior_mean(labels, model_card.adjacency, 4))


def test_loss_terms_on_a_hand_checked_case(card):
    """eps = 0 with variance e, the mechanism's output zeroed, logits 0, labels (1, 2, 3, 4) on Pendulum:
    rec = W ln 2; KL(N(0, e) || N(0, 1)) = 16 x 0.5 (e - 2); prior = 0.5 x 4 x (1 + 4 + 2^2 + (7/3)^2)."""
    model = build_model("scm_vae", card, seed=0)
    with torch.no_grad():
        model.mechanism_nets[0][-1].weight.zero_()
        model.mechanism_nets[0][-1].bias.zero_()
    model.posterior = lambda images: (torch.zeros(len(images), 4, 4), torch.full((len(images), 4, 4), math.e))
    model.decode = lambda latent: torch.zeros(len(latent), 3, 32, 32)
    data = {"images": random_batch(2)["images"], "factors": torch.tensor([[1.0, 2.0, 3.0, 4.0]] * 2)}
    losses = model.training_step(data, 0)
    assert losses["reconstruction"].item() == pytest.approx(32 * math.log(2), rel=1e-6)
    assert losses["noise_kl"].item() == pytest.approx(8 * (math.e - 2), rel=1e-6)
    assert losses["prior"].item() == pytest.approx(2 * (9 + 49 / 9), rel=1e-6)
    expected = 32 * math.log(2) + 0.1 * 8 * (math.e - 2) + 1.0 * 2 * (9 + 49 / 9)
    assert losses["loss"].item() == pytest.approx(expected, rel=1e-6)


def test_loss_is_the_reference_get_loss(card):
    """``_get_loss`` written out with the reference's helpers: rec = -mean(log_bernoulli_with_logits(x, x_hat))
    on [B, C, H, W] (a sum over the last axis), kl = alpha kl_normal(z_m, z_v, 0, 1) + beta sum_i
    kl_normal(z_masked_i, 1, mu_i, 1), mean over the batch; the decoder reads z_masked + sqrt(lambda_v z_v) N(0, 1)."""
    model = build_model("scm_vae", card, seed=0, alpha=0.3, beta=2.0)
    data = random_batch(3)
    torch.manual_seed(7)
    losses = model.training_step(data, 0)
    torch.manual_seed(7)
    z_m, z_v = model.posterior(data["images"])
    z_masked = reference_encode(model, z_m)
    z_sample = z_masked + (z_v * 1e-3) ** 0.5 * torch.randn(z_masked.shape)
    x_hat = model.decode(z_sample)
    rec = -torch.mean(-F.binary_cross_entropy_with_logits(x_hat, data["images"], reduction="none").sum(-1))
    cp_m, cp_v = reference_prior_mean(data["factors"], card.adjacency, 4), torch.ones(3, 4, 4)
    kl = 0.3 * kl_normal(z_m.reshape(3, 16), z_v.reshape(3, 16), torch.zeros(3, 16), torch.ones(3, 16))
    for i in range(4):
        kl = kl + 2.0 * kl_normal(z_masked[:, i], cp_v[:, i], cp_m[:, i], cp_v[:, i])
    assert losses["reconstruction"].item() == pytest.approx(rec.item(), rel=1e-5)
    assert losses["loss"].item() == pytest.approx((rec + kl.mean()).item(), rel=1e-5)


@pytest.mark.parametrize("dataset", ["pendulum", "flow", "causal_circuit"])
def test_the_structural_layer_is_the_reference_loop_on_the_cards_graph(dataset, tmp_path_factory):
    model = build_model("scm_vae", card_32(dataset, tmp_path_factory), seed=0)
    eps = torch.randn(5, 4, 4)
    latent = model.structural(eps)
    torch.testing.assert_close(latent, reference_encode(model, eps), rtol=0, atol=0)
    roots = [i for i in range(4) if not model.graph[:, i].any()]
    assert torch.equal(latent[:, roots], eps[:, roots])


def test_additive_mechanisms_add_the_noise_to_a_function_of_the_parents_only(card):
    model = build_model("scm_vae", card, seed=0, mechanism="additive", shared_mechanism_net=False)
    assert len(model.mechanism_nets) == 2  # one per node with parents (2 and 3)
    eps = torch.randn(3, 4, 4)
    latent = model.structural(eps)
    parents_only = eps * torch.tensor([1.0, 1.0, 0.0, 0.0])[None, :, None]
    torch.testing.assert_close(latent[:, 2], model.mechanism_nets[0](parents_only.flatten(1)) + eps[:, 2])
    torch.testing.assert_close(latent[:, 3], model.mechanism_nets[1](parents_only.flatten(1)) + eps[:, 3])


def decoded_latent(model, images, target, value):
    seen = []
    decode = model.decode
    model.decode = lambda latent: seen.append(latent.clone()) or decode(latent)
    model.intervene(images, target, value)
    model.decode = decode
    return seen[0]


@pytest.mark.parametrize("dataset", ["pendulum", "flow", "causal_circuit"])
def test_do_keeps_non_descendants_bit_identical_and_recomputes_descendants(dataset, tmp_path_factory):
    model = build_model("scm_vae", card_32(dataset, tmp_path_factory), seed=0)
    images = random_batch(4)["images"]
    factual = model.encode(images)
    for target in range(4):
        after = decoded_latent(model, images, target, 2.5)
        downstream = {int(j) for j in np.flatnonzero(model.graph[target])}
        stack = list(downstream)
        while stack:  # descendants, by hand
            for child in np.flatnonzero(model.graph[stack.pop()]):
                if int(child) not in downstream:
                    downstream.add(int(child))
                    stack.append(int(child))
        assert torch.all(after[:, target] == 2.5)
        for node in set(range(4)) - downstream - {target}:
            assert torch.equal(after[:, node], factual[:, node]), (target, node)
        for node in downstream:
            assert not torch.allclose(after[:, node], factual[:, node]), (target, node)
        eps = model.posterior(images)[0]
        torch.testing.assert_close(after, reference_encode(model, eps, target, 2.5))  # perform_intervention


def test_do_takes_a_scalar_one_value_per_image_or_one_block_per_image(card):
    model = build_model("scm_vae", card, seed=0)
    images = random_batch(3)["images"]
    per_image = torch.tensor([0.0, 1.0, 2.0])
    block = torch.arange(12.0).view(3, 4)
    assert torch.equal(decoded_latent(model, images, 0, per_image)[:, 0], per_image[:, None].expand(3, 4))
    assert torch.equal(decoded_latent(model, images, 0, block)[:, 0], block)
    out = model.intervene(images, 1, 0.5)
    assert out.shape == images.shape and 0 <= out.min() and out.max() <= 1
    with pytest.raises(ConfigError, match="target must be a concept index in 0..3; got 4"):
        model.intervene(images, 4, 0.0)


def test_the_same_seed_trains_bit_identical_weights_and_another_seed_does_not(tmp_path_factory):
    dataset = registry.dataset("pendulum", cache_dir=tmp_path_factory.mktemp("d"), size=32)
    split = dataset.split("train")
    images, factors = split.images[:48], split.factors[:48]

    def fit(seed):
        model = build_model("scm_vae", dataset.card, seed=seed)
        train(model, images, factors, budget=Budget(epochs=2, batch_size=16), seed=seed, progress=False)
        return model.state_dict()

    first, again, other = fit(0), fit(0), fit(1)
    assert all(torch.equal(first[name], again[name]) for name in first)
    assert not all(torch.equal(first[name], other[name]) for name in first)


def test_supervision_options_and_the_reference_backbone(tmp_path):
    card = registry.dataset("pendulum", cache_dir=tmp_path, size=16).card
    model = build_model("scm_vae", card, seed=0, backbone="reference")
    assert model.supervision() == ["labels", "true graph"]
    x = torch.rand(2, 3, 16, 16)
    assert model.training_step({"images": x, "factors": torch.zeros(2, 4)}, 0)["loss"].isfinite()
    assert model.decode(model.encode(x)).shape == (2, 4, 16, 16)  # RGBA logits, as the reference's PNGs
    assert model.reconstruct(x).shape == (2, 3, 16, 16) and model.intervene(x, 0, 0.5).shape == (2, 3, 16, 16)
    per_concept = build_model("scm_vae", card, seed=0, decoder="per_concept", rec_reduction="sum")
    assert len(per_concept.decoders) == 4 and per_concept.training_step({"images": x, "factors": torch.zeros(2, 4)}, 0)["loss"].isfinite()


def imported_modules(path):
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            found.add(node.module)
    return found


def test_the_model_is_a_leaf_that_imports_no_other_model():
    allowed = ("crlbench.core.", "crlbench.training.", "torch", "numpy", "__future__", "dataclasses", "typing")
    for name in ("scmvae.py", "scmvae_config.py"):
        imports = imported_modules(ROOT / "baselines" / name) - {"crlbench.baselines.scmvae_config"}
        assert all(module.startswith(allowed) for module in imports), (name, imports)
    assert "torch" not in imported_modules(ROOT / "baselines" / "scmvae_config.py")
    assert dataclasses.is_dataclass(SCMVAEConfig) and SCMVAEConfig.__dataclass_params__.frozen
