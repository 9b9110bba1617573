"""Tuning configs: a YAML file loaded into a typed, validated :class:`TuneConfig` before any trial.

A tune file (``configs/tune/<model>-<dataset>.yaml``)::

    name: icm_vae-pendulum                 # the default study name
    plugins: []                            # modules to import first (methods added from outside)
    model: {config: ../models/icm_vae.yaml}    # a suite model entry; paths relative to this file
    dataset: {config: ../datasets/pendulum.yaml, params: {size: 64}}   # a suite dataset entry
    search_space:                          # hyperparameters of the model's Config
      lr: {type: float, low: 1.0e-4, high: 1.0e-2, log: true}
      warmup_epochs: {type: int, low: 2, high: 20, step: 2}
      decoder: {type: categorical, choices: [shared, per_concept]}
    objective:                             # a score key "<metric variant>.<score>", or weights
      metric: dci@reg.disentanglement      #   weights: {dci@reg.disentanglement: 1.0, mcc@pearson.mcc: 0.5}
      direction: maximize
      split: val                           # the only split a selection may look at
    seeds: [0, 1]                          # each trial's value is the mean over these seeds
    budget: {steps: 500, batch_size: 64}
    trials: {n_trials: 40, timeout_s: null, max_retry: 0}   # max_retry: reruns of a killed trial
    sampler: {type: tpe, seed: 0}          # tpe (n_startup_trials) or random; trial n samples with (seed, n)
    pruner: {type: median, n_startup_trials: 5}   # none, median, hyperband, wilcoxon, threshold
    evaluation: {n_train: 2000, n_test: 1000}      # as a suite's; the split is always val
    metrics: [{name: mic@aligned, options: {c: 15}}]   # optional: options of objective metrics

``reconstruction.mse`` (the runner's reconstruction error on the evaluation sample) is also a score
key an objective may name. Pruners: ``median``, ``hyperband`` and ``threshold`` judge the
validation reconstruction error after every epoch, reported negated when the objective is maximised
(so that higher is better for the pruner too); ``wilcoxon`` judges each seed's objective value
against the best trial's (it needs enough seeds to reach its ``p_threshold``: 4 for 0.1).

Errors name the file, the key path and the accepted values, as :mod:`crlbench.suites.suite_config`'s do.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import math
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from crlbench.core import registry
from crlbench.core.config import check_keys, read_yaml
from crlbench.core.errors import ConfigError, accepted, unknown_name
from crlbench.suites.cell import Evaluation, MetricSpec
from crlbench.suites.suite_config import (DatasetEntry, ModelEntry, SuiteConfig, _dataset_entry, _metric_spec,
                                          _model_entry, _parse, _string_list, _typed, check_name, suite_from_dict)
from crlbench.training.budget import Budget

TUNE_KEYS = ("name", "description", "plugins", "model", "dataset", "search_space", "objective", "seeds", "budget",
             "trials", "sampler", "pruner", "evaluation", "metrics", "device", "checkpoint_every")
PARAM_KEYS = {"float": ("type", "low", "high", "log", "step"), "int": ("type", "low", "high", "log", "step"),
              "categorical": ("type", "choices")}
DIRECTIONS = ("maximize", "minimize")
SELECTION_SPLIT = "val"
RECONSTRUCTION_SCORE = "reconstruction.mse"  # every cell has it, whatever its metrics
SAMPLER_OPTIONS = {"tpe": ("type", "seed", "n_startup_trials", "multivariate"), "random": ("type", "seed")}
# Options passed on to the Optuna pruner of each type (its keyword arguments).
PRUNER_OPTIONS = {
    "none": (),
    "median": ("n_startup_trials", "n_warmup_steps", "interval_steps", "n_min_trials"),
    "hyperband": ("min_resource", "max_resource", "reduction_factor", "bootstrap_count"),
    "wilcoxon": ("p_threshold", "n_startup_steps"),
    "threshold": ("lower", "upper", "n_warmup_steps", "interval_steps"),
}
EPOCH_PRUNERS = ("median", "hyperband", "threshold")  # judge the per-epoch validation reconstruction error


@dataclass(frozen=True)
class Param:
    """One searched hyperparameter, as Optuna's ``suggest_float``/``suggest_int``/``suggest_categorical`` take it."""

    name: str
    type: str
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    step: float | int | None = None
    choices: tuple[Any, ...] = ()

    def suggest(self, trial: Any) -> Any:
        if self.type == "categorical":
            return trial.suggest_categorical(self.name, list(self.choices))
        if self.type == "int":
            return trial.suggest_int(self.name, self.low, self.high, step=self.step or 1, log=self.log)
        return trial.suggest_float(self.name, self.low, self.high, step=self.step, log=self.log)

    def candidates(self) -> tuple[Any, ...]:
        """Values that bound what may be sampled: the range's ends, or every choice."""
        return self.choices if self.type == "categorical" else (self.low, self.high)


