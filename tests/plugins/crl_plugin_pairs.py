"""A method that trains on weakly supervised pairs, a dataset without pairs and a metric that does not
apply to every model, added from outside crlbench: the tests of not-applicable cells and scores
(tests/test_pairs.py)."""

import numpy as np
import torch

from crl_plugin_models import LinearAutoencoder
from crlbench.core.errors import NotApplicable
from crlbench.core.registry import register_dataset, register_model
from crlbench.datasets.pendulum import Pendulum
from crlbench.metrics.base import MetricResult, variant

SEEN_AFTER = []  # the images_after batches the paired model trained on (their shapes and means)


@register_model("paired_ae")
class PairedAutoencoder(LinearAutoencoder):
    """The linear autoencoder, also reconstructing the second image of each pair."""

    name = "paired_ae"
    needs_pairs = True

    def supervision(self):
        return ["pairs"]

    def training_step(self, batch, step):
        after = batch["images_after"]
        SEEN_AFTER.append((tuple(after.shape), float(after.mean())))
        losses = super().training_step(batch, step)
        rebuilt = torch.sigmoid(self.decoder(self.encoder(after.flatten(1)))).view_as(after)
        losses["after"] = ((rebuilt - after) ** 2).mean()
        losses["loss"] = losses["loss"] + losses["after"]
        return losses


@register_dataset("pendulum_unpaired")
class UnpairedPendulum(Pendulum):
    """Pendulum without weakly supervised pairs."""

    name = "pendulum_unpaired"
    pair_source = None


@variant("needs_pairs@test", needs_model=True)
def needs_pairs(model, dataset, train, test, *, seed):
    """Applies only to a method that trains on pairs."""
    if not model.needs_pairs:
        raise NotApplicable(f"model {model.name!r} does not train on pairs")
    return MetricResult({"one": 1.0})
