"""Suite and model configs: YAML loaded into typed, validated objects, expanded into cells.

A suite file (``configs/suites/*.yaml``)::

    name: quick                       # the MLflow experiment is crlbench/<name>
    plugins: [my_package.my_model]    # modules to import first (methods added from outside)
    seeds: [0, 1, 2]
    budget: {steps: 250, batch_size: 64}    # or epochs (whichever comes first)
    device: cpu
    checkpoint_every: 1               # epochs
    threads: 1                        # threads each cell computes with (part of the cell's hash)
    precision: fp32                   # training autocast: fp32 (default), bf16 (cpu, cuda), fp16 (cuda)
    datasets:
      - name: pendulum                # a registered dataset, or `config: ../datasets/flow.yaml`
        params: {size: 64}
    models:
      - config: ../models/icm_vae.yaml   # or `name: icm_vae`; paths are relative to this file
        label: icm_vae                # how reports name it (default: the model name)
        hyperparameters: {}           # overrides for every dataset
        per_dataset: {causal_circuit: {beta: 0.05}}
    metrics: [dci@reg, {name: mic@aligned, options: {c: 15}}]
    evaluation: {split: test, n_train: 2000, n_test: 1000, interventions: 4}

A model file (``configs/models/*.yaml``) holds ``name``, ``hyperparameters`` and ``per_dataset``:
the reference code's per-dataset settings, and ``training``: the method's reference ``batch_size`` and
``reference_budget``. A model class may declare the latter two itself (class attributes
``reference_batch_size`` and ``reference_budget``, :func:`declared_training`): a model file and the suite's
entry override them. Everything is checked before any work starts; errors
name the file, the key path and the accepted values.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from crlbench.core import registry
from crlbench.core.config import check_keys, read_yaml
from crlbench.core.errors import ConfigError, unknown_name
from crlbench.core.params import parse_params
from crlbench.suites.cell import Cell, Evaluation, MetricSpec, at_batch_size
from crlbench.training.budget import Budget
from crlbench.training.precision import DEFAULT_PRECISION, precision_problem

SUITE_KEYS = ("name", "description", "plugins", "seeds", "budget", "device", "checkpoint_every", "threads",
              "precision", "datasets", "models", "metrics", "evaluation")
DEVICES = ("cpu", "cuda", "mps", "auto")  # auto: cuda when available, else cpu
TRAINING_KEYS = ("batch_size", "reference_budget", "per_dataset")


@dataclass(frozen=True)
class DatasetEntry:
    name: str
    params: dict[str, Any]  # as given; the dataset's own defaults fill the rest


@dataclass(frozen=True)
class ModelEntry:
    name: str
    label: str
    hyperparameters: dict[str, Any]
    per_dataset: dict[str, dict[str, Any]]
    training: dict[str, Any] = field(default_factory=dict)  # batch_size, reference_budget, per_dataset

    def hyperparameters_for(self, dataset: str) -> dict[str, Any]:
        return {**self.hyperparameters, **self.per_dataset.get(dataset, {})}

    def training_for(self, dataset: str) -> dict[str, Any]:
        """The method's reference ``batch_size`` and ``reference_budget`` on ``dataset`` (either may be absent)."""
        common = {key: value for key, value in self.training.items() if key != "per_dataset"}
        return {**common, **(self.training.get("per_dataset") or {}).get(dataset, {})}


@dataclass(frozen=True)
class SuiteConfig:
    name: str
    seeds: tuple[int, ...]
    budget: Budget
    datasets: tuple[DatasetEntry, ...]
    models: tuple[ModelEntry, ...]
    metrics: tuple[MetricSpec, ...]
    evaluation: Evaluation = Evaluation()
    device: str = "cpu"
    checkpoint_every: int = 1
    threads: int = 1  # per cell: torch, OpenMP, BLAS and joblib threads (crlbench.suites.cell_resources.cell_threads)
    precision: str = DEFAULT_PRECISION  # training autocast (crlbench.training.precision)
    plugins: tuple[str, ...] = ()
    description: str = ""
    source: str | None = None

    def cells(self) -> list[Cell]:
        """Every (dataset, model, seed) cell, datasets outermost, seeds innermost."""
        return [self.cell(dataset, model, seed)
                for dataset in self.datasets for model in self.models for seed in self.seeds]

    def cell(self, dataset: DatasetEntry, model: ModelEntry, seed: int) -> Cell:
        """The cell that trains ``model`` on ``dataset`` with ``seed`` under this suite's settings, hashed."""
        training = model.training_for(dataset.name)
        return Cell(
            suite=self.name, dataset=dataset.name, dataset_params=dict(dataset.params), model=model.name,
            label=model.label, hyperparameters=model.hyperparameters_for(dataset.name), seed=seed,
            budget=at_batch_size(self.budget, training.get("batch_size")), metrics=self.metrics,
            evaluation=self.evaluation, device=self.device, checkpoint_every=self.checkpoint_every,
            plugins=self.plugins, threads=self.threads, reference_budget=training.get("reference_budget"),
            precision=self.precision,
        ).hashed()

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["budget"] = dataclasses.asdict(self.budget)
        return data