@dataclass(frozen=True)
class Objective:
    """A weighted sum of score keys per seed (one key: weight 1), averaged over the seeds."""

    weights: dict[str, float]
    direction: str
    split: str = SELECTION_SPLIT

    @property
    def variants(self) -> tuple[str, ...]:
        """The metric variants the objective reads (``reconstruction`` is the runner's own)."""
        names = (key.rsplit(".", 1)[0] for key in self.weights if key != RECONSTRUCTION_SCORE)
        return tuple(dict.fromkeys(names))

    def value(self, scores: dict[str, float], where: str) -> float:
        """The objective on one cell's scores; a key the metric does not produce is a config error."""
        missing = [key for key in self.weights if key not in scores]
        if missing:
            raise ConfigError(f"{where}: key 'objective': score {missing[0]!r} is not among the cell's scores; "
                              f"available: {accepted(sorted(scores))}")
        return float(sum(weight * float(scores[key]) for key, weight in self.weights.items()))

    def describe(self) -> str:
        if len(self.weights) == 1 and next(iter(self.weights.values())) == 1.0:
            return next(iter(self.weights))
        return " + ".join(f"{weight:g} * {key}" for key, weight in self.weights.items())


@dataclass(frozen=True)
class Trials:
    n_trials: int = 20
    timeout_s: float | None = None  # per invocation and worker, as Optuna's ``timeout``
    max_retry: int = 0  # reruns of a trial whose worker died (found by the heartbeat check)


@dataclass(frozen=True)
class SamplerSpec:
    type: str = "tpe"
    seed: int | None = 0
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class PrunerSpec:
    type: str = "none"
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def per_epoch(self) -> bool:
        return self.type in EPOCH_PRUNERS


@dataclass(frozen=True)
class TuneConfig:
    name: str
    model: ModelEntry
    dataset: DatasetEntry
    search_space: tuple[Param, ...]
    objective: Objective
    seeds: tuple[int, ...]
    budget: Budget
    trials: Trials = Trials()
    sampler: SamplerSpec = SamplerSpec()
    pruner: PrunerSpec = PrunerSpec()
    evaluation: Evaluation = Evaluation(split=SELECTION_SPLIT)
    metrics: tuple[MetricSpec, ...] = ()
    device: str = "cpu"
    checkpoint_every: int = 1
    plugins: tuple[str, ...] = ()
    description: str = ""
    source: str | None = None

    def hyperparameters(self, sampled: dict[str, Any]) -> dict[str, Any]:
        """The model entry's hyperparameters for the tuned dataset with ``sampled`` on top."""
        return {**self.model.hyperparameters_for(self.dataset.name), **sampled}

    def suite_data(self, sampled: dict[str, Any], suite_name: str) -> dict[str, Any]:
        """The suite (as parsed YAML) of one trial: the tuning seeds, the sampled hyperparameters."""
        specs = list(self.metrics) + [MetricSpec(name) for name in self.objective.variants
                                      if name not in {m.name for m in self.metrics}]
        return {
            "name": suite_name, "plugins": list(self.plugins), "seeds": list(self.seeds),
            "budget": dataclasses.asdict(self.budget), "device": self.device,
            "checkpoint_every": self.checkpoint_every,
            "datasets": [{"name": self.dataset.name, "params": dict(self.dataset.params)}],
            "models": [{"name": self.model.name, "label": self.model.label,
                        "hyperparameters": self.hyperparameters(sampled), "training": dict(self.model.training)}],
            "metrics": [{"name": m.name, "options": dict(m.options)} for m in specs],
            "evaluation": dataclasses.asdict(self.evaluation),
        }

    @property
    def objective_name(self) -> str:
        """The objective's name where Optuna shows one (``Study.set_metric_names``, plot axes), in place
        of "Objective 0" / "Objective Value": the score (or weighted sum), split and mean over seeds."""
        return f"{self.objective.describe()} ({self.objective.split} split, mean over seeds)"

    @property
    def intermediate_name(self) -> str | None:
        """What the trials report as intermediate values (None: nothing). Per-epoch pruners see the
        validation reconstruction error after each epoch, negated when the objective is maximised (so
        that higher is better, as for the study); the Wilcoxon pruner sees the objective of each seed."""
        if self.pruner.per_epoch:
            error = "mean squared validation reconstruction error"
            return f"-({error}) per epoch" if self.objective.direction == "maximize" else f"{error} per epoch"
        if self.pruner.type == "wilcoxon":
            return f"{self.objective.describe()} ({self.objective.split} split) per seed"
        return None

    @property
    def intermediate_key(self) -> str:
        """The MLflow metric of a trial's intermediate values (step: epoch across seeds, or seed index)."""
        if self.pruner.per_epoch:
            return ("intermediate/neg_val_reconstruction_mse" if self.objective.direction == "maximize"
                    else "intermediate/val_reconstruction_mse")
        if self.pruner.type == "wilcoxon":
            return "intermediate/objective_per_seed"
        return "intermediate"

    def suite(self, sampled: dict[str, Any], suite_name: str) -> SuiteConfig:
        """One trial's validated suite (raises :class:`ConfigError` if the sampled values do not fit)."""
        where = f"{self.source or self.name}: trial hyperparameters {sampled!r}"
        return suite_from_dict(self.suite_data(sampled, suite_name), where=where)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def load_tune(path: str | Path) -> TuneConfig:
    """Read and validate a tune file; plugins are imported so that names can be checked."""
    path = Path(path)
    return tune_from_dict(read_yaml(path), where=str(path), base=path.parent)


