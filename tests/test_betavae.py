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
    with pytest.raises(ConfigError, match="model 'beta_vae': parameter 'beta' must be non-negative; got -1.0"):
        registry.model("beta_vae", card, beta=-1)
    with pytest.raises(ConfigError, match="unknown parameter 'betta'"):
        registry.model("beta_vae", card, betta=2)


def test_loss_is_reconstruction_plus_beta_times_kl(card):
    model = build_model("beta_vae", card, seed=0, beta=3.0)
    torch.manual_seed(0)
    losses = model.training_step({"images": images(), "factors": torch.zeros(4, 4)}, 0)
    assert losses["loss"].item() == pytest.approx(losses["reconstruction"].item() + 3.0 * losses["kl"].item(), rel=1e-6)
    assert losses["kl"].item() >= 0


def test_encode_is_one_flat_block_and_reconstruct_gives_images(card):
    model = build_model("beta_vae", card, seed=0)
    assert model.encode(images()).shape == (4, 1, 16)
    out = model.reconstruct(images())
    assert out.shape == (4, 3, 32, 32) and 0 <= out.min() and out.max() <= 1
