"""ILCM: its configuration, the two training stages, do() in the learned model, q(I) and the inferred graph."""

import numpy as np
import pytest
import torch

from crlbench.core import registry
from crlbench.core.errors import ConfigError, NotApplicable
from crlbench.training.train import Budget, build_model, optimisation_step, train


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    dataset = registry.dataset("causal_circuit", cache_dir=tmp_path_factory.mktemp("d"), size=32, n_train=48, n_val=4,
                               n_test=4)
    split = dataset.split("train")
    return dataset.card, split.images, split.factors, split.extras["images_after"]


def tensor(images):
    return torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255


def pair_batch(data, count=16):
    card, images, factors, after = data
    return {"images": tensor(images[:count]), "images_after": tensor(after[:count]),
            "factors": torch.zeros(count, len(card.factors))}


def test_defaults_and_bad_hyperparameters(data):
    model = registry.model("ilcm", data[0])
    config = model.config
    assert (config.reduced_dim, config.epochs, config.reducer_epochs, config.lr, config.reducer_lr) == (8, 120, 50, 8e-4, 1e-3)
    assert config.reducer_share == pytest.approx(50 / 170) and config.beta == 3e-5 and config.pretrain_epochs == 20
    assert model.needs_pairs and not model.aligned and model.supervision() == ["pairs"]
    with pytest.raises(ConfigError, match="model 'ilcm': parameter 'reducer_share' must be in \\(0, 1\\); got 1.5"):
        registry.model("ilcm", data[0], reducer_share=1.5)
    with pytest.raises(ConfigError, match="model 'ilcm': parameter 'lr' must be positive; got -1.0"):
        registry.model("ilcm", data[0], lr=-1)
    with pytest.raises(ConfigError, match="reducer"):
        registry.model("ilcm", data[0], reducer="pca")
    with pytest.raises(ConfigError, match="unknown parameter 'epoch'"):
        registry.model("ilcm", data[0], epoch=3)


def test_training_without_pairs_is_not_applicable(data):
    card, images, factors, _ = data
    model = build_model("ilcm", card, seed=0)
    with pytest.raises(NotApplicable, match="images_after"):
        train(model, images, factors, budget=Budget(steps=2, batch_size=8), seed=0, progress=False)


def test_shapes(data):
    model = build_model("ilcm", data[0], seed=0)
    batch = pair_batch(data, 5)
    assert model.encode(batch["images"]).shape == (5, 1, 4)
    assert model.reduce(batch["images"]).shape == (5, 8)
    out = model.reconstruct(batch["images"])
    assert out.shape == (5, 3, 32, 32) and 0 <= out.min() and out.max() <= 1
    model.set_alignment([3, 2, 1, 0])
    assert model.intervene(batch["images"], 0, 0.3).shape == (5, 3, 32, 32)


def test_the_budget_is_split_between_the_reducer_and_the_ilcm(data):
    model = build_model("ilcm", data[0], seed=0)
    model.on_train_start(170, 10)
    assert model.reducer_steps() == 50  # 50 reducer epochs of 170 reference epochs
    schedule = model.schedule()
    assert schedule["stages"]["reducer"]["steps"] == 50 and schedule["stages"]["ilcm"]["steps"] == 120
    assert schedule["stages"]["ilcm"]["topological_order_step"] == 50 + 80 and schedule["finished"]
    assert "reducer_nll" in model.training_step(pair_batch(data, 4), 49)
    assert "nll" in model.training_step(pair_batch(data, 4), 50)


@pytest.mark.parametrize("step", [0, 60, 120])  # the reducer, the ILCM's pretraining, its weakly supervised ELBO
def test_overfitting_one_fixed_batch_of_pairs_lowers_the_loss(data, step):
    model = build_model("ilcm", data[0], seed=0)
    model.on_train_start(170, 10)
    batch, optimizers = pair_batch(data), model.optimizers()
    torch.manual_seed(0)
    losses = [optimisation_step(model, optimizers, batch, step)["loss"] for _ in range(40)]
    assert np.mean(losses[-5:]) < np.mean(losses[:5]) - 0.01 * abs(np.mean(losses[:5]))