def tune_from_dict(data: dict[str, Any], where: str, base: Path = Path(".")) -> TuneConfig:
    """A validated tuning config from parsed YAML; ``where`` names the source in errors."""
    check_keys(data, TUNE_KEYS, where, required=("name", "model", "dataset", "search_space", "objective", "seeds",
                                                 "budget"))
    name = check_name(data["name"], f"{where}: key 'name'")
    plugins = tuple(_string_list(data.get("plugins") or [], where, "plugins", "module names"))
    registry.load_plugins(plugins, source=f"{where}: key 'plugins'")
    dataset = _dataset_entry(data["dataset"], f"{where}: key 'dataset'", base)
    model = _model_entry(data["model"], f"{where}: key 'model'", base, (dataset,))
    objective = _objective(data["objective"], where)
    metrics = tuple(_metric_spec(item, where, f"metrics[{i}]")
                    for i, item in enumerate(_typed(data.get("metrics") or [], list, where, "metrics", "a list")))
    for variant in objective.variants:
        _metric_spec(variant, where, "objective", f" (metric variant of {_key_of(objective, variant)!r})")
    config = TuneConfig(
        name=name,
        model=model,
        dataset=dataset,
        search_space=_search_space(data["search_space"], where, model, dataset),
        objective=objective,
        seeds=_seeds(data["seeds"], where),
        budget=_parse(Budget, data["budget"], f"{where}: key 'budget'"),
        trials=_trials(data.get("trials") or {}, where),
        sampler=_sampler(data.get("sampler") or {}, where),
        pruner=_pruner(data.get("pruner") or {}, where),
        evaluation=_evaluation(data.get("evaluation") or {}, where),
        metrics=metrics,
        device=data.get("device", "cpu"),
        checkpoint_every=data.get("checkpoint_every", 1),
        plugins=plugins,
        description=str(data.get("description", "")),
        source=where,
    )
    if config.pruner.type == "wilcoxon":
        _check_wilcoxon(config.pruner, len(config.seeds), f"{where}: key 'pruner'")
    suite_from_dict(config.suite_data({}, name), where=where)  # device and checkpoint_every, as a suite checks them
    return config


