"""Suite configs: typed, validated before any work, errors naming the file, the key and the accepted values."""

import pytest

from bench.errors import ConfigError
from bench.suite_config import load_suite
from suite_fixture import TINY, write_suite


def rejected(tmp_path, **changes) -> str:
    path = write_suite(tmp_path, **changes)
    with pytest.raises(ConfigError) as error:
        load_suite(path)
    message = str(error.value)
    assert str(path) in message
    return message


def test_a_valid_suite_expands_into_dataset_model_seed_cells(tmp_path):
    config = load_suite(write_suite(tmp_path, seeds=[0, 1]))
    cells = config.cells()
    assert [c.title for c in cells] == ["pendulum/beta_vae/seed0", "pendulum/beta_vae/seed1",
                                        "pendulum/icm_vae/seed0", "pendulum/icm_vae/seed1"]
    assert len({c.hash for c in cells}) == 4


def test_an_unknown_top_level_key_names_the_accepted_keys(tmp_path):
    message = rejected(tmp_path, sedes=[0])
    assert "'sedes'" in message and "seeds" in message


def test_a_wrong_type_names_the_key(tmp_path):
    assert "'seeds'" in rejected(tmp_path, seeds="0, 1")


def test_an_unknown_model_lists_the_registered_ones(tmp_path):
    message = rejected(tmp_path, models=[{"name": "icm_vea"}])
    assert "models[0]" in message and "'icm_vea'" in message and "icm_vae" in message


def test_an_unknown_dataset_is_rejected(tmp_path):
    assert "'pendullum'" in rejected(tmp_path, datasets=[{"name": "pendullum"}])


def test_an_unknown_metric_is_rejected(tmp_path):
    assert "metrics[1]" in rejected(tmp_path, metrics=["dci@reg", "dci@regression"])


def test_an_unknown_metric_option_names_the_options(tmp_path):
    message = rejected(tmp_path, metrics=[{"name": "mic@aligned", "options": {"cc": 3}}])
    assert "'cc'" in message and "alpha" in message


def test_an_unknown_hyperparameter_names_the_model_and_key(tmp_path):
    message = rejected(tmp_path, models=[{"name": "icm_vae", "hyperparameters": {"betta": 1.0}}])
    assert "models[0]" in message and "'betta'" in message and "beta" in message


def test_a_hyperparameter_of_the_wrong_type_is_rejected(tmp_path):
    assert "'beta'" in rejected(tmp_path, models=[{"name": "icm_vae", "hyperparameters": {"beta": "high"}}])


def test_a_per_dataset_override_is_checked_for_that_dataset(tmp_path):
    message = rejected(tmp_path, models=[{"name": "icm_vae", "per_dataset": {"pendulum": {"concept_dim": -1}}}])
    assert "concept_dim" in message and "pendulum" in message


def test_a_bad_budget_is_rejected(tmp_path):
    assert "budget" in rejected(tmp_path, budget={"steps": 0})
    assert "budget" in rejected(tmp_path, budget={"batch_size": 8})


def test_an_unknown_dataset_parameter_is_rejected(tmp_path):
    assert "'sise'" in rejected(tmp_path, datasets=[{"name": "pendulum", "params": {"sise": 32}}])


def test_a_duplicate_label_asks_for_a_different_label(tmp_path):
    assert "label" in rejected(tmp_path, models=[{"name": "icm_vae"}, {"name": "icm_vae"}])


def test_an_unknown_evaluation_split_names_the_accepted_splits(tmp_path):
    message = rejected(tmp_path, evaluation={"split": "train"})
    assert "test" in message and "val" in message


def test_a_missing_plugin_module_is_named(tmp_path):
    assert "no_such_plugin_module" in rejected(tmp_path, plugins=["no_such_plugin_module"])


def test_a_model_file_supplies_per_dataset_reference_settings(tmp_path):
    from pathlib import Path

    configs = Path(__file__).parent.parent / "configs"
    suite = write_suite(configs / "suites", name=f".test-{tmp_path.name}.yaml",
                        datasets=[{"name": "causal_circuit", "params": {"size": 32}}],
                        models=[{"config": "../models/icm_vae.yaml"}])
    try:
        (cell,) = load_suite(suite).cells()
    finally:
        suite.unlink()
    assert cell.hyperparameters == {"beta": 0.05, "concept_dim": 32}


