"""A cell: one (dataset, model, hyperparameters, seed, budget) training run and its evaluation.

The content hash covers what determines the trained weights: the dataset (name, version, resolved
parameters), the model (name, version, resolved hyperparameters), the seed, the budget, the device,
the thread count and the crlbench version. Defaults are resolved before hashing, so spelling out a
default value does not change the hash. The label, the metrics and the evaluation sizes are not part
of it: a new metric or a relabelled model reuses the trained cell.

The thread count is part of the cell because torch's reductions (and OpenMP and BLAS kernels) add up
in an order that depends on how many threads share the work: one cell on 1 and on 2 threads trains
slightly different weights. A cell always computes on its own ``threads``
(:func:`bench.executor.cell_threads`), whatever the worker count or the machine's cores.

The git commit is recorded in every result but not hashed, so that a commit that does not touch
a model (documentation, reports) keeps the cache; bump ``crlbench.__version__`` or a model's
``version`` when a change alters training.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import bench
from bench import registry
from bench.params import parse_params
from bench.train import Budget

if TYPE_CHECKING:
    from bench.suite_config import DatasetEntry, Evaluation, MetricSpec, ModelEntry, SuiteConfig

HASH_LENGTH = 16


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
    metrics: tuple["MetricSpec", ...]
    evaluation: "Evaluation"
    device: str = "cpu"
    checkpoint_every: int = 1
    plugins: tuple[str, ...] = ()
    threads: int = 1  # torch, OpenMP, BLAS and joblib threads the cell computes with (hashed: it changes the numbers)
    reference_budget: dict[str, Any] | None = None  # the method's reference run, for the report (not hashed)
    hash: str = field(default="", compare=False)

    @classmethod
    def build(cls, suite: "SuiteConfig", dataset: "DatasetEntry", model: "ModelEntry", seed: int) -> "Cell":
        training = model.training_for(dataset.name)
        cell = cls(
            suite=suite.name, dataset=dataset.name, dataset_params=dict(dataset.params), model=model.name,
            label=model.label, hyperparameters=model.hyperparameters_for(dataset.name), seed=seed,
            budget=at_batch_size(suite.budget, training.get("batch_size")), metrics=suite.metrics,
            evaluation=suite.evaluation, device=suite.device, checkpoint_every=suite.checkpoint_every,
            plugins=suite.plugins, threads=suite.threads, reference_budget=training.get("reference_budget"),
        )
        return dataclasses.replace(cell, hash=content_hash(cell))

    @property
    def title(self) -> str:
        return f"{self.dataset}/{self.label}/seed{self.seed}"

    def identity(self) -> dict[str, Any]:
        """What the hash covers, with every default resolved."""
        dataset_class = registry.registry("dataset").get(self.dataset)
        model_class = registry.registry("model").get(self.model)
        identity = {
            "crlbench": bench.__version__,
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
            from bench.runner import VALIDATION_FRACTION

            identity["validation_holdout"] = VALIDATION_FRACTION
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
            "threads": self.threads, "reference_budget": self.reference_budget, "identity": self.identity(),
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
    return dataclasses.asdict(parse_params(params_type, values, owner=owner))