def _objective(item: Any, where: str) -> Objective:
    where_key = f"{where}: key 'objective'"
    _typed(item, dict, where, "objective", "a mapping with 'metric' or 'weights', 'direction' and 'split'")
    check_keys(item, ("metric", "weights", "direction", "split"), where_key, required=("direction",))
    if ("metric" in item) == ("weights" in item):
        raise ConfigError(f"{where_key}: give either 'metric' (one score key such as 'dci@reg.disentanglement') "
                          f"or 'weights' (a mapping of score keys to weights)")
    if "metric" in item:
        weights = {_typed(item["metric"], str, where_key, "metric", "a score key '<metric variant>.<score>'"): 1.0}
    else:
        given = _typed(item["weights"], dict, where_key, "weights", "a mapping of score keys to numbers")
        if not given:
            raise ConfigError(f"{where_key}: key 'weights' must name at least one score key")
        weights = {}
        for key, weight in given.items():
            if not isinstance(weight, (int, float)) or isinstance(weight, bool) or not math.isfinite(weight):
                raise ConfigError(f"{where_key}: key 'weights.{key}' must be a finite number; got {weight!r}")
            weights[str(key)] = float(weight)
    for key in weights:
        if "." not in key:
            raise ConfigError(f"{where_key}: score key {key!r} must read '<metric variant>.<score>', "
                              f"as in 'dci@reg.disentanglement' or {RECONSTRUCTION_SCORE!r}")
    direction = item["direction"]
    if direction not in DIRECTIONS:
        raise unknown_name("direction", direction, DIRECTIONS, where=f"{where_key}: key 'direction': ")
    split = item.get("split", SELECTION_SPLIT)
    _check_selection_split(split, f"{where_key}: key 'split'")
    return Objective(weights, direction, split)


def _check_selection_split(split: Any, where: str) -> None:
    if split == "test":
        raise ConfigError(f"{where}: hyperparameters must not be selected on the test split (the reported "
                          f"results would be optimistically biased); use {SELECTION_SPLIT!r}, a held-out part "
                          f"of the training data on datasets without a val split")
    if split != SELECTION_SPLIT:
        raise unknown_name("selection split", split, (SELECTION_SPLIT,), where=f"{where}: ")


def _key_of(objective: Objective, variant: str) -> str:
    return next(key for key in objective.weights if key.rsplit(".", 1)[0] == variant)


def _search_space(item: Any, where: str, model: ModelEntry, dataset: DatasetEntry) -> tuple[Param, ...]:
    space = _typed(item, dict, where, "search_space", "a mapping of hyperparameter names to ranges")
    if not space:
        raise ConfigError(f"{where}: key 'search_space' is empty; name at least one hyperparameter to search")
    config_type = registry.registry("model").get(model.name).Config
    fields = [f.name for f in dataclasses.fields(config_type)]
    base = model.hyperparameters_for(dataset.name)
    params = []
    for name, spec in space.items():
        key = f"{where}: key 'search_space.{name}'"
        if name not in fields:
            raise unknown_name(f"hyperparameter of model {model.name!r}", name, fields, where=f"{where}: key 'search_space': ")
        param = _param(str(name), spec, key)
        for value in param.candidates():  # each bound or choice must be a value the model accepts
            _parse(config_type, {**base, name: value}, key)
        params.append(param)
    return tuple(params)


def _param(name: str, spec: Any, where: str) -> Param:
    _typed(spec, dict, where, "", "a mapping with 'type' and 'low'/'high' or 'choices'")
    kind = spec.get("type")
    if kind not in PARAM_KEYS:
        raise unknown_name("parameter type", kind, PARAM_KEYS, where=f"{where}: key 'type': ")
    check_keys(spec, PARAM_KEYS[kind], where)
    if kind == "categorical":
        choices = spec.get("choices")
        if not isinstance(choices, list) or not choices:
            raise ConfigError(f"{where}: key 'choices' must be a non-empty list; got {choices!r}")
        for choice in choices:
            if choice is not None and not isinstance(choice, (bool, int, float, str)):
                raise ConfigError(f"{where}: key 'choices' may hold null, booleans, numbers and strings; got {choice!r}")
        if len({repr(c) for c in choices}) != len(choices):
            raise ConfigError(f"{where}: key 'choices' lists a value twice: {choices!r}")
        return Param(name, kind, choices=tuple(choices))
    number = int if kind == "int" else (int, float)
    what = "an integer" if kind == "int" else "a number"
    for key in ("low", "high"):
        if key not in spec:
            raise ConfigError(f"{where}: missing required key {key!r}")
        value = spec[key]
        if not isinstance(value, number) or isinstance(value, bool) or not math.isfinite(value):
            raise ConfigError(f"{where}: key {key!r} must be {what}; got {value!r}")
    low, high = spec["low"], spec["high"]
    if low > high:
        raise ConfigError(f"{where}: 'low' must not exceed 'high'; got low={low!r}, high={high!r}")
    log = spec.get("log", False)
    if not isinstance(log, bool):
        raise ConfigError(f"{where}: key 'log' must be true or false; got {log!r}")
    step = spec.get("step")
    if step is not None and (not isinstance(step, number) or isinstance(step, bool) or step <= 0):
        raise ConfigError(f"{where}: key 'step' must be a positive {'integer' if kind == 'int' else 'number'}; got {step!r}")
    if log and step not in (None, 1 if kind == "int" else None):
        raise ConfigError(f"{where}: 'log' and 'step' cannot be combined (Optuna samples a log range without steps)")
    if log and low <= 0:
        raise ConfigError(f"{where}: a log range needs 'low' > 0; got {low!r}")
    if kind == "float":
        low, high, step = float(low), float(high), None if step is None else float(step)
    return Param(name, kind, low=low, high=high, log=log, step=step)