def load_suite(path: str | Path) -> SuiteConfig:
    """Read and validate a suite file; plugins are imported so their names can be checked."""
    path = Path(path)
    data = read_yaml(path)
    return suite_from_dict(data, where=str(path), base=path.parent)


def suite_from_dict(data: dict[str, Any], where: str, base: Path = Path(".")) -> SuiteConfig:
    """A validated suite from parsed YAML; ``where`` names the source in errors."""
    check_keys(data, SUITE_KEYS, where, required=("name", "seeds", "budget", "datasets", "models", "metrics"))
    name = check_name(data["name"], f"{where}: key 'name'")
    plugins = tuple(_string_list(data.get("plugins") or [], where, "plugins", "module names"))
    registry.load_plugins(plugins, source=f"{where}: key 'plugins'")
    seeds = _typed(data["seeds"], list, where, "seeds", "a list of non-negative integers")
    if not seeds or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds):
        raise ConfigError(f"{where}: key 'seeds' must be a non-empty list of non-negative integers; got {seeds!r}")
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"{where}: key 'seeds' lists a seed twice: {seeds!r}")
    device = data.get("device", "cpu")
    if not isinstance(device, str) or device.split(":")[0] not in DEVICES:
        raise unknown_name("device", device, DEVICES, where=f"{where}: key 'device': ")
    checkpoint_every = data.get("checkpoint_every", 1)
    if not isinstance(checkpoint_every, int) or checkpoint_every < 1:
        raise ConfigError(f"{where}: key 'checkpoint_every' must be a positive integer (epochs); got {checkpoint_every!r}")
    threads = data.get("threads", 1)
    if not isinstance(threads, int) or isinstance(threads, bool) or threads < 1:
        raise ConfigError(f"{where}: key 'threads' must be a positive integer (threads per cell); got {threads!r}")
    datasets = tuple(_dataset_entry(item, f"{where}: key 'datasets[{i}]'", base)
                     for i, item in enumerate(_typed(data["datasets"], list, where, "datasets", "a list")))
    models = tuple(_model_entry(item, f"{where}: key 'models[{i}]'", base, datasets)
                   for i, item in enumerate(_typed(data["models"], list, where, "models", "a list")))
    _unique([d.name for d in datasets], where, "datasets", "dataset",
            "a suite lists each dataset once: put its other parameters in another suite")
    _unique([m.label for m in models], where, "models", "label", "give one a different 'label'")
    if not datasets or not models:
        raise ConfigError(f"{where}: keys 'datasets' and 'models' must each list at least one entry")
    metrics = tuple(_metric_spec(item, where, f"metrics[{i}]")
                    for i, item in enumerate(_typed(data["metrics"], list, where, "metrics", "a list")))
    _unique([m.name for m in metrics], where, "metrics", "metric", "list each metric once")
    precision = _precision(data.get("precision", DEFAULT_PRECISION), device, models, where)
    return SuiteConfig(
        name=name,
        seeds=tuple(seeds),
        budget=_parse(Budget, data["budget"], f"{where}: key 'budget'"),
        datasets=datasets,
        models=models,
        metrics=metrics,
        evaluation=_parse(Evaluation, data.get("evaluation") or {}, f"{where}: key 'evaluation'"),
        device=device,
        checkpoint_every=checkpoint_every,
        threads=threads,
        precision=precision,
        plugins=plugins,
        description=str(data.get("description", "")),
        source=where,
    )


def _precision(precision: Any, device: str, models: tuple[ModelEntry, ...], where: str) -> str:
    """The suite's training precision, accepted on its device (``auto``: as on CUDA, checked again when the
    cell runs) and, for fp16, by every model (a model stepping its own optimisers is refused; the model
    classes are imported to tell, torch with them)."""
    problem = precision_problem(precision, device)
    if problem is None and precision == "fp16":
        for model in models:
            problem = precision_problem(precision, device, registry.registry("model").get(model.name))
            if problem is not None:
                break
    if problem is not None:
        raise ConfigError(f"{where}: key 'precision': {problem}")
    return precision


def load_model_file(path: Path, where: str) -> dict[str, Any]:
    """A model file's ``name``, ``hyperparameters`` and ``per_dataset``."""
    data = read_yaml(path)
    check_keys(data, ("name", "description", "hyperparameters", "per_dataset", "training"), str(path), required=("name",))
    return data


