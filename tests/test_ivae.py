"""iVAE: the reference's prior, ELBO decomposition and scheduler, determinism, do() as a traversal of matched codes."""

import math

import pytest
import torch

from crlbench.baselines.ivae import elbo_terms, gaussian_log_density
from crlbench.core import registry
from crlbench.core.errors import ConfigError
from crlbench.training.train import Budget, build_model, train


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return registry.dataset("causal_circuit", cache_dir=tmp_path_factory.mktemp("d"), size=32, n_train=64, n_val=2,
                            n_test=2)


@pytest.fixture(scope="module")
def card(dataset):
    return dataset.card


def images(count=4, size=32):
    return torch.rand(count, 3, size, size, generator=torch.Generator().manual_seed(0))


def batch(card, count=4):
    generator = torch.Generator().manual_seed(1)
    return {"images": images(count), "factors": torch.randn(count, len(card.factors), generator=generator)}


def normal_log_density(x, mean, variance):  # by hand, in plain floats
    return -0.5 * (math.log(2 * math.pi) + math.log(variance) + (x - mean) ** 2 / variance)


def test_defaults_and_bad_hyperparameters(card):
    model = registry.model("ivae", card)
    config = model.config
    assert (config.a, config.b, config.c, config.d) == (100.0, 1.0, 0.0, 10.0) and config.lr == 0.01
    assert config.lr_scheduler == "plateau" and config.plateau_factor == 0.1 and config.plateau_patience == 0
    assert config.prior_mean == "zero" and config.encoder_input == "images" and config.decoder == "gaussian"
    assert config.decoder_variance == 0.1 and config.hidden_dim == 100 and config.n_layers == 3
    assert model.latent_size() == len(card.factors) and not model.aligned and model.supervision() == ["labels"]
    with pytest.raises(ConfigError, match="model 'ivae': parameter 'd' must be non-negative; got -1.0"):
        registry.model("ivae", card, d=-1)
    with pytest.raises(ConfigError, match="model 'ivae': parameter 'plateau_factor' must be in \\(0, 1\\); got 1.5"):
        registry.model("ivae", card, plateau_factor=1.5)
    with pytest.raises(ConfigError, match="parameter 'decoder' must be one of"):
        registry.model("ivae", card, decoder="poisson")
    with pytest.raises(ConfigError, match="unknown parameter 'beta'"):
        registry.model("ivae", card, beta=2)


def test_the_gaussian_log_density_is_the_reference_log_normal():
    value = gaussian_log_density(torch.tensor(1.0), torch.tensor(0.0), torch.tensor(4.0))
    assert value.item() == pytest.approx(-0.5 * (math.log(2 * math.pi) + math.log(4.0) + 0.25))


def test_the_elbo_terms_match_the_reference_equations_on_a_hand_checked_case():
    # M = 3 rows, d = 2 dims; every term recomputed below with plain floats, as cleanIVAE.elbo writes it
    z = [[0.0, 1.0], [1.0, -0.5], [0.5, 0.5]]
    mean = [[0.0, 2.0], [1.5, 0.0], [0.0, 1.0]]
    variance = [[1.0, 4.0], [0.5, 2.0], [1.0, 1.0]]
    prior_variance = [[2.0, 0.5], [1.0, 3.0], [0.25, 1.0]]
    log_px = [-3.0, -5.0, -1.0]
    rows, dims, n = 3, 2, 10
    normaliser = math.log(rows * n)
    expected = {"reconstruction": 3.0, "index_code_mi": 0.0, "total_correlation": 0.0, "dimension_kl": 0.0}
    for i in range(rows):
        per = [[normal_log_density(z[i][j], mean[m][j], variance[m][j]) for j in range(dims)] for m in range(rows)]
        log_q_given = sum(per[i])
        log_prior = sum(normal_log_density(z[i][j], 0.0, prior_variance[i][j]) for j in range(dims))
        log_q = math.log(sum(math.exp(sum(per[m])) for m in range(rows))) - normaliser
        log_q_product = sum(math.log(sum(math.exp(per[m][j]) for m in range(rows))) - normaliser for j in range(dims))
        expected["index_code_mi"] += (log_q_given - log_q) / rows
        expected["total_correlation"] += (log_q - log_q_product) / rows
        expected["dimension_kl"] += (log_q_product - log_prior) / rows
    t = lambda values: torch.tensor(values, dtype=torch.float64)  # noqa: E731
    terms = elbo_terms(t(log_px), t(z), t(mean), t(variance), t([[0.0, 0.0]] * 3), t(prior_variance), n)
    for name, value in expected.items():
        assert terms[name].item() == pytest.approx(value, rel=1e-12, abs=1e-12), name
    # the three KL terms telescope: with a = b = c = d = 1 the loss is the plain negative ELBO
    kl = sum(sum(normal_log_density(z[i][j], mean[i][j], variance[i][j]) - normal_log_density(z[i][j], 0.0,
             prior_variance[i][j]) for j in range(dims)) for i in range(rows)) / rows
    total = terms["index_code_mi"] + terms["total_correlation"] + terms["dimension_kl"]
    assert total.item() == pytest.approx(kl, rel=1e-12)


def test_the_prior_is_zero_mean_with_a_variance_from_the_labels(card):
    model = build_model("ivae", card, seed=0)
    labels = batch(card)["factors"]
    mean, variance = model.prior_parameters(labels)
    assert torch.all(mean == 0) and torch.allclose(variance, model.prior(labels).exp())
    assert not torch.allclose(variance[0], variance[1])  # lambda depends on u
    learned = build_model("ivae", card, seed=0, prior_mean="learned")
    assert not torch.all(learned.prior_parameters(labels)[0] == 0)