def test_same_seed_same_weights(data):
    card, images, factors, after = data
    states = []
    for _ in range(2):
        model = build_model("ilcm", card, seed=3)
        train(model, images, factors, images_after=after, budget=Budget(epochs=3, batch_size=16), seed=3, progress=False)
        states.append(model.state_dict())
    assert all(torch.equal(states[0][key], states[1][key]) for key in states[0])


def test_saving_and_reloading_gives_identical_outputs(data, tmp_path):
    card, images, factors, after = data
    model = build_model("ilcm", card, seed=0)
    train(model, images, factors, images_after=after, budget=Budget(epochs=3, batch_size=16), seed=0, progress=False)
    model.set_alignment([3, 2, 1, 0])
    torch.save(model.state_dict(), tmp_path / "model.pt")
    reloaded = build_model("ilcm", card, seed=9)
    reloaded.load_state_dict(torch.load(tmp_path / "model.pt"))
    assert bool(reloaded.scm.fixed_order) and torch.equal(reloaded.scm.topological_order, model.scm.topological_order)
    x = pair_batch(data, 6)["images"]
    model.eval(), reloaded.eval()
    assert torch.equal(model.encode(x), reloaded.encode(x))
    assert torch.equal(model.reconstruct(x), reloaded.reconstruct(x))
    assert torch.equal(model.intervene(x, 1, 0.2), reloaded.intervene(x, 1, 0.2))


def fixed_order_model(data, order, graph):
    model = build_model("ilcm", data[0], seed=0)
    model.scm.topological_order.copy_(torch.tensor(order))
    model.scm.fixed_order.fill_(True)
    model.graph.copy_(torch.as_tensor(graph, dtype=torch.float))  # the graph do() follows
    return model


def test_do_keeps_non_descendants_and_recomputes_descendants(data):
    # order 2, 0, 1, 3; graph 2 -> 0 -> 1, 2 -> 3: do(z_0) changes z_1 only; z_2 (an ancestor) and z_3 stay
    graph = np.zeros((4, 4), dtype=int)
    graph[2, 0] = graph[0, 1] = graph[2, 3] = 1
    model = fixed_order_model(data, [2, 0, 1, 3], graph)
    with torch.no_grad():  # make every solution function depend clearly on the noise it reads
        for solution in model.scm.solutions:
            solution.net[-1].weight[1].normal_(0, 1)
    epsilon = torch.randn(8, 4, generator=torch.Generator().manual_seed(1))
    z = model.scm.noise_to_causal(epsilon)
    after_z, after_epsilon = model.do(epsilon, 0, 1.5)
    assert torch.all(after_z[:, 0] == 1.5)
    assert torch.equal(after_z[:, 2], z[:, 2]) and torch.equal(after_z[:, 3], z[:, 3])  # bit-identical
    assert not torch.allclose(after_z[:, 1], z[:, 1])  # the descendant is recomputed ...
    assert torch.equal(after_epsilon[:, 1], epsilon[:, 1])  # ... from its own (unchanged) noise
    # and the new noise encodes the new causal variables (what the decoder is given)
    assert torch.allclose(model.scm.noise_to_causal(after_epsilon), after_z, atol=1e-5)


def test_intervene_uses_the_matched_code(data):
    graph = np.zeros((4, 4), dtype=int)
    model = fixed_order_model(data, [0, 1, 2, 3], graph)
    x = pair_batch(data, 4)["images"]
    with pytest.raises(ConfigError, match="set_alignment"):
        model.intervene(x, 0, 0.0)
    model.set_alignment([2, 0, 1, 3])
    seen = []
    original = model.do
    model.do = lambda epsilon, code, value: seen.append(code) or original(epsilon, code, value)
    model.intervene(x, 0, 0.5)
    assert seen == [2]


