"""CausalVAE: DAG layer, acyclicity, the reference loss, A's initialisation and do() on the learned graph."""

import numpy as np
import pytest
import torch

from crlbench.core import registry
from model_fixtures import card_32, random_batch
from crlbench.baselines.causalvae import REFERENCE_A0, acyclicity
from crlbench.core.errors import ConfigError
from crlbench.training.train import build_model


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


def edges(adjacency, names):
    return {(names[i], names[j]) for i, j in zip(*np.nonzero(np.asarray(adjacency)))}


def test_reference_a0_on_flow_has_the_reference_edges_in_the_reference_label_order(tmp_path_factory):
    """The reference writes A0 in its Flow file order (ball, height, flow, hole); mapped into the canonical
    order it keeps the same named edges: height -> flow, not hole -> flow, and no hole -> height."""
    flow = card_32("flow", tmp_path_factory)
    reference_order = ("ball", "height", "flow", "hole")  # the reference's label order, its A0's rows
    expected = {(reference_order[i], reference_order[j]) for i, j in zip(*np.nonzero(np.asarray(REFERENCE_A0)))}
    short = {name: next(word for word in reference_order if word in name) for name in flow.factor_names}
    names = [short[name] for name in flow.factor_names]
    initial = registry.model("causal_vae", flow).adjacency.detach().numpy()
    assert edges(initial, names) == expected
    assert ("height", "flow") in edges(initial, names) and ("hole", "height") not in edges(initial, names)


def test_reconstruction_is_summed_over_the_width_as_the_reference(card):
    """rec = W x the mean per-pixel BCE (the reference's sum over the last axis, mean over the rest);
    rec_reduction="sum" is the every-pixel sum, C x H times larger."""
    model = build_model("causal_vae", card, seed=0, sampling_variance=0.0)
    x = batch()["images"]
    logits = model.decode(model.structural(x)[2])
    per_pixel = torch.nn.functional.binary_cross_entropy_with_logits(logits, x)
    losses = model.training_step(batch(), 0)
    assert losses["reconstruction"].item() == pytest.approx(32 * per_pixel.item(), rel=1e-5)
    summed = build_model("causal_vae", card, seed=0, sampling_variance=0.0, rec_reduction="sum").training_step(batch(), 0)
    assert summed["reconstruction"].item() == pytest.approx(3 * 32 * 32 * per_pixel.item(), rel=1e-5)


def test_reconstruction_fix_bumps_the_model_version():
    from crlbench.baselines.causalvae import CausalVAE

    assert CausalVAE.version == "2"


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
    with pytest.raises(ConfigError, match="learned graph is not acyclic .the graph has a cycle"):
        model.intervene(batch()["images"], 0, 1.0)
    assert np.array_equal(model.thresholded_graph()[[0, 2], [2, 0]], [1, 1])


def test_reference_backbone_reads_rgba_and_answers_in_rgb(card):
    model = build_model("causal_vae", card, seed=0, backbone="reference")
    x = batch()["images"]
    assert model.decode(model.encode(x)).shape == (4, 4, 32, 32)  # RGBA logits, as the reference
    assert model.encode(x).shape == (4, 4, 4)
    assert model.reconstruct(x).shape == x.shape
    out = model.intervene(x, 1, 0.5)
    assert out.shape == x.shape and 0 <= out.min() and out.max() <= 1


def test_reference_backbone_trains_and_uses_every_parameter(card):
    from crlbench.training.train import optimisation_step

    model = build_model("causal_vae", card, seed=0, backbone="reference")
    losses = optimisation_step(model, model.optimizers(), batch(), 0)
    assert np.isfinite(losses["loss"])
    assert [n for n, p in model.named_parameters() if p.grad is None] == []  # no layer built but never called


def test_reference_backbone_has_the_reference_parameter_count_at_96(tmp_path_factory):
    """Hand count at 96x96 RGBA, z = 4 x 4 (the reference's ``Encoder`` and ``Decoder_DAG`` in
    huawei-noah/trustworthyAI research/CausalVAE/codebase/models/nns/mask.py):

    encoder 36864 -> 900 -> 300 -> 16 (mean only; the discarded variance half is not built):
        33 177 600 + 900 + 270 000 + 300 + 4 800 + 16                          =  33 453 616
    4 decoders 4 -> 300 -> 300 -> 1024 -> 36864, per concept 38 185 624; the four last-layer
    biases, only ever averaged, are one:  4 x 38 185 624 - 3 x 36 864          = 152 631 904
    A 16, mask MLPs 4 x (4*32+32 + 32*4+4) = 1 168, label MLPs 4 x (32+32 + 32+1) = 388, M 16 =   1 588
    total                                                                      = 186 087 108
    The reference's used parts are 186 202 516: 4 816 (variance half) and
    110 592 (three biases) more.
    """
    card96 = registry.dataset("pendulum", cache_dir=tmp_path_factory.mktemp("d"), size=96).card
    with torch.device("meta"):  # counts without allocating 0.75 GB
        model = registry.model("causal_vae", card96, backbone="reference")
    assert sum(p.numel() for p in model.parameters()) == 186_087_108
