"""The model contract every registered method follows: :class:`CausalModel`.

A model is a ``torch.nn.Module`` built from a dataset card and typed hyperparameters (a frozen
dataclass ``Config`` whose defaults are the reference values). The trainer feeds it batches of
``{"images": float [B, C, H, W] in [0, 1], "factors": float [B, K] standardised}``.

What a subclass provides (everything else has a working default here):

* class attributes ``name`` (its registered name), ``Config``, ``version`` (default ``"1"``, part of
  the cell hash: bump it when a change alters training, or finished cells are reused) and
  ``aligned`` (default ``True``);
* ``__init__(card, **hyperparameters)`` calling ``super().__init__(card, **hyperparameters)``;
* ``optimizers()`` names its optimisers. With one optimiser the trainer back-propagates the
  ``"loss"`` entry of ``training_step(batch, step)``; a model with several (DEAR) sets
  ``manual_optimization`` and steps them itself inside ``training_step``;
* ``encode(x)`` gives the representation ``[N, K, k]`` in concept blocks, block k going with factor k;
  an unaligned model (beta-VAE) sets ``aligned = False`` and returns one block ``[N, 1, d]``;
* ``reconstruct(x)`` and ``intervene(x, target, value)`` return images in [0, 1]; ``value`` is what
  :func:`crlbench.metrics.interventional.concept_value` reads from the model's own encoder for
  concept ``target`` (its block, a ``[N, k]`` tensor, or ``[N]`` when k = 1; for an unaligned model
  the matched code, ``[N]``).

Defaults a subclass may override:

* ``set_alignment(codes)``: the runner calls it on an unaligned model before any metric, with the
  code matched to each factor (Hungarian matching of ``mcc@pearson`` on the training sample). The
  default stores them in ``factor_codes`` (a LongTensor buffer created on the first call and not saved
  in checkpoints, or the subclass's own buffer where it registers one, as beta-VAE does) and ``matched_code(k)`` reads them back: an unaligned ``intervene`` sets code
  ``self.matched_code(target)``;
* ``on_train_start(total_steps, steps_per_epoch)`` and ``on_epoch_start(epoch)`` let a model follow a
  schedule (ICM-VAE's warm-up), which ``schedule()`` reports for the result record;
  ``on_train_end(data)`` is called once when the budget is reached, with a seeded batch of at most
  :data:`crlbench.training.train.END_OF_TRAINING_ROWS` training rows, for what a method infers from data
  after training (ILCM's graph; store it in buffers so that checkpoints keep it);
* ``supervision()`` and ``latent_size()`` tell the leaderboard what the method is given and learns;
  ``assumptions`` (class attribute, default ``{}``) names what the method assumes of the data, as
  ``{key: description}``; a dataset lists the keys its data satisfy (``SCMDataset.satisfies``), and the
  record of a cell on data that break one says which (``assumptions_broken``), for the report's mark;
* ``posterior_kl_per_code(images)`` gives, for a model whose code is sampled in training from a Gaussian
  posterior q(z|x) penalised against a standard normal prior (beta-VAE), the mean over ``images`` of
  KL(q(z_i|x) || N(0, 1)) per code i, in nats (a ``[codes]`` tensor), for the posterior-collapse check
  (:mod:`crlbench.suites.checks`); None (the default) where that KL does not describe the model;
* ``learned_graph()`` gives the graph a method learns (CausalVAE's and DEAR's A, ILCM's inferred
  graph) for the graph-recovery metric: None (the default) for a method that learns none;
* ``reference_for`` (class attribute, default ``()``: a method) makes the model a *reference row*
  (docs/protocol.md, "Reference rows"): the names of the metrics it stands for, ``"reconstruction"``
  for ``reconstruction.mse`` and ``"latent"`` for every registered metric that reads the representation
  (crlbench.core.references); the runner computes only those for it and lists the others as not
  applicable. ``architecture()`` says what a reference row runs (None, the default, for a method);
* ``needs_pairs = True`` (class attribute, default False) asks for weakly supervised pairs: every
  training batch then also holds ``"images_after"`` [B, C, H, W], the same scene after an intervention
  on one unnamed factor or none (:meth:`crlbench.datasets.base.SCMDataset.pairs`); the target is never
  given. On a dataset without pairs the cell is recorded as not applicable before any training;
* ``needs_environments = True`` (class attribute, default False) asks for interventional environments:
  every training batch then also holds ``"environment"`` (LongTensor [B]: 0 for an observational row,
  e = 1..E for a row of the e-th interventional environment, whose target is not given), from a dataset in
  the environments mode (:meth:`crlbench.datasets.base.SCMDataset.split`); elsewhere the cell is recorded
  as not applicable before any training. Rows of all environments are pooled in the batches.

The result record holds the SHA-256 of the file that defines the model's class
(:func:`source_fingerprint`); a suite warns when a finished cell's model source changed since.
"""