def test_the_intervention_encoder_gives_a_distribution_over_none_and_each_variable(data):
    model = build_model("ilcm", data[0], seed=0)
    batch = pair_batch(data, 6)
    posterior = model.intervention_posterior(batch["images"], batch["images_after"])
    assert posterior.shape == (6, 5) and torch.all(posterior > 0)
    assert torch.allclose(posterior.sum(1), torch.ones(6))
    # a large change of e_k makes "intervention on k" the most likely
    mean = torch.zeros(3, 4)
    changed = mean.clone()
    changed[torch.arange(3), torch.tensor([0, 2, 3])] = 2.0
    assert model.intervention_encoder(mean, changed).argmax(1).tolist() == [1, 3, 4]
    assert model.intervention_encoder(mean, mean).argmax(1).tolist() == [0, 0, 0]


def test_the_graph_is_inferred_when_training_ends_and_do_and_the_metric_read_the_same_one(data):
    card, images, factors, after = data
    assert build_model("ilcm", card, seed=0).learned_graph() is None  # training never ended: nothing inferred

    model = build_model("ilcm", card, seed=0)
    train(model, images, factors, images_after=after, budget=Budget(epochs=3, batch_size=16), seed=0, progress=False)
    graph = model.learned_graph()
    assert graph["adjacency"].shape == (4, 4) and set(np.unique(graph["adjacency"])) <= {0, 1}
    assert np.all(np.diag(graph["adjacency"]) == 0)
    assert np.array_equal(graph["adjacency"], model.intervention_graph())  # the graph do() follows
    assert np.array_equal(graph["adjacency"], (graph["scores"] > model.config.graph_threshold).astype(int))
    expected = model._infer_graph(torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255)  # all 48 rows
    assert np.allclose(expected["scores"], graph["scores"])  # from the trainer's rows: here every training row


def test_the_reducer_learns_at_1e3_by_default_and_the_reference_1e4_is_an_option(data):
    """Stage 1's first step runs at reducer_lr (the cosine's start): 1e-3, a deviation for budgets of a few hundred
    reducer steps; the reference's 1e-4 (set for about 156k steps) one option away."""
    for options, lr in (({}, 1e-3), ({"reducer_lr": 1e-4}, 1e-4)):
        model = build_model("ilcm", data[0], seed=0, **options)
        model.training_step(pair_batch(data), 0)
        assert model.optimizers()["reducer"].param_groups[0]["lr"] == lr


def test_the_reference_decoder_std_and_graph_mechanism_are_the_defaults(data):
    config = build_model("ilcm", data[0], seed=0).config
    assert config.decoder_std == pytest.approx(0.5413, abs=1e-4)  # inverse_softplus(1.0), used as the std itself
    assert config.graph_mechanism == "reference"
    model = build_model("ilcm", data[0], seed=0)
    features = torch.randn(64, 4, generator=torch.Generator().manual_seed(0))
    from crlbench.baselines.ilcm_scm import implicit_causal_effects

    order = [0, 1, 2, 3]
    forward = implicit_causal_effects(model.scm, features, order, torch.Generator().manual_seed(0))
    solved = implicit_causal_effects(model.scm, features, order, torch.Generator().manual_seed(0), forward_mechanism=False)
    assert forward.shape == solved.shape == (4, 4) and not torch.allclose(forward, solved)


def test_a_run_stopped_and_resumed_ends_with_the_weights_of_an_unbroken_run(data, tmp_path):
    card, images, factors, after = data

    class Stopped(Exception):
        pass

    def stop_after_two(epoch, record):
        if epoch == 2:
            raise Stopped

    def fit(**options):
        model = build_model("ilcm", card, seed=0)
        train(model, images, factors, images_after=after, budget=Budget(epochs=5, batch_size=16), seed=0,
              progress=False, **options)
        return model.state_dict()

    unbroken = fit()
    with pytest.raises(Stopped):  # stopped in stage 2, before the Adam reset and the topological order
        fit(checkpoint_dir=tmp_path, callbacks=[stop_after_two])
    resumed = fit(checkpoint_dir=tmp_path)
    assert all(torch.equal(unbroken[key], resumed[key]) for key in unbroken)