def _seeds(value: Any, where: str) -> tuple[int, ...]:
    seeds = _typed(value, list, where, "seeds", "a non-empty list of non-negative integers")
    if not seeds or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds):
        raise ConfigError(f"{where}: key 'seeds' must be a non-empty list of non-negative integers; got {seeds!r}")
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"{where}: key 'seeds' lists a seed twice: {seeds!r}")
    return tuple(seeds)


def _trials(item: Any, where: str) -> Trials:
    where_key = f"{where}: key 'trials'"
    _typed(item, dict, where, "trials", "a mapping with 'n_trials', 'timeout_s' and 'max_retry'")
    check_keys(item, ("n_trials", "timeout_s", "max_retry"), where_key)
    n_trials = item.get("n_trials", Trials.n_trials)
    if not isinstance(n_trials, int) or isinstance(n_trials, bool) or n_trials < 1:
        raise ConfigError(f"{where_key}: key 'n_trials' must be a positive integer; got {n_trials!r}")
    timeout = item.get("timeout_s")
    if timeout is not None and (not isinstance(timeout, (int, float)) or isinstance(timeout, bool) or timeout <= 0):
        raise ConfigError(f"{where_key}: key 'timeout_s' must be a positive number of seconds or null; got {timeout!r}")
    max_retry = item.get("max_retry", 0)
    if not isinstance(max_retry, int) or isinstance(max_retry, bool) or max_retry < 0:
        raise ConfigError(f"{where_key}: key 'max_retry' must be a non-negative integer; got {max_retry!r}")
    return Trials(n_trials, None if timeout is None else float(timeout), max_retry)


def _sampler(item: Any, where: str) -> SamplerSpec:
    where_key = f"{where}: key 'sampler'"
    _typed(item, dict, where, "sampler", "a mapping with 'type' and 'seed'")
    kind = item.get("type", "tpe")
    if kind not in SAMPLER_OPTIONS:
        raise unknown_name("sampler", kind, SAMPLER_OPTIONS, where=f"{where_key}: key 'type': ")
    check_keys(item, SAMPLER_OPTIONS[kind], where_key)
    seed = item.get("seed", 0)
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool) or seed < 0):
        raise ConfigError(f"{where_key}: key 'seed' must be a non-negative integer or null; got {seed!r}")
    options = {key: value for key, value in item.items() if key not in ("type", "seed")}
    spec = SamplerSpec(kind, seed, options)
    _built(lambda: build_sampler(spec, seed), where_key)
    return spec


def _pruner(item: Any, where: str) -> PrunerSpec:
    where_key = f"{where}: key 'pruner'"
    _typed(item, dict, where, "pruner", "a mapping with 'type' and the pruner's options")
    kind = item.get("type", "none")
    if kind not in PRUNER_OPTIONS:
        raise unknown_name("pruner", kind, PRUNER_OPTIONS, where=f"{where_key}: key 'type': ")
    check_keys(item, ("type", *PRUNER_OPTIONS[kind]), where_key)
    spec = PrunerSpec(kind, {key: value for key, value in item.items() if key != "type"})
    _built(lambda: build_pruner(spec), where_key)
    return spec


def _check_wilcoxon(spec: PrunerSpec, seeds: int, where: str) -> None:
    """The Wilcoxon pruner compares a trial with the best one seed by seed; with n seeds its smallest
    one-sided p-value is 0.5 ** n, so too few seeds for ``p_threshold`` would never prune."""
    threshold = spec.options.get("p_threshold", 0.1)
    if 0.5 ** seeds > threshold:
        needed = next(n for n in range(1, 64) if 0.5 ** n <= threshold)
        raise ConfigError(f"{where}: the wilcoxon pruner compares trials seed by seed and cannot prune with "
                          f"{seeds} seed(s) at p_threshold {threshold} (the smallest p-value of n seeds is 0.5 ** n); "
                          f"give at least {needed} 'seeds' or another pruner")