def _dataset_entry(item: Any, where: str, base: Path) -> DatasetEntry:
    if isinstance(item, str):
        item = {"name": item}
    _typed(item, dict, where, "", "a dataset name or a mapping with 'name' or 'config' and 'params'")
    check_keys(item, ("name", "config", "params"), where)
    params: dict[str, Any] = {}
    if "config" in item:
        file = base / str(item["config"])
        data = read_yaml(file)
        check_keys(data, ("name", "params", "plugins"), str(file), required=("name",))
        registry.load_plugins(data.get("plugins") or [], source=f"{file}: key 'plugins'")
        params.update(data.get("params") or {})
        name = item.get("name", data["name"])
    elif "name" in item:
        name = item["name"]
    else:
        raise ConfigError(f"{where}: give 'name' (a registered dataset) or 'config' (a dataset YAML file)")
    params.update(_typed(item.get("params") or {}, dict, where, "params", "a mapping of dataset parameters"))
    known = registry.registry("dataset").names()
    if name not in known:
        raise unknown_name("dataset", name, known, where=f"{where}: key 'name': ")
    dataset_class = registry.registry("dataset").get(name)
    _parse(dataset_class.Params, params, f"{where}: key 'params'")
    return DatasetEntry(name, params)


def _model_entry(item: Any, where: str, base: Path, datasets: tuple[DatasetEntry, ...]) -> ModelEntry:
    if isinstance(item, str):
        item = {"name": item}
    _typed(item, dict, where, "", "a model name or a mapping with 'name' or 'config'")
    check_keys(item, ("name", "config", "label", "hyperparameters", "per_dataset", "training"), where)
    hyperparameters: dict[str, Any] = {}
    per_dataset: dict[str, dict[str, Any]] = {}
    training: dict[str, Any] = {}
    name = item.get("name")
    if "config" in item:
        file = base / str(item["config"])
        data = load_model_file(file, where)
        name = name or data["name"]
        hyperparameters.update(_typed(data.get("hyperparameters") or {}, dict, str(file), "hyperparameters", "a mapping"))
        for dataset, values in _typed(data.get("per_dataset") or {}, dict, str(file), "per_dataset", "a mapping").items():
            per_dataset[dataset] = dict(_typed(values or {}, dict, str(file), f"per_dataset.{dataset}", "a mapping"))
        training = _training(data.get("training") or {}, str(file), "training")
    if name is None:
        raise ConfigError(f"{where}: give 'name' (a registered model) or 'config' (a model YAML file)")
    known = registry.registry("model").names()
    if name not in known:
        raise unknown_name("model", name, known, where=f"{where}: key 'name': ")
    model_class = registry.model_declaration(name)  # its Config, without torch
    training = {**declared_training(model_class, name), **training}  # a model file's values win over the class's
    hyperparameters.update(_typed(item.get("hyperparameters") or {}, dict, where, "hyperparameters", "a mapping"))
    for dataset, values in _typed(item.get("per_dataset") or {}, dict, where, "per_dataset", "a mapping").items():
        per_dataset.setdefault(dataset, {}).update(_typed(values or {}, dict, where, f"per_dataset.{dataset}", "a mapping"))
    overrides = _training(item.get("training") or {}, where, "training")
    training = {**training, **overrides,
                "per_dataset": {**(training.get("per_dataset") or {}), **(overrides.get("per_dataset") or {})}}
    label = _typed(item.get("label", name), str, where, "label", "a string")
    entry = ModelEntry(name, label, hyperparameters, per_dataset, training)
    for dataset in datasets:  # the hyperparameters every cell will use, checked now
        _parse(model_class.Config, entry.hyperparameters_for(dataset.name),
               f"{where}: key 'hyperparameters' (dataset {dataset.name!r})")
    return entry


REFERENCE_ATTRIBUTES = {"batch_size": "reference_batch_size", "reference_budget": "reference_budget"}


def declared_training(model_class: Any, name: str) -> dict[str, Any]:
    """The reference batch size and reference run that model ``name``'s class declares (class attributes
    ``reference_batch_size``, an integer, and ``reference_budget``, ``{epochs: N}`` or ``{steps: N, batch_size:
    B}``; None or absent: not declared), as a model file's ``training`` mapping. A model file's ``training``
    and the suite entry's own override them; a plugin declares its reference settings this way."""
    declared: dict[str, Any] = {}
    for key, attribute in REFERENCE_ATTRIBUTES.items():
        value = getattr(model_class, attribute, None)
        if value is None:
            continue
        where = f"model {name!r}: class attribute {attribute!r}"
        if key == "batch_size" and (not isinstance(value, int) or isinstance(value, bool) or value <= 0):
            raise ConfigError(f"{where} must be a positive integer (the batch size of the method's reference run); "
                              f"got {value!r}")
        if key == "reference_budget":
            _parse(Budget, value, where)
            value = dict(value)
        declared[key] = value
    return declared


