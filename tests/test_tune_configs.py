"""The shipped tuning configs (configs/tune/*.yaml) give every built-in method the same tuning effort.

Compare tuned methods, not tuning effort (issue 11, point 9): every built-in model has exactly one
tune file, all on the same dataset, with the same number of searched hyperparameters and the same
trial budget, seeds, training budget, objective, sampler, pruner and evaluation. Each file is read
with the project's own loader (:func:`crlbench.tuning.tune_config.load_tune`), which validates it as
``crlbench tune`` would before any trial.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from crlbench.core import registry
from crlbench.tuning.tune_config import TuneConfig, load_tune

TUNE_DIR = Path(__file__).resolve().parent.parent / "configs" / "tune"
BUILT_IN_MODELS = ("beta_vae", "causal_vae", "dear", "icm_vae", "scm_vae")
# Everything but the model and its search space must be the same in every file.
SHARED = ("dataset", "trials", "seeds", "budget", "objective", "sampler", "pruner", "evaluation", "metrics",
          "device", "checkpoint_every", "plugins")
FIRST_TRY = TUNE_DIR / "tiny.yaml"  # a first try of `crlbench tune` (minutes of nothing), not one of the compared studies
FILES = sorted(path for path in TUNE_DIR.glob("*.yaml") if path != FIRST_TRY)
# Settings that are ablations of a method (reported side by side in the suites), not tuning knobs:
# ICM-VAE's warm-up start (reference epoch 2; icm_vae+warm0 in the quick suite starts at 0).
ABLATIONS = {"icm_vae": ("warmup_start_epoch",)}


@pytest.fixture(scope="module")
def configs() -> dict[Path, TuneConfig]:
    assert FILES, f"no tuning configs in {TUNE_DIR}"
    return {path: load_tune(path) for path in FILES}


def built_in_models() -> set[str]:
    """The methods crlbench ships, and any other model its own package declares, reference rows aside
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


def observational(config) -> tuple[str, dict]:
    """A config's dataset and parameters, less the environments mode a method that learns from environments
    needs (Contrastive CRL tunes on Pendulum's pooled environments, the others on its observations)."""
    return config.dataset.name, {key: value for key, value in config.dataset.params.items() if key != "environments"}


def test_all_configs_tune_on_the_same_dataset(configs):
    datasets = {path.name: observational(config) for path, config in configs.items()}
    assert len({repr(value) for value in datasets.values()}) == 1, f"the configs tune on different datasets: {datasets}"
    for path, config in configs.items():  # the environments mode exactly where the method needs it
        needs = getattr(registry.model_declaration(config.model.name), "needs_environments", False)
        assert bool(config.dataset.params.get("environments")) == needs, path.name


def test_all_configs_search_the_same_number_of_hyperparameters(configs):
    counts = {path.name: [param.name for param in config.search_space] for path, config in configs.items()}
    assert len({len(names) for names in counts.values()}) == 1, f"searched hyperparameters differ in number: {counts}"


@pytest.mark.parametrize("setting", SHARED)
def test_all_configs_share_one_budget(configs, setting):
    values = {path.name: observational(config) if setting == "dataset" else _plain(getattr(config, setting))
              for path, config in configs.items()}
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


def test_every_config_states_what_a_trial_costs():
    for path in [*FILES, FIRST_TRY]:
        header = "".join(line for line in path.read_text().splitlines(keepends=True) if line.startswith("#"))
        assert re.search(r"a trial (costs|takes) about", " ".join(header.split()), re.IGNORECASE), (
            f"{path.name}: its header should state what a trial costs")


def test_the_first_try_config_is_small_and_selects_as_the_shipped_ones(configs):
    tiny, shipped = load_tune(FIRST_TRY), next(iter(configs.values()))
    assert tiny.trials.n_trials <= 3 and len(tiny.seeds) == 1 and tiny.budget.steps <= 200
    assert (_plain(tiny.objective), _plain(tiny.dataset), tiny.pruner.type) == (
        _plain(shipped.objective), _plain(shipped.dataset), "none")
    assert "crlbench tune configs/tune/tiny.yaml --export-only" in FIRST_TRY.read_text()


@pytest.mark.slow
def test_the_first_try_config_runs_its_trials_and_exports_without_training_again(tmp_path, data_dir, capsys):
    # the first try of docs/tuning.md, as a user runs it (in a copy of configs/, so that the export lands there)
    import shutil

    from crlbench.cli import main

    configs = tmp_path / "configs"
    shutil.copytree(TUNE_DIR.parent, configs, ignore=shutil.ignore_patterns("tuned"))
    workdir = tmp_path / "work"
    workdir.mkdir()
    (workdir / "data").symlink_to(data_dir, target_is_directory=True)
    arguments = ["tune", str(configs / "tune" / "tiny.yaml"), "--workdir", str(workdir), "--no-tracking"]
    assert main(arguments) == 0
    out = capsys.readouterr().out
    assert out.count("study tiny: trial ") == 2 and "2 trials (2 complete)" in out
    assert main(arguments + ["--export-only"]) == 0
    assert "no trial run (--export-only)" in capsys.readouterr().out
    assert (configs / "tuned" / "beta_vae-pendulum-tiny.yaml").is_file()


def _plain(value):
    """A comparable form of a config field (dataclasses as dicts, tuples as lists)."""
    if dataclasses.is_dataclass(value):
        return _plain(dataclasses.asdict(value))
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in sorted(value.items())}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return value