def _evaluation(item: Any, where: str) -> Evaluation:
    _typed(item, dict, where, "evaluation", "a mapping")
    if "split" in item:
        _check_selection_split(item["split"], f"{where}: key 'evaluation.split'")
    return _parse(Evaluation, {**item, "split": SELECTION_SPLIT}, f"{where}: key 'evaluation'")


def build_sampler(spec: SamplerSpec, seed: int | None) -> Any:
    """The Optuna sampler of ``spec``, seeded with ``seed`` (each worker gets its own)."""
    import optuna

    if spec.type == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed, **spec.options)


def trial_seed(seed: int, number: int) -> int:
    """The sampler seed of trial ``number`` of a study sampled with ``seed``: a 32-bit value derived
    from both (numpy's ``SeedSequence``), so every trial of a study draws its own randomness."""
    import numpy as np

    return int(np.random.SeedSequence(seed, spawn_key=(number,)).generate_state(1)[0])


def build_trial_sampler(spec: SamplerSpec, seed: int | None) -> Any:
    """A sampler that draws trial ``n`` with a sampler of ``spec`` seeded by :func:`trial_seed` ``(seed, n)``.

    Trial numbers are unique in a study (its storage hands them out), so two launches on one study,
    local workers and workers on other machines never draw the same randomness; and trial ``n`` of a
    study draws the same randomness whichever worker or invocation runs it (the random sampler: the
    same values; TPE: the same values given the same earlier results). With ``seed`` null every
    trial's sampler is seeded from the operating system's entropy.
    """
    return _trial_seeded_class()(spec, seed)


@functools.lru_cache(maxsize=1)
def _trial_seeded_class() -> type:
    import optuna

    class TrialSeededSampler(optuna.samplers.BaseSampler):
        """Delegates each trial to a sampler of its own, seeded from (seed, trial number)."""

        def __init__(self, spec: SamplerSpec, seed: int | None) -> None:
            self.spec, self.seed = spec, seed
            self._samplers: dict[int, Any] = {}  # trial number -> its sampler, until the trial is told

        def sampler_of(self, trial: Any) -> Any:
            sampler = self._samplers.get(trial.number)
            if sampler is None:
                seed = None if self.seed is None else trial_seed(self.seed, trial.number)
                with experimental_features():  # warned once already, when the config was checked
                    sampler = self._samplers[trial.number] = build_sampler(self.spec, seed)
            return sampler

        def before_trial(self, study: Any, trial: Any) -> None:
            self.sampler_of(trial).before_trial(study, trial)

        def infer_relative_search_space(self, study: Any, trial: Any) -> Any:
            return self.sampler_of(trial).infer_relative_search_space(study, trial)

        def sample_relative(self, study: Any, trial: Any, search_space: Any) -> Any:
            return self.sampler_of(trial).sample_relative(study, trial, search_space)

        def sample_independent(self, study: Any, trial: Any, param_name: str, param_distribution: Any) -> Any:
            return self.sampler_of(trial).sample_independent(study, trial, param_name, param_distribution)

        def after_trial(self, study: Any, trial: Any, state: Any, values: Any) -> None:
            self.sampler_of(trial).after_trial(study, trial, state, values)
            self._samplers.pop(trial.number, None)

        def reseed_rng(self) -> None:  # each trial is seeded on its own already
            pass

    return TrialSeededSampler


def build_pruner(spec: PrunerSpec) -> Any:
    """The Optuna pruner of ``spec`` (``NopPruner`` for ``none``)."""
    import optuna

    kinds = {"none": optuna.pruners.NopPruner, "median": optuna.pruners.MedianPruner,
             "hyperband": optuna.pruners.HyperbandPruner, "wilcoxon": optuna.pruners.WilcoxonPruner,
             "threshold": optuna.pruners.ThresholdPruner}
    with experimental_features():
        return kinds[spec.type](**spec.options)


@contextlib.contextmanager
def experimental_features() -> Iterator[None]:
    """Silence Optuna's ExperimentalWarning for the features crlbench opts into knowingly (the
    Wilcoxon pruner, heartbeat retries, fANOVA importances)."""
    import optuna

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        yield


def _built(make: Any, where: str) -> None:
    """Build an Optuna object now, so that a bad option value fails before any trial."""
    try:
        with experimental_features():
            make()
    except (TypeError, ValueError) as error:
        raise ConfigError(f"{where}: {error}") from None