def test_the_loss_weights_the_terms_by_a_b_c_d(card):
    model = build_model("ivae", card, seed=0, c=2.0)
    torch.manual_seed(0)
    losses = model.training_step(batch(card), 0)
    weighted = (100 * losses["reconstruction"] + losses["index_code_mi"] + 2 * losses["total_correlation"]
                + 10 * losses["dimension_kl"])
    assert losses["loss"].item() == pytest.approx(weighted.item(), rel=1e-6)


def test_the_plateau_scheduler_follows_torch_reduce_lr_on_plateau(card):
    model = build_model("ivae", card, seed=0)
    optimizer = model.optimizers()["adam"]
    reference_optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=model.config.lr)
    reference = torch.optim.lr_scheduler.ReduceLROnPlateau(reference_optimizer, factor=0.1, patience=0)
    for epoch, loss in enumerate([5.0, 4.0, 4.0, 3.0, 3.5, -1.0, -0.99995, -2.0, 7.0, 7.0, 7.0, 7.0], start=1):
        model.epoch_loss_sum.fill_(2 * loss)
        model.epoch_batches.fill_(2)
        model.on_epoch_start(epoch)
        reference.step(loss)
        assert optimizer.param_groups[0]["lr"] == pytest.approx(reference_optimizer.param_groups[0]["lr"], rel=1e-12)
    assert model.schedule()["lr_reductions"] > 2


def test_annealing_switches_weights_after_the_reference_fraction_of_the_epochs(card):
    model = build_model("ivae", card, seed=0, anneal=True)
    model.on_train_start(total_steps=200, steps_per_epoch=10)  # 20 epochs: the switch after epoch 20 / 1.6
    assert model.epoch_weights(11) == {"a": 100.0, "b": 1.0, "c": 0.0, "d": 10.0}  # reference epoch 12
    assert model.epoch_weights(12) == {"a": 200.0, "b": 1.0, "c": 1.0, "d": 1.0}  # reference epoch 13 > 12.5


def test_the_same_seed_gives_the_same_weights(dataset):
    split = dataset.split("train")
    states = []
    for _ in range(2):
        model = build_model("ivae", dataset.card, seed=3)
        train(model, split.images, split.factors, budget=Budget(epochs=2, batch_size=32), seed=3, progress=False)
        states.append(model.state_dict())
    assert all(torch.equal(states[0][key], states[1][key]) for key in states[0])


def test_a_resumed_run_continues_the_schedule_exactly(dataset, tmp_path):
    split = dataset.split("train")
    straight = build_model("ivae", dataset.card, seed=0)
    train(straight, split.images, split.factors, budget=Budget(epochs=3, batch_size=32), seed=0, progress=False)
    resumed = build_model("ivae", dataset.card, seed=0)
    train(resumed, split.images, split.factors, budget=Budget(epochs=2, batch_size=32), seed=0, progress=False,
          checkpoint_dir=tmp_path)
    resumed = build_model("ivae", dataset.card, seed=0)
    train(resumed, split.images, split.factors, budget=Budget(epochs=3, batch_size=32), seed=0, progress=False,
          checkpoint_dir=tmp_path)
    assert all(torch.equal(value, resumed.state_dict()[key]) for key, value in straight.state_dict().items())


def test_encode_without_labels_feeds_u_zero_or_uses_an_image_only_encoder(card):
    model = build_model("ivae", card, seed=0, encoder_input="images_and_labels")
    x = images()
    assert model.encode(x).shape == (4, 1, len(card.factors))
    assert torch.equal(model.encode(x)[:, 0], model.posterior(x, torch.zeros(4, len(card.factors)))[0])
    image_only = build_model("ivae", card, seed=0, latent_dim=16)
    labels = batch(card)["factors"]
    assert torch.equal(image_only.posterior(x, labels)[0], image_only.posterior(x)[0])
    assert image_only.encode(x).shape == (4, 1, 16)


def test_by_default_the_encoder_reads_the_image_only_and_the_prior_reads_u(card):
    """q(z|x) by default: the labels u change the prior term, never the code (the reference's q(z|x,u) read z off u)."""
    model = build_model("ivae", card, seed=0)
    other = dict(batch(card), factors=-batch(card)["factors"])
    torch.manual_seed(0)
    first = model.training_step(batch(card), 0)
    torch.manual_seed(0)
    second = model.training_step(other, 0)
    assert torch.equal(first["reconstruction"], second["reconstruction"])
    assert not torch.equal(first["dimension_kl"], second["dimension_kl"])


@pytest.mark.parametrize("options", [{"backbone": "reference"}, {"decoder": "bernoulli"},
                                     {"encoder_input": "images_and_labels"}])
def test_the_options_train_and_give_images(card, options):
    model = build_model("ivae", card, seed=0, **options)
    model.training_step(batch(card), 0)["loss"].backward()
    assert all(p.grad is not None for p in model.parameters())
    out = model.reconstruct(images())
    assert out.shape == (4, 3, 32, 32) and 0 <= out.min() and out.max() <= 1


def test_a_reloaded_model_keeps_its_alignment(card, tmp_path):
    model = build_model("ivae", card, seed=0)
    model.set_alignment([2, 0, 3, 1])
    torch.save(model.state_dict(), tmp_path / "model.pt")
    reloaded = build_model("ivae", card, seed=5)
    reloaded.load_state_dict(torch.load(tmp_path / "model.pt"))
    assert [reloaded.matched_code(k) for k in range(4)] == [2, 0, 3, 1]
    assert torch.equal(reloaded.intervene(images(), 1, 0.3), model.intervene(images(), 1, 0.3))