from __future__ import annotations

import hashlib
import inspect
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from crlbench.core.errors import ConfigError
from crlbench.core.params import parse_params
from crlbench.core.references import RECONSTRUCTION, expanded, stands_for_name  # noqa: F401 (RECONSTRUCTION: re-exported)


def adam(parameters, **options: Any) -> torch.optim.Optimizer:
    """Adam, fused where the installed torch offers it on this device (same algorithm, one kernel:
    on the 186 M-parameter reference backbone the CPU step drops from 1.6 s to 0.3 s)."""
    parameters = list(parameters)
    try:
        return torch.optim.Adam(parameters, fused=True, **options)
    except (RuntimeError, TypeError, ValueError):  # older torch, or no fused kernel for this device
        return torch.optim.Adam(parameters, **options)


class CausalModel(nn.Module):
    """Base class of the registered models (the contract: this module's docstring)."""

    name: ClassVar[str]
    Config: ClassVar[type]
    version: ClassVar[str] = "1"  # in the cell hash: bump it when a change alters training
    aligned: ClassVar[bool] = True
    manual_optimization: ClassVar[bool] = False
    needs_pairs: ClassVar[bool] = False  # trains on (image, image after an intervention) pairs
    needs_environments: ClassVar[bool] = False  # trains on rows labelled with their environment
    reference_for: ClassVar[tuple[str, ...]] = ()  # a reference row's metrics (+ "reconstruction"); () for a method
    assumptions: ClassVar[dict[str, str]] = {}  # what the method assumes of the data: {key: description}
    # a plugin's reference run, where no model file gives one (crlbench.suites.suite_config.declared_training):
    # its batch size, and {"epochs": N} or {"steps": N, "batch_size": B}; built-in models keep theirs in configs/models
    reference_batch_size: ClassVar[int | None] = None
    reference_budget: ClassVar[dict[str, int] | None] = None

    def __init__(self, card: Any, **hyperparameters: Any) -> None:
        super().__init__()
        self.card = card
        self.config = parse_params(self.Config, hyperparameters, owner=f"model {self.name!r}")
        height, width, channels = card.image_shape
        self.image_size, self.channels = height, channels

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        raise NotImplementedError

    def on_train_start(self, total_steps: int, steps_per_epoch: int) -> None:
        """Called by the trainer before the first step (and again on resume) with the run's length, for
        schedules that scale with the budget."""
        self.total_steps, self.steps_per_epoch = total_steps, steps_per_epoch

    def on_epoch_start(self, epoch: int) -> None:
        """Called by the trainer before each epoch (0-based), e.g. for weight annealing."""

    def on_train_end(self, data: dict[str, torch.Tensor]) -> None:
        """Called by the trainer once the budget is reached, before the last checkpoint is saved, with a batch of
        training data as it batches them (at most ``END_OF_TRAINING_ROWS`` seeded rows): post-hoc inference."""

    def supervision(self) -> list[str] | None:
        """What the method is given besides the images, for the leaderboard: any of "labels", "true graph",
        "initial graph", "pairs", "environments"; [] for nothing; None when the method does not say."""
        return None

    def latent_size(self) -> int | None:
        """The number of latent dimensions the method learns (None: the size of ``encode``'s output)."""
        return None

    def architecture(self) -> str | None:
        """What a reference row runs (its network, what it trains, on what), for the record and the docs;
        None for a method."""
        return None

    def posterior_kl_per_code(self, images: torch.Tensor) -> torch.Tensor | None:
        """Mean over ``images`` of KL(q(z_i | x) || N(0, 1)) for each code i, in nats ([codes]), for a model
        whose code is sampled from a Gaussian posterior that its loss holds against a standard normal prior;
        None (the default) for any other model (a deterministic code, or a prior that is not N(0, I))."""
        return None

    def learned_graph(self) -> dict | None:
        """The causal graph the method learned over its own causal variables, or None if it learns none.

        ``{"adjacency": [V, V] 0/1 array, A[i, j] = 1 meaning i -> j; "scores": [V, V] float array or
        None}``: the edges the method asserts, and edge scores (higher: more confident) where it has
        them. Variable i is concept block i for an aligned model, code i of ``encode``'s block for an
        unaligned one (mapped to factors through ``factor_codes``). A method that infers its graph from
        data after training does so in ``on_train_end`` and keeps it in buffers (ILCM). Read by the
        ``graph@card`` metric.
        """
        return None

    def schedule(self) -> dict | None:
        """The schedule the run followed (warm-ups, annealing) for the result record, or None if the
        model has none. A dict with ``"finished": bool``: whether every schedule completed within the budget."""
        return None

    def training_step(self, batch: dict[str, torch.Tensor], step: int) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def reconstruct(self, images: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def intervene(self, images: torch.Tensor, target: int, value: float | torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def set_alignment(self, codes: Sequence[int]) -> None:
        """Which code of ``encode``'s single block goes with each factor (unaligned models; the runner
        calls it before any metric). Stored as the LongTensor buffer ``factor_codes``."""
        codes = [int(code) for code in codes]
        factors = len(self.card.factors)
        width = self.latent_size()
        if len(codes) != factors or any(code < 0 or (width is not None and code >= width) for code in codes):
            limit = f"0..{width - 1}" if width is not None else "a non-negative code index"
            raise ConfigError(f"model {self.name!r}: set_alignment needs one code in {limit} per factor ({factors}); "
                              f"got {codes}")
        value = torch.as_tensor(codes, dtype=torch.long)
        current = getattr(self, "factor_codes", None)
        if "factor_codes" in self._buffers and isinstance(current, torch.Tensor):
            if current.shape == value.shape:
                current.copy_(value)
            else:
                self._buffers["factor_codes"] = value.to(current.device)
            return
        if current is not None:  # a plain attribute a subclass set: replaced by the buffer
            delattr(self, "factor_codes")
        self.register_buffer("factor_codes", value, persistent=False)

    def matched_code(self, k: int) -> int:
        """The code of ``encode``'s single block matched to factor ``k`` (unaligned models)."""
        return matched_code(self, k)


def stands_for(model: Any, name: str) -> bool:
    """Whether ``model`` is scored on ``name`` (a metric name or :data:`RECONSTRUCTION`): a method on every
    score, a reference row only on those its ``reference_for`` names (crlbench.core.references)."""
    return stands_for_name(tuple(getattr(model, "reference_for", ()) or ()), name)


def stood_for(model: Any) -> tuple[str, ...]:
    """The names a reference row stands for, :data:`crlbench.core.references.LATENT` expanded from the metric
    registry; () for a method."""
    return expanded(tuple(getattr(model, "reference_for", ()) or ()))


def model_device(model: Any) -> torch.device:
    """Where ``model``'s weights are; the CPU for a model without any (or a stand-in without ``parameters``)."""
    parameter = next(model.parameters(), None) if hasattr(model, "parameters") else None
    return parameter.device if parameter is not None else torch.device("cpu")


def matched_code(model: Any, k: int) -> int:
    """The code an unaligned ``model`` matched to factor ``k`` (its ``factor_codes``), with a clear error
    when the alignment was never set."""
    codes = getattr(model, "factor_codes", None)
    name = getattr(model, "name", type(model).__name__)
    if codes is None:
        raise ConfigError(f"model {name!r} is unaligned but has no factor_codes: call set_alignment(codes) first "
                          "(crlbench.training.model.CausalModel gives it)")
    if not 0 <= k < len(codes):
        raise ConfigError(f"model {name!r}: factor index must be in 0..{len(codes) - 1}; got {k}")
    code = int(codes[k])
    if code < 0:
        raise ConfigError(f"model {name!r}: the unaligned model has no factor-to-code alignment yet; call set_alignment first")
    return code


def source_fingerprint(model_class: type) -> dict[str, str] | None:
    """``{"module", "file", "sha256"}`` of the file that defines ``model_class`` (None when it has no
    readable source file, e.g. a class defined interactively)."""
    module = getattr(model_class, "__module__", None)
    path = getattr(sys.modules.get(module), "__file__", None) if module else None
    if path is None:
        try:
            path = inspect.getsourcefile(model_class)
        except TypeError:
            path = None
    if not path:
        return None
    try:
        digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError:
        return None
    return {"module": str(module), "file": str(Path(path).resolve()), "sha256": digest}
