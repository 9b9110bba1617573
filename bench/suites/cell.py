"""A cell: one (dataset, model, hyperparameters, seed, budget) training run and its evaluation.

The content hash covers what determines the trained weights: the dataset (name, version, resolved
parameters), the model (name, version, resolved hyperparameters), the seed, the budget, the device,
the thread count, the training precision when it is not the default fp32 (so cells computed before
the key existed keep their hashes), the version of a dataset's generated pairs for a method that trains
on them, the version of a dataset's generated environments when it is in the environments mode, and the
crlbench version. Defaults are resolved before hashing, so spelling out a
default value does not change the hash; an option added later is left out at its legacy value (the one
that trains as before it existed, :func:`crlbench.core.params.legacy_field`), so earlier cells keep theirs.
The device is hashed as the suite names it (``cpu``, ``cuda``, ``auto``), not as it resolved: which GPU a worker took (``cuda:1``) does not change the hash,
and the record's ``device`` says where the cell ran. The label, the metrics and the evaluation sizes are not part
of it: a new metric or a relabelled model reuses the trained cell.

The thread count is part of the cell because torch's reductions (and OpenMP and BLAS kernels) add up
in an order that depends on how many threads share the work: one cell on 1 and on 2 threads trains
slightly different weights. A cell always computes on its own ``threads``
(:func:`crlbench.suites.cell_resources.cell_threads`), whatever the worker count or the machine's cores.

The git commit is recorded in every result but not hashed, so that a commit that does not touch
a model (documentation, reports) keeps the cache; bump ``crlbench.__version__`` or a model's
``version`` when a change alters training.

What a cell is evaluated with (:class:`MetricSpec`, :class:`Evaluation`) and the validation holdout
its hash records (:data:`VALIDATION_FRACTION`) live here; the suite config
(:meth:`crlbench.suites.suite_config.SuiteConfig.cells`) builds cells, and a cell needs nothing of it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

import crlbench
from crlbench.core import registry
from crlbench.core.errors import ConfigError, unknown_name
from crlbench.core.params import LEGACY_VALUE, LOCATION, parse_params
from crlbench.training.budget import Budget
from crlbench.training.precision import DEFAULT_PRECISION

HASH_LENGTH = 16
VALIDATION_FRACTION = 0.1  # of the training split, held out when a dataset has no val split (hashed)
EVALUATION_SPLITS = ("test", "val")
REPRESENTATIONS = ("factor_codes", "raw")  # what latent metrics read (crlbench.suites.representation)


@dataclass(frozen=True)
class MetricSpec:
    """A metric variant and the options it is computed with."""

    name: str
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Evaluation:
    """Where latents are taken: ``n_train`` training images (probes, alignment), ``n_test`` images of ``split``."""

    split: str = "test"
    n_train: int = 2000
    n_test: int = 1000
    interventions: int = 4  # source images in each cell's intervention grid
    representation: str = "factor_codes"  # one code per factor for every model; raw: every code

    def __post_init__(self) -> None:
        if self.split not in EVALUATION_SPLITS:
            raise unknown_name("evaluation split", self.split, EVALUATION_SPLITS, where="evaluation: ")
        if self.representation not in REPRESENTATIONS:
            raise unknown_name("representation", self.representation, REPRESENTATIONS, where="evaluation: ")
        for key in ("n_train", "n_test"):
            if getattr(self, key) < 2:
                raise ConfigError(f"evaluation: {key!r} must be an integer >= 2; got {getattr(self, key)!r}")
        if self.interventions < 1:
            raise ConfigError(f"evaluation: 'interventions' must be a positive integer; got {self.interventions!r}")


@dataclass(frozen=True)
class Cell:
    suite: str
    dataset: str
    dataset_params: dict[str, Any]
    model: str
    label: str
    hyperparameters: dict[str, Any]
    seed: int
    budget: Budget
    metrics: tuple[MetricSpec, ...]
    evaluation: Evaluation
    device: str = "cpu"
    checkpoint_every: int = 1
    plugins: tuple[str, ...] = ()
    threads: int = 1  # torch, OpenMP, BLAS and joblib threads the cell computes with (hashed: it changes the numbers)
    reference_budget: dict[str, Any] | None = None  # the method's reference run, for the report (not hashed)
    precision: str = DEFAULT_PRECISION  # training autocast: fp32, bf16, fp16 (hashed unless fp32)
    hash: str = field(default="", compare=False)

    def hashed(self) -> "Cell":
        """This cell with its content hash filled in."""
        return dataclasses.replace(self, hash=content_hash(self))

    @property
    def title(self) -> str:
        return f"{self.dataset}/{self.label}/seed{self.seed}"

    def identity(self) -> dict[str, Any]:
        """What the hash covers, with every default resolved."""
        dataset_class = registry.registry("dataset").get(self.dataset)
        model_class = registry.model_declaration(self.model)  # Config and version, without torch
        identity = {
            "crlbench": crlbench.__version__,
            "dataset": {"name": self.dataset, "version": str(dataset_class.version),
                        "params": _resolved(dataset_class.Params, self.dataset_params, self.dataset)},
            "model": {"name": self.model, "version": str(getattr(model_class, "version", "1")),
                      "hyperparameters": _resolved(model_class.Config, self.hyperparameters, self.model)},
            "seed": self.seed,
            "budget": dataclasses.asdict(self.budget),
            "device": self.device,
            "threads": self.threads,
        }
        if self.evaluation.split not in dataset_class.split_names:  # trained without the held-out part
            identity["validation_holdout"] = VALIDATION_FRACTION
        if getattr(model_class, "needs_pairs", False) and getattr(dataset_class, "pair_source", None) == "generated":
            identity["pairs"] = str(dataset_class.pairs_version)  # how the dataset draws the pairs it trains on
        if identity["dataset"]["params"].get("environments") and getattr(dataset_class, "environment_source", None) == "generated":
            identity["environments"] = str(dataset_class.environments_version)  # how the dataset draws its environments
        if self.precision != DEFAULT_PRECISION:  # absent for fp32: the hashes of earlier cells stay
            identity["precision"] = self.precision
        return identity

    def to_dict(self) -> dict[str, Any]:
        """The cell as the result record stores it."""
        return {
            "hash": self.hash, "suite": self.suite, "dataset": self.dataset, "dataset_params": self.dataset_params,
            "model": self.model, "label": self.label, "hyperparameters": self.hyperparameters, "seed": self.seed,
            "budget": dataclasses.asdict(self.budget),
            "metrics": [{"name": m.name, "options": m.options} for m in self.metrics],
            "evaluation": dataclasses.asdict(self.evaluation), "device": self.device,
            "checkpoint_every": self.checkpoint_every, "plugins": list(self.plugins),
            "threads": self.threads, "precision": self.precision, "reference_budget": self.reference_budget,
            "identity": self.identity(),
        }


def at_batch_size(budget: Budget, batch_size: int | None) -> Budget:
    """``budget`` for a method that trains with ``batch_size``: epochs stay, steps are rescaled (rounded up)
    so that the method sees as many training images as ``budget`` gives every other method."""
    if batch_size is None or batch_size == budget.batch_size:
        return budget
    steps = None if budget.steps is None else -(-budget.steps * budget.batch_size // batch_size)
    return Budget(epochs=budget.epochs, steps=steps, batch_size=batch_size)


def content_hash(cell: Cell) -> str:
    text = json.dumps(cell.identity(), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:HASH_LENGTH]


def _resolved(params_type: type, values: dict[str, Any], owner: str) -> dict[str, Any]:
    """The parameters with every default filled in, less the options at their legacy value
    (:func:`crlbench.core.params.legacy_field`: cells recorded before such an option existed keep their hashes)
    and the locations of data (:func:`crlbench.core.params.location_field`)."""
    resolved = dataclasses.asdict(parse_params(params_type, values, owner=owner))
    for item in dataclasses.fields(params_type):
        legacy = LEGACY_VALUE in item.metadata and resolved[item.name] == item.metadata[LEGACY_VALUE]
        if legacy or item.metadata.get(LOCATION):
            del resolved[item.name]
    return resolved
