"""A method that trains on interventional environments, added from outside crlbench: the tests of the
environments mode (tests/test_environments.py)."""

import torch

from crl_plugin_models import LinearAutoencoder
from crlbench.core.registry import register_model

SEEN_ENVIRONMENTS = []  # the environment batches the model trained on


@register_model("environment_ae")
class EnvironmentAutoencoder(LinearAutoencoder):
    """The linear autoencoder, recording the environment of every row it trains on."""

    name = "environment_ae"
    needs_environments = True

    def supervision(self):
        return ["environments"]

    def training_step(self, batch, step):
        environment = batch["environment"]
        assert environment.dtype == torch.long and environment.shape == (len(batch["images"]),)
        SEEN_ENVIRONMENTS.append(environment.clone())
        return super().training_step(batch, step)