def _training(data: Any, where: str, key: str, nested: bool = False) -> dict[str, Any]:
    """A model's ``training`` mapping: its reference ``batch_size`` (a positive integer), ``reference_budget``
    (``{epochs: N}`` or ``{steps: N, batch_size: B}``) and the same per dataset under ``per_dataset``."""
    _typed(data, dict, where, key, "a mapping with batch_size, reference_budget, per_dataset")
    check_keys(data, TRAINING_KEYS[:2] if nested else TRAINING_KEYS, f"{where}: key {key!r}")
    if "batch_size" in data:
        size = data["batch_size"]
        if not isinstance(size, int) or isinstance(size, bool) or size <= 0:
            raise ConfigError(f"{where}: key '{key}.batch_size' must be a positive integer; got {size!r}")
    if "reference_budget" in data:
        _parse(Budget, data["reference_budget"], f"{where}: key '{key}.reference_budget'")
    per_dataset = _typed(data.get("per_dataset") or {}, dict, where, f"{key}.per_dataset", "a mapping")
    for dataset, values in per_dataset.items():
        per_dataset[dataset] = _training(values or {}, where, f"{key}.per_dataset.{dataset}", nested=True)
    return {**data, "per_dataset": per_dataset} if per_dataset else dict(data)


def _metric_spec(item: Any, source: str, path: str, note: str = "") -> MetricSpec:
    """The metric entry at key ``path`` of ``source``: a known variant whose options it accepts, each of
    its declared type (``suite.yaml: key 'metrics[0].options.c' must be an integer ...; got 'five'``)."""
    where = f"{source}: key {path!r}{note}"
    if isinstance(item, str):
        item = {"name": item}
    _typed(item, dict, where, "", "a metric name or a mapping with 'name' and 'options'")
    check_keys(item, ("name", "options"), where, required=("name",))
    name, options = item["name"], _typed(item.get("options") or {}, dict, where, "options", "a mapping")
    name = registry.registry("metric").resolve(name)  # a renamed metric warns and is stored under its new name
    known = registry.registry("metric").names()
    if name not in known:
        raise unknown_name("metric", name, known, where=f"{where}: key 'name': ")
    spec = registry.metric(name)
    accepted = dict(getattr(spec, "defaults", {}))
    if getattr(spec, "discrete_factors", False):
        accepted.setdefault("factor_bins", None)
    for key in options:
        if key not in accepted:
            raise unknown_name("option", key, accepted, where=f"{where}: key 'options': ")
    if hasattr(spec, "check_options"):  # a MetricVariant: every option of its declared type
        spec.check_options(options, f"{source}: key '{path}.options")
    return MetricSpec(name, dict(options))


def _parse(params_type: type, values: Any, where: str) -> Any:
    _typed(values, dict, where, "", "a mapping")
    try:
        return parse_params(params_type, values, owner=where)
    except TypeError as error:  # a missing or misnamed constructor argument
        raise ConfigError(f"{where}: {error}") from None
    except ConfigError as error:  # raised by the dataclass's own checks, which do not know the file
        if str(error).startswith(where):
            raise
        raise ConfigError(f"{where}: {error}") from None


NAME_PATTERN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}")
NAME_RULE = ("1 to 100 characters among letters, digits, '-', '_' and '.', not starting with '.' or '-' "
             "(so no path separators, no '.' or '..')")


def check_name(value: Any, where: str) -> str:
    """A suite or study name, which names folders under the work directory and MLflow experiments:
    :data:`NAME_RULE`, so that no path built from it leaves its folder. ``where`` names the key or flag."""
    if not isinstance(value, str) or NAME_PATTERN.fullmatch(value) is None:
        raise ConfigError(f"{where} must be a name of {NAME_RULE}; got {value!r}")
    return value


def _typed(value: Any, kind: type, where: str, key: str, expected: str) -> Any:
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        place = f"key {key!r} " if key else ""
        raise ConfigError(f"{where}: {place}must be {expected}; got {value!r}")
    return value


def _string_list(value: Any, where: str, key: str, what: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{where}: key {key!r} must be a list of {what}; got {value!r}")
    return value


def _unique(names: list[str], where: str, key: str, what: str, remedy: str) -> None:
    seen = set()
    for name in names:
        if name in seen:
            raise ConfigError(f"{where}: key {key!r} lists {what} {name!r} twice ({remedy})")
        seen.add(name)