def test_spelling_out_a_default_keeps_the_cell_hash(tmp_path):
    plain = load_suite(write_suite(tmp_path, name="a.yaml")).cells()[1]
    explicit = load_suite(write_suite(tmp_path, name="b.yaml", models=[
        {"name": "beta_vae"}, {"name": "icm_vae", "hyperparameters": {"beta": 1.2}}])).cells()[1]
    changed = load_suite(write_suite(tmp_path, name="c.yaml", models=[
        {"name": "beta_vae"}, {"name": "icm_vae", "hyperparameters": {"beta": 1.0}}])).cells()[1]
    assert plain.hash == explicit.hash != changed.hash


def test_the_shipped_suites_load():
    from pathlib import Path

    for path in sorted((Path(__file__).parent.parent / "configs" / "suites").glob("*.yaml")):
        config = load_suite(path)
        assert config.cells(), path


# --- reference batch sizes and budgets, one row per method -------------------------------------------------

SUITES = __import__("pathlib").Path(__file__).parent.parent / "configs" / "suites"


def cells_by(config):
    return {(cell.dataset, cell.label): cell for cell in config.cells() if cell.seed == config.seeds[0]}


def test_each_method_trains_with_its_reference_batch_size_on_the_same_number_of_images():
    cells = cells_by(load_suite(SUITES / "quick.yaml"))
    dear, icm_circuit, icm_pendulum = (cells["pendulum", "dear"], cells["causal_circuit", "icm_vae"],
                                       cells["pendulum", "icm_vae"])
    assert (dear.budget.batch_size, dear.budget.steps) == (128, 100)  # DEAR's run_pendulum.sh: batch 128
    assert (icm_circuit.budget.batch_size, icm_circuit.budget.steps) == (100, 128)  # train_circuit.py: 100
    assert (icm_pendulum.budget.batch_size, icm_pendulum.budget.steps) == (64, 200)
    for cell in cells.values():  # 12,800 images each (rounded up to whole batches)
        assert 12_800 <= cell.budget.steps * cell.budget.batch_size < 12_800 + cell.budget.batch_size
    assert dear.reference_budget == {"epochs": 1000} and cells["flow", "beta_vae"].reference_budget == {
        "steps": 300000, "batch_size": 64}


def test_epoch_budgets_keep_their_epochs_at_another_batch_size():
    cells = cells_by(load_suite(SUITES / "paper.yaml"))
    assert (cells["pendulum", "dear"].budget.epochs, cells["pendulum", "dear"].budget.batch_size) == (101, 128)


def test_a_bad_training_section_names_the_key(tmp_path):
    message = rejected(tmp_path, models=[{"name": "dear", "training": {"batch_size": 0}}])
    assert "training.batch_size" in message and "positive integer" in message
    message = rejected(tmp_path, models=[{"name": "dear", "training": {"per_dataset": {"flow": {"bach_size": 8}}}}])
    assert "'bach_size'" in message and "batch_size" in message


@pytest.mark.parametrize("suite", ["smoke", "quick", "paper"])
def test_leaderboard_suites_list_each_method_once_with_its_reference_settings(suite):
    """Ablations (a second row of one method, a deviating option) live in ablations.yaml, not here."""
    config = load_suite(SUITES / f"{suite}.yaml")
    names = [model.name for model in config.models]
    assert sorted(names) == ["beta_vae", "causal_vae", "dear", "icm_vae"]
    assert [model.label for model in config.models] == names
    allowed = {"schedule", "concept_dim"}  # the budget-scaled warm-up; smoke's small CausalCircuit model
    for model in config.models:
        assert set(model.hyperparameters) <= allowed
    expected = "absolute" if suite == "paper" else "budget"
    icm_vae = next(model for model in config.models if model.name == "icm_vae")
    assert icm_vae.hyperparameters.get("schedule", "absolute") == expected
