"""A plugin declares its reference batch size and reference run as class attributes
(``reference_batch_size``, ``reference_budget``), read when a suite names the model; a model file and the
suite's entry override them (crlbench.suites.suite_config.declared_training)."""

from dataclasses import dataclass

import pytest
import yaml

from crlbench.core import registry
from crlbench.core.errors import ConfigError
from crlbench.suites.suite_config import suite_from_dict
from crlbench.training.model import CausalModel


@dataclass(frozen=True)
class TinyConfig:
    lr: float = 1e-3


def model_class(name: str, **attributes) -> type:
    return type(f"Model_{name}", (CausalModel,), {"name": name, "Config": TinyConfig, **attributes})


@pytest.fixture
def models(monkeypatch):
    """Registers test model classes; the registry is as before afterwards."""
    names = registry.registry("model")
    monkeypatch.setattr(names, "_objects", dict(names._objects))
    monkeypatch.setattr(names, "_registered_by", dict(names._registered_by))

    def add(name: str, **attributes) -> None:
        names.add(name, model_class(name, **attributes))

    return add


def cell_of(entry, steps=10, batch_size=32, dataset="pendulum", base="."):
    from pathlib import Path

    suite = suite_from_dict({"name": "s", "seeds": [0], "budget": {"steps": steps, "batch_size": batch_size},
                             "datasets": [dataset], "models": [entry], "metrics": ["mcc@pearson"]},
                            where="s.yaml", base=Path(base))
    (cell,) = suite.cells()
    return cell


def test_a_suite_naming_the_model_trains_at_the_declared_batch_size_and_records_the_reference_run(models):
    models("declaring", reference_batch_size=64, reference_budget={"epochs": 20})
    cell = cell_of({"name": "declaring"})
    assert (cell.budget.batch_size, cell.budget.steps) == (64, 5)  # 10 x 32 images in batches of 64
    assert cell.reference_budget == {"epochs": 20}


def test_a_model_without_the_attributes_keeps_the_suite_batch_size(models):
    models("silent")
    cell = cell_of({"name": "silent"})
    assert (cell.budget.batch_size, cell.budget.steps, cell.reference_budget) == (32, 10, None)


def test_the_model_file_then_the_suite_entry_win_over_the_class(models, tmp_path):
    models("declaring", reference_batch_size=64, reference_budget={"epochs": 20})
    file = tmp_path / "declaring.yaml"
    file.write_text(yaml.safe_dump({"name": "declaring", "training": {"batch_size": 16}}))
    from_file = cell_of({"config": "declaring.yaml"}, base=tmp_path)
    assert from_file.budget.batch_size == 16 and from_file.reference_budget == {"epochs": 20}  # the class's run
    from_entry = cell_of({"config": "declaring.yaml", "training": {"batch_size": 8,
                                                                   "reference_budget": {"epochs": 5}}}, base=tmp_path)
    assert from_entry.budget.batch_size == 8 and from_entry.reference_budget == {"epochs": 5}


@pytest.mark.parametrize("attributes, expected", [
    ({"reference_batch_size": 0}, "model 'bad': class attribute 'reference_batch_size' must be a positive integer"),
    ({"reference_batch_size": True}, "class attribute 'reference_batch_size' must be a positive integer"),
    ({"reference_budget": {"step": 3}}, "model 'bad': class attribute 'reference_budget'"),
    ({"reference_budget": 300}, "model 'bad': class attribute 'reference_budget'"),
])
def test_a_bad_declaration_names_the_class_attribute(models, attributes, expected):
    models("bad", **attributes)
    with pytest.raises(ConfigError, match=expected):
        cell_of({"name": "bad"})


def test_no_built_in_model_declares_the_attributes():
    """The built-in methods keep their reference settings in configs/models/*.yaml; a declaration in the class
    too would change the cells of suites that name them without their file."""
    for name in registry.registry("model").names():
        for declared in (registry.model_declaration(name), registry.registry("model").get(name)):
            assert getattr(declared, "reference_batch_size", None) is None, name
            assert getattr(declared, "reference_budget", None) is None, name
