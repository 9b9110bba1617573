"""ICM-VAE: the causal flow by topological levels, its Jacobian, do(), the prior, the loss and the warm-up."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from crlbench.core import registry
from model_fixtures import card_32, random_batch
from crlbench.core.errors import ConfigError
from crlbench.core.graph import topological_levels
from crlbench.icmvae.flow import MaskedAffineFlow
from crlbench.icmvae.model import warmup
from crlbench.training.train import Budget, build_model, train

PENDULUM = np.array([[0, 0, 1, 1], [0, 0, 1, 1], [0, 0, 0, 0], [0, 0, 0, 0]])
FLOW = np.array([[0, 0, 1, 0], [0, 0, 0, 1], [0, 0, 0, 1], [0, 0, 0, 0]])
CIRCUIT = np.array([[0, 1, 1, 1], [0, 0, 0, 1], [0, 0, 0, 1], [0, 0, 0, 0]])


def node_by_node(flow: MaskedAffineFlow, base, graph, target=None, value=None):
    """The reference's loop: nodes 0..K-1 in index order, each from the parents' blocks."""
    latent = torch.zeros_like(base)
    for i in range(len(graph)):
        scale, shift = flow.scale_shift(latent.flatten(1), [i])
        latent = latent.clone()
        latent[:, i] = torch.exp(scale[:, 0]) * base[:, i] + shift[:, 0]
        if target == i:
            latent[:, i] = value
    return latent


@pytest.mark.parametrize("graph, levels", [(PENDULUM, [[0, 1], [2, 3]]), (FLOW, [[0, 1], [2], [3]]),
                                           (CIRCUIT, [[0], [1, 2], [3]])])
def test_topological_levels(graph, levels):
    assert topological_levels(graph) == levels


@pytest.mark.parametrize("graph", [PENDULUM, FLOW, CIRCUIT])
@pytest.mark.parametrize("shared", [True, False])
def test_levels_give_the_same_latent_as_the_node_by_node_reference(graph, shared):
    torch.manual_seed(0)
    flow = MaskedAffineFlow(graph, 3, shared=shared, bounded=True)
    base = torch.randn(5, 4, 3)
    latent, _ = flow(base)
    torch.testing.assert_close(latent, node_by_node(flow, base, graph))


@pytest.mark.parametrize("bounded", [True, False])
def test_log_det_is_the_log_determinant_of_the_jacobian(bounded):
    torch.manual_seed(1)
    flow = MaskedAffineFlow(CIRCUIT, 2, shared=False, bounded=bounded).double()
    base = torch.randn(1, 4, 2, dtype=torch.float64)
    jacobian = torch.autograd.functional.jacobian(lambda b: flow(b.view(1, 4, 2))[0].flatten(), base.flatten())
    _, log_det = flow(base)
    assert log_det.item() == pytest.approx(torch.linalg.slogdet(jacobian)[1].item(), abs=1e-10)


def test_do_keeps_non_descendants_sets_the_target_and_recomputes_descendants():
    torch.manual_seed(2)
    flow = MaskedAffineFlow(FLOW, 3)
    base = torch.randn(6, 4, 3)
    observed, _ = flow(base)
    value = torch.full((6, 3), 0.7)
    after, _ = flow(base, target=2, value=value)  # water height: parent of flow only
    torch.testing.assert_close(after[:, :2], observed[:, :2])
    torch.testing.assert_close(after[:, 2], value)
    torch.testing.assert_close(after, node_by_node(flow, base, FLOW, target=2, value=value))
    assert not torch.allclose(after[:, 3], observed[:, 3])


def test_shared_nets_give_nodes_with_the_same_parents_the_same_mechanism():
    torch.manual_seed(3)
    context = torch.randn(4, 16)
    shared = MaskedAffineFlow(PENDULUM, 4, shared=True)
    scale, shift = shared.scale_shift(context, [2, 3])
    torch.testing.assert_close(scale[:, 0], scale[:, 1])
    separate = MaskedAffineFlow(PENDULUM, 4, shared=False)
    scale, _ = separate.scale_shift(context, [2, 3])
    assert not torch.allclose(scale[:, 0], scale[:, 1])


def test_warmup_matches_the_reference_schedule():
    assert [warmup(1.2, e, 94) for e in (0, 1)] == [0.0, 0.0]
    assert warmup(1.2, 2, 94) == pytest.approx(1.2 / 93)
    assert warmup(1.2, 94, 94) == pytest.approx(1.2) and warmup(1.2, 300, 94) == pytest.approx(1.2)
    assert warmup(1.2, 0, 94, start=0) == pytest.approx(1.2 / 93) and warmup(1.2, 92, 94, start=0) == pytest.approx(1.2)


@pytest.mark.parametrize("start, nonzero_from", [(2, 2), (0, 0)])
def test_the_trainer_drives_the_warmup_per_epoch_as_the_reference_loop(card, start, nonzero_from):
    """The reference sets alpha/beta at the END of epoch e to final * e / 93, so epochs 0 and 1 train with
    zero weights and epoch 2 with final / 93: check the values each epoch actually trains with."""
    model = build_model("icm_vae", card, seed=0, warmup_start_epoch=start)
    seen = []
    step = model.training_step
    model.training_step = lambda b, s: seen.append((model.alpha, model.beta)) or step(b, s)
    images = (np.random.default_rng(0).random((4, 32, 32, 3)) * 255).astype(np.uint8)
    train(model, images, np.zeros((4, 4)), budget=Budget(epochs=3, batch_size=4), seed=0, progress=False)
    expected = [(0.1 * n / 93, 1.2 * n / 93) for n in (max(e - nonzero_from + 1, 0) for e in range(3))]
    assert seen == [pytest.approx(pair) for pair in expected]
    assert seen[nonzero_from] != (0.0, 0.0) and all(pair == (0.0, 0.0) for pair in seen[:nonzero_from])


def weights_per_step(model, steps, batch_size=4):
    """(alpha, beta) in force at each training step of a run of ``steps`` steps on 4 images."""
    seen = []
    step = model.training_step

    def record(batch, s):
        losses = step(batch, s)
        seen.append((model.alpha, model.beta))
        return losses

    model.training_step = record
    images = (np.random.default_rng(0).random((4, 32, 32, 3)) * 255).astype(np.uint8)
    train(model, images, np.zeros((4, 4)), budget=Budget(steps=steps, batch_size=batch_size), seed=0, progress=False)
    return seen


def test_budget_schedule_ramps_over_the_same_fraction_of_any_run_as_the_reference(card):
    """schedule="budget": step t of T trains with the weights of reference epoch floor(101 t / T): zero for the
    first 2/101 of the run, full from 94/101 on, so a 101-step run finishes its warm-up; "absolute" counts
    epochs (4 steps each here) and does not."""
    model = build_model("icm_vae", card, seed=0, schedule="budget")
    betas = [beta for _, beta in weights_per_step(model, 101, batch_size=1)]
    assert betas[:2] == [0.0] * 2 and betas[2] == pytest.approx(1.2 / 93)
    assert betas[93] < 1.2 and betas[94:] == [pytest.approx(1.2)] * 7
    assert model.schedule() == {"kind": "budget", "warmup_start_step": 2, "full_weight_step": 94,
                                "total_steps": 101, "finished": True}
    absolute = build_model("icm_vae", card, seed=0)
    betas = [beta for _, beta in weights_per_step(absolute, 101, batch_size=1)]
    assert betas[-1] == pytest.approx(1.2 * 24 / 93)  # step 100 is in epoch 25
    assert absolute.schedule() == {"kind": "absolute", "warmup_start_step": 8, "full_weight_step": 376,
                                   "total_steps": 101, "finished": False}


def test_each_loss_term_is_the_reference_formula_with_the_prior_on_the_posterior_latent(card):
    """noise term 0.5 |eps|^2 - sum s; prior term 0.5 |z - mu|^2 with mu_i = exp(s'(z_pa)) u_i + t'(z_pa)
    computed from the posterior z (not detached: its gradient reaches the encoder), u the standardised labels."""
    model = build_model("icm_vae", card, seed=0)
    data = batch()
    eps = model.noise(data["images"])[0]
    latent, _ = model.flow(eps)
    scales, noise = [], 0.5 * eps.pow(2).sum(dim=(1, 2))
    for nodes in topological_levels(PENDULUM):  # the flow's log-det, node by node from the parents' blocks
        scale, _ = model.flow.scale_shift(latent.flatten(1), nodes)
        noise = noise - scale.sum(dim=(1, 2))
    context = [latent.flatten(1) * model.prior.masks[i] for i in range(4)]
    mu = torch.stack([torch.exp(model.prior.scale_nets[0](context[i])) * data["factors"][:, i, None]
                      + model.prior.shift_nets[0](context[i]) for i in range(4)], dim=1)
    prior = (0.5 * (latent - mu).pow(2).sum(dim=(1, 2))).mean()
    losses = model.training_step(data, 0)
    assert losses["noise_kl"].item() == pytest.approx(noise.mean().item(), rel=1e-5)
    assert losses["prior"].item() == pytest.approx(prior.item(), rel=1e-5)
    weights = list(model.encoder.parameters())[-2:]
    got, expected = torch.autograd.grad(losses["prior"], weights), torch.autograd.grad(prior, weights)
    assert got[0].abs().sum() > 0
    for a, b in zip(got, expected):
        torch.testing.assert_close(a, b)


@pytest.fixture(scope="module")
def card(tmp_path_factory):
    return card_32("pendulum", tmp_path_factory)


def batch(count=4):
    return random_batch(count)


def test_loss_is_width_scaled_bce_plus_weighted_terms(card):
    model = build_model("icm_vae", card, seed=0)
    model.on_epoch_start(50)
    data = batch()
    losses = model.training_step(data, 0)
    latent = model.encode(data["images"])
    bce = F.binary_cross_entropy_with_logits(model.decode(latent), data["images"])
    assert losses["reconstruction"].item() == pytest.approx(32 * bce.item(), rel=1e-5)
    expected = losses["reconstruction"] + model.alpha * losses["noise_kl"] + model.beta * losses["prior"]
    assert losses["loss"].item() == pytest.approx(expected.item(), rel=1e-5)
    assert model.alpha == pytest.approx(0.1 * 49 / 93) and model.beta == pytest.approx(1.2 * 49 / 93)


def test_labels_enter_only_through_the_prior(card):
    model = build_model("icm_vae", card, seed=0)
    model.on_epoch_start(0)  # alpha = beta = 0: the labels cannot matter
    data = batch()
    other = {"images": data["images"], "factors": data["factors"] + 5}
    assert model.training_step(data, 0)["loss"] == model.training_step(other, 0)["loss"]
    model.on_epoch_start(94)
    assert model.training_step(data, 0)["prior"] != model.training_step(other, 0)["prior"]


def test_intervention_decodes_the_abs_of_concept_3_by_default(card):
    seen = []
    for option in (True, False):
        model = build_model("icm_vae", card, seed=0, abs_at_intervention=option)
        decode = model.decode
        model.decode = lambda latent: seen.append(latent.clone()) or decode(latent)
        out = model.intervene(batch()["images"], 0, -3.0)
        assert out.shape == (4, 3, 32, 32)
    with_abs, without = seen
    torch.testing.assert_close(with_abs[:, 3], without[:, 3].abs())
    assert torch.all(with_abs[:, 0] == -3.0)


def test_encode_shape_options_and_bad_config(card):
    model = build_model("icm_vae", card, seed=0, decoder="per_concept", shared_mechanism_nets=False)
    assert model.encode(batch()["images"]).shape == (4, 4, 4) and len(model.decoders) == 4
    assert build_model("icm_vae", card, seed=0, deterministic_z=False).training_step(batch(), 0)["loss"].isfinite()
    with pytest.raises(ConfigError, match="'decoder' must be one of shared, per_concept"):
        registry.model("icm_vae", card, decoder="mlp")
    with pytest.raises(ConfigError, match="warmup_start_epoch"):
        registry.model("icm_vae", card, warmup_start_epoch=-1)
    with pytest.raises(ConfigError, match="target must be a concept index in 0..3; got 4"):
        model.intervene(batch()["images"], 4, 0.0)



def test_the_reference_backbone_works_on_rgba_and_returns_rgb(tmp_path):
    card = registry.dataset("pendulum", cache_dir=tmp_path, size=16).card
    model = build_model("icm_vae", card, seed=0, backbone="reference")
    x = torch.rand(2, 3, 16, 16)
    assert model.training_step({"images": x, "factors": torch.zeros(2, 4)}, 0)["loss"].isfinite()
    assert model.reconstruct(x).shape == (2, 3, 16, 16) and model.intervene(x, 0, 0.5).shape == (2, 3, 16, 16)
    assert model.decode(model.encode(x)).shape == (2, 4, 16, 16)  # logits include the alpha channel


def test_model_do_on_a_leaf_keeps_the_others_and_on_a_root_moves_its_descendants(card):
    model = build_model("icm_vae", card, seed=0, abs_at_intervention=False)  # the abs quirk would touch concept 3
    x = batch()["images"]
    factual = model.encode(x)
    seen = []
    decode = model.decode
    model.decode = lambda latent: seen.append(latent.clone()) or decode(latent)
    model.intervene(x, 2, 0.25)  # shadow length: a leaf
    torch.testing.assert_close(seen[0][:, [0, 1, 3]], factual[:, [0, 1, 3]])
    assert torch.all(seen[0][:, 2] == 0.25)
    model.intervene(x, 0, 0.25)  # pendulum angle: a root with children 2 and 3
    torch.testing.assert_close(seen[1][:, 1], factual[:, 1])
    assert not torch.allclose(seen[1][:, 2], factual[:, 2]) and not torch.allclose(seen[1][:, 3], factual[:, 3])
