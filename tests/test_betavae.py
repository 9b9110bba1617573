"""beta-VAE: the objective, its shapes, and interventions as traversals of matched codes."""

import pytest
import torch

from crlbench.core import registry
from crlbench.core.errors import ConfigError
from crlbench.training.train import build_model


@pytest.fixture(scope="module")
def card(tmp_path_factory):
    return registry.dataset("causal_circuit", cache_dir=tmp_path_factory.mktemp("d"), size=32, n_train=8, n_val=2, n_test=2).card


def images(count=4, size=32):
    return torch.rand(count, 3, size, size, generator=torch.Generator().manual_seed(0))


def test_defaults_and_bad_hyperparameters(card):
    model = registry.model("beta_vae", card)
    assert model.config.beta == 4.0 and model.config.latent_dim == 16 and not model.aligned
    with pytest.raises(ConfigError, match="parameter 'pixel_scale' must be one of"):
        registry.model("beta_vae", card, pixel_scale="mean")
    with pytest.raises(ConfigError, match="model 'beta_vae': parameter 'beta' must be non-negative; got -1.0"):
        registry.model("beta_vae", card, beta=-1)
    with pytest.raises(ConfigError, match="unknown parameter 'betta'"):
        registry.model("beta_vae", card, betta=2)


def test_loss_is_reconstruction_plus_beta_times_kl(card):
    model = build_model("beta_vae", card, seed=0, beta=3.0, pixel_scale="sum")
    torch.manual_seed(0)
    losses = model.training_step({"images": images(), "factors": torch.zeros(4, 4)}, 0)
    assert losses["loss"].item() == pytest.approx(losses["reconstruction"].item() + 3.0 * losses["kl"].item(), rel=1e-6)
    assert losses["kl"].item() >= 0


def test_the_reference_pixel_scale_weighs_the_reconstruction_as_at_64x64(card):
    """At 32x32 the summed BCE is multiplied by (64 x 64) / (32 x 32) = 4: beta weighs the KL as in dlib's runs."""
    model = build_model("beta_vae", card, seed=0, beta=3.0)
    assert model.config.pixel_scale == "reference" and model.reconstruction_scale == 4.0
    torch.manual_seed(0)
    losses = model.training_step({"images": images(), "factors": torch.zeros(4, 4)}, 0)
    assert losses["loss"].item() == pytest.approx(4.0 * losses["reconstruction"].item() + 3.0 * losses["kl"].item(),
                                                  rel=1e-6)


def test_the_pixel_scales_train_identically_at_64x64(tmp_path):
    """At dlib's own size the rule changes nothing: the same loss, bit for bit."""
    card64 = registry.dataset("causal_circuit", cache_dir=tmp_path, size=64, n_train=8, n_val=2, n_test=2).card
    batch = {"images": images(size=64), "factors": torch.zeros(4, 4)}
    losses = {}
    for rule in ("reference", "sum"):
        model = build_model("beta_vae", card64, seed=0, pixel_scale=rule)
        torch.manual_seed(0)
        losses[rule] = model.training_step(batch, 0)["loss"]
    assert model.reconstruction_scale == 1.0 and torch.equal(losses["reference"], losses["sum"])


def test_the_plain_sum_keeps_the_hash_of_cells_recorded_before_the_option():
    """pixel_scale: sum reproduces version 1's training, so it stays out of the hash (the standard suite pins it
    to keep its committed cells); the default, which trains differently at 32x32, is hashed."""
    from crlbench.suites.suite_config import suite_from_dict

    def beta_vae_hash(hyperparameters):
        suite = suite_from_dict({"name": "h", "seeds": [0], "budget": {"steps": 1, "batch_size": 8},
                                 "datasets": [{"name": "pendulum", "params": {"size": 32}}],
                                 "models": [{"name": "beta_vae", "hyperparameters": hyperparameters}],
                                 "metrics": ["dci@reg"]}, where="test")
        cell = suite.cells()[0]
        return cell.hash, cell.identity()["model"]["hyperparameters"]

    legacy_hash, legacy = beta_vae_hash({"pixel_scale": "sum"})
    default_hash, default = beta_vae_hash({})
    assert "pixel_scale" not in legacy and default["pixel_scale"] == "reference"
    assert legacy_hash != default_hash
    assert legacy == {"beta": 4.0, "latent_dim": 16, "lr": 1e-4, "adam_beta1": 0.9, "adam_beta2": 0.999,
                      "adam_eps": 1e-8}  # version 1's hyperparameters, as its cells were hashed


def test_encode_is_one_flat_block_and_reconstruct_gives_images(card):
    model = build_model("beta_vae", card, seed=0)
    assert model.encode(images()).shape == (4, 1, 16)
    out = model.reconstruct(images())
    assert out.shape == (4, 3, 32, 32) and 0 <= out.min() and out.max() <= 1
