"""The shipped tuning configs (configs/tune/*.yaml) give every built-in method the same tuning effort.

Compare tuned methods, not tuning effort (issue 11, point 9): every built-in model has exactly one
tune file, all on the same dataset, with the same number of searched hyperparameters and the same
trial budget, seeds, training budget, objective, sampler, pruner and evaluation. Each file is read
with the project's own loader (:func:`crlbench.tuning.tune_config.load_tune`), which validates it as
``crlbench tune`` would before any trial.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from crlbench.core import registry
from crlbench.tuning.tune_config import TuneConfig, load_tune

TUNE_DIR = Path(__file__).resolve().parent.parent / "configs" / "tune"
BUILT_IN_MODELS = ("beta_vae", "causal_vae", "dear", "icm_vae", "scm_vae")
# Everything but the model and its search space must be the same in every file.
SHARED = ("dataset", "trials", "seeds", "budget", "objective", "sampler", "pruner", "evaluation", "metrics",
          "device", "checkpoint_every", "plugins")
FILES = sorted(TUNE_DIR.glob("*.yaml"))
# Settings that are ablations of a method (reported side by side in the suites), not tuning knobs:
# ICM-VAE's warm-up start (reference epoch 2; icm_vae+warm0 in the quick suite starts at 0).
ABLATIONS = {"icm_vae": ("warmup_start_epoch",)}


@pytest.fixture(scope="module")
def configs() -> dict[Path, TuneConfig]:
    assert FILES, f"no tuning configs in {TUNE_DIR}"
    return {path: load_tune(path) for path in FILES}


def built_in_models() -> set[str]:
    """The four methods crlbench ships, and any other model its own package declares, reference rows aside
    (docs/protocol.md, "Reference rows": they are exempt from tuning)."""
    provided = {entry.name for entry in registry.registry("model").entries()
                if entry.provider.split()[0] == "crlbench"
                and not getattr(registry.model_declaration(entry.name), "reference_for", ())}
    return set(BUILT_IN_MODELS) | provided


def test_reference_rows_are_not_counted_as_methods_to_tune():
    assert {"copy", "mean_image", "supervised", "untrained"}.isdisjoint(built_in_models())
    assert {"ivae", "ilcm"} <= built_in_models()  # methods declared by crlbench's entry points still are


def test_every_built_in_model_has_exactly_one_tuning_config(configs):
    by_model: dict[str, list[str]] = {}
    for path, config in configs.items():
        by_model.setdefault(config.model.name, []).append(path.name)
    missing = sorted(built_in_models() - set(by_model))
    assert not missing, f"built-in models without a tuning config in {TUNE_DIR}: {missing}"
    duplicated = {model: names for model, names in by_model.items() if len(names) > 1}
    assert not duplicated, f"models with several tuning configs: {duplicated}"


def test_every_config_is_named_after_its_model_and_dataset(configs):
    for path, config in configs.items():
        expected = f"{config.model.name}-{config.dataset.name}"
        assert path.stem == expected, f"{path.name}: name the file {expected}.yaml"
        assert config.name == expected, f"{path.name}: study name {config.name!r}, expected {expected!r}"
        command = f"crlbench tune configs/tune/{path.name}"
        assert command in path.read_text(), f"{path.name}: its header should give the command ({command} ...)"


def test_all_configs_tune_on_the_same_dataset(configs):
    datasets = {path.name: (config.dataset.name, config.dataset.params) for path, config in configs.items()}
    assert len({repr(value) for value in datasets.values()}) == 1, f"the configs tune on different datasets: {datasets}"


def test_all_configs_search_the_same_number_of_hyperparameters(configs):
    counts = {path.name: [param.name for param in config.search_space] for path, config in configs.items()}
    assert len({len(names) for names in counts.values()}) == 1, f"searched hyperparameters differ in number: {counts}"


@pytest.mark.parametrize("setting", SHARED)
def test_all_configs_share_one_budget(configs, setting):
    values = {path.name: _plain(getattr(config, setting)) for path, config in configs.items()}
    distinct = {repr(value) for value in values.values()}
    assert len(distinct) == 1, f"{setting!r} differs between the tuning configs: {values}"


def test_every_config_searches_a_learning_rate_around_the_reference(configs):
    """Each method's learning rate (or DEAR's per-network ones) is searched, and every range holds the
    model's reference value, so that a study can always fall back on the reference setting."""
    for path, config in configs.items():
        names = [param.name for param in config.search_space]
        assert any(name == "lr" or name.startswith("lr_") for name in names), f"{path.name}: no learning rate in {names}"
        defaults = dataclasses.asdict(registry.registry("model").get(config.model.name).Config())
        reference = {**defaults, **config.model.hyperparameters_for(config.dataset.name)}
        for param in config.search_space:
            value = reference[param.name]
            if param.type == "categorical":
                assert value in param.choices, f"{path.name}: {param.name} choices {param.choices} miss the reference {value!r}"
            else:
                assert param.low <= value <= param.high, (
                    f"{path.name}: {param.name} range [{param.low}, {param.high}] misses the reference {value!r}")


def test_no_config_searches_an_ablation(configs):
    for path, config in configs.items():
        searched = {param.name for param in config.search_space}
        ablations = searched & set(ABLATIONS.get(config.model.name, ()))
        assert not ablations, f"{path.name}: {sorted(ablations)} is an ablation, not a tuning knob; keep the reference value"


def _plain(value):
    """A comparable form of a config field (dataclasses as dicts, tuples as lists)."""
    if dataclasses.is_dataclass(value):
        return _plain(dataclasses.asdict(value))
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in sorted(value.items())}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return value
