"""The codes and images a cell's evaluation reads: the same for the test sample and the monitor's validation
sample (docs/protocol.md, "One representation per model").

A model's images are uint8 [N, H, W, C] turned into float [N, C, H, W] in [0, 1] (:func:`as_model_images`);
its codes are what its encoder gives, flattened (:func:`encode`); :func:`factor_alignment` says which codes go
with which factor and :func:`evaluation_representation` gives the codes every latent metric reads (a
:class:`Representation`); :func:`reconstruction_error` is the mean squared pixel error of its reconstructions.

Random streams of a cell's seed (spawn keys of ``numpy.random.SeedSequence``; 0-2 and 6 belong to the trainer,
:mod:`crlbench.training.train`): :data:`EVALUATION_STREAM` picks the evaluation sample, :data:`METRIC_STREAM`
seeds the metrics and the intervention grid, :data:`MONITOR_STREAM` of :data:`VALIDATION_SEED` picks the
monitor's validation sample.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import torch

from crlbench.metrics import compute
from crlbench.training.model import model_device

EVALUATION_STREAM, METRIC_STREAM, MONITOR_STREAM = 3, 4, 5
VALIDATION_SEED = 0  # the holdout is the same for every cell seed: trials are compared on one set
ENCODE_BATCH = 256


def as_model_images(images: np.ndarray) -> torch.Tensor:
    """uint8 [N, H, W, C] -> float [N, C, H, W] in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float().div_(255.0)


@torch.no_grad()
def encode(model, images: np.ndarray) -> np.ndarray:
    """The model's representation of ``images``, flattened to [N, codes]. The images go where the model is
    (a model evaluated during training, by a per-epoch hook, may be on a GPU); the codes come back to the
    CPU. A cell's own evaluation runs on the CPU whatever it trained on: ``_evaluate`` moves the model
    there after training, so its scores depend on its weights only."""
    device = model_device(model)
    parts = [model.encode(as_model_images(images[i:i + ENCODE_BATCH]).to(device)).flatten(1).cpu()
             for i in range(0, len(images), ENCODE_BATCH)]
    return torch.cat(parts).double().numpy()


def reconstruction_error(model, images: np.ndarray | torch.Tensor) -> float:
    """Mean squared reconstruction error of ``images`` (uint8 [N, H, W, C], or model images already on
    the model's device) in eval mode; the model's mode is restored."""
    x = images if isinstance(images, torch.Tensor) else as_model_images(images).to(model_device(model))
    training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            return float(((model.reconstruct(x) - x) ** 2).mean())
    finally:
        model.train(training)


def factor_alignment(aligned: bool, latents: dict[str, np.ndarray]) -> dict[str, Any]:
    """Which codes go with which factor: concept blocks for aligned models; for an unaligned model the
    Hungarian matching of ``mcc@pearson`` on ``latents``' training sample. Changes nothing in the model."""
    blocks, size = (int(v) for v in latents["blocks"])
    factors = latents["y_train"].shape[1]
    if aligned:
        return {"kind": "supervised", "block_size": size, "codes": list(range(factors * size))}
    matched = compute("mcc@pearson", latents["z_train"], latents["y_train"]).info["alignment"]["blocks"]
    return {"kind": "matched", "block_size": 1, "codes": [int(block[0]) for block in matched]}


@dataclasses.dataclass(frozen=True)
class Representation:
    """The codes every latent metric reads (the evaluation protocol, docs/protocol.md).

    ``factor_codes`` (the default): one code per factor, code k going with factor k: an aligned model's
    concept block k reduced to its mean code, an unaligned model's code matched to factor k. ``raw``: every
    code the model's encoder gives, the aligned codes first, blocks of ``block_size``.
    """

    kind: str
    rule: str
    z_train: np.ndarray
    z_test: np.ndarray
    block_size: int

    def description(self) -> dict[str, Any]:
        return {"kind": self.kind, "rule": self.rule, "codes": int(self.z_train.shape[1]), "block_size": self.block_size}


def evaluation_representation(latents: dict[str, np.ndarray], alignment: dict[str, Any], kind: str) -> Representation:
    """The ``kind`` representation of a cell's stored latents (:data:`crlbench.suites.cell.REPRESENTATIONS`)."""
    z_train, z_test = latents["z_train"], latents["z_test"]
    if kind == "raw":
        order = alignment["codes"] + [c for c in range(z_test.shape[1]) if c not in alignment["codes"]]
        return Representation("raw", "every code, aligned codes first", z_train[:, order], z_test[:, order],
                              alignment["block_size"])
    if alignment["kind"] == "supervised":
        blocks, size = (int(v) for v in latents["blocks"])
        reduce = lambda z: z.reshape(len(z), blocks, size).mean(axis=2)  # noqa: E731
        rule = "concept block mean" if size > 1 else "concept code"
        return Representation("factor_codes", rule, reduce(z_train), reduce(z_test), 1)
    codes = alignment["codes"]
    return Representation("factor_codes", "matched code (Hungarian on |Pearson r|, training sample)",
                          z_train[:, codes], z_test[:, codes], 1)
