"""Suite configs: typed, validated before any work, errors naming the file, the key and the accepted values."""

import dataclasses

import pytest
import yaml

from crlbench.core import registry
from crlbench.core.errors import ConfigError
from crlbench.suites.suite_config import load_suite
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


WRONG_OPTION_TYPES = {
    "text for an integer": ({"name": "mic@aligned", "options": {"block_size": "five"}}, "'metrics[1].options.block_size'",
                            "an integer", "'five'"),
    "a float for an integer": ({"name": "mig", "options": {"code_bins": 20.5}}, "'metrics[1].options.code_bins'",
                               "an integer", "20.5"),
    "a boolean for a number": ({"name": "mic@aligned", "options": {"alpha": True}}, "'metrics[1].options.alpha'",
                               "a number", "True"),
    "a number for text": ({"name": "mcc@pearson", "options": {"protocol": 1}}, "'metrics[1].options.protocol'",
                          "a string", "got 1"),
    "text for discrete bins": ({"name": "mig", "options": {"factor_bins": "20"}}, "'metrics[1].options.factor_bins'",
                               "an integer or null", "'20'"),
}


@pytest.mark.parametrize("entry, key, expected, value", WRONG_OPTION_TYPES.values(), ids=WRONG_OPTION_TYPES.keys())
def test_a_metric_option_of_the_wrong_type_is_refused_at_load_naming_file_key_type_and_value(tmp_path, entry, key,
                                                                                              expected, value):
    message = rejected(tmp_path, metrics=["dci@reg", entry])
    assert key in message and f"must be {expected}" in message and value in message, message


def test_the_issue_s_c_five_is_refused_at_load_and_numbers_of_the_right_type_pass(tmp_path):
    message = rejected(tmp_path, metrics=[{"name": "mic@aligned", "options": {"c": "five"}}])
    assert "key 'metrics[0].options.c' must be" in message and "got 'five'" in message
    message = rejected(tmp_path, metrics=[{"name": "sap@discrete", "options": {"C": "1e-3"}}])
    assert "'metrics[0].options.C' must be a number" in message and "write 1.0e-3" in message  # YAML 1.1 reads it as text
    config = load_suite(write_suite(tmp_path, metrics=[
        {"name": "mic@aligned", "options": {"c": 10, "alpha": 1, "est": "mic_e"}},  # an integer is a number too
        {"name": "mig", "options": {"factor_bins": None, "code_bins": 10}},
        {"name": "sap@discrete", "options": {"C": 1.0e-3, "factor_bins": 5}}]))
    assert [m.options for m in config.metrics][0] == {"c": 10, "alpha": 1, "est": "mic_e"}


def test_a_plugin_metric_declares_option_types_its_defaults_do_not_tell(monkeypatch):
    from crlbench.core import registry
    from crlbench.metrics.base import MetricResult, variant

    monkeypatch.setattr(registry.registry("metric"), "_objects", dict(registry.registry("metric")._objects))

    spec = variant("test-declared@types", option_types={"c": float, "n_jobs": (int, None)}, c=15, n_jobs=-1,
                   anything=None)(lambda *args, **kwargs: MetricResult({}))
    spec.check_options({"c": 15.5, "n_jobs": None, "anything": [1, "x"]}, "f.yaml: key 'metrics[0].options")
    with pytest.raises(ConfigError, match=r"'metrics\[0\]\.options\.n_jobs' must be an integer or null .*got 'all'"):
        spec.check_options({"n_jobs": "all"}, "f.yaml: key 'metrics[0].options")
    with pytest.raises(TypeError, match="without a default"):
        variant("test-undeclared@types", option_types={"d": int}, c=1)(lambda *args, **kwargs: MetricResult({}))


BAD_NAMES = ["../../x", "", "/tmp/abs", "a/b", "a\\b", ".", "..", ".hidden", "-flag", "tab\tname", "x" * 101, 5]


def suite_named(directory, name):
    path = directory / "named.yaml"  # write_suite's own `name` is the file's
    path.write_text(yaml.safe_dump({**TINY, "name": name}))
    return path


@pytest.mark.parametrize("name", BAD_NAMES, ids=[repr(n)[:12] for n in BAD_NAMES])
def test_a_suite_name_that_could_leave_a_folder_is_refused_with_the_accepted_form(tmp_path, name):
    path = suite_named(tmp_path, name)
    with pytest.raises(ConfigError) as error:
        load_suite(path)
    message = str(error.value)
    assert f"{path}: key 'name' must be a name of" in message and "letters, digits, '-', '_' and '.'" in message
    assert f"got {name!r}" in message


def test_suite_names_of_letters_digits_dots_dashes_and_underscores_pass(tmp_path):
    for name in ("quick", "paper_v2.1", "icm_vae-pendulum", "_scratch", "A" * 100):
        assert load_suite(suite_named(tmp_path, name)).name == name


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


# The smoke suite's cell hashes, pinned: the results and checkpoints of every work directory are found
# by them. Moving code (the crlbench namespace, issue 14) must keep them; a change that alters
# training bumps crlbench.__version__ or a model's version, and then these pins are updated on purpose.
SMOKE_HASHES = {
    "pendulum/icm_vae/seed0": "935f44a7bee26d09", "pendulum/icm_vae/seed1": "392e851ad5cb0968",
    "pendulum/causal_vae/seed0": "9168be76604fcb59", "pendulum/causal_vae/seed1": "920d81609c6b6c01",
    "pendulum/dear/seed0": "da42f9438fe09b52", "pendulum/dear/seed1": "23c3e6fff6ddd7e8",
    "pendulum/beta_vae/seed0": "84e83fa47e3b4afa", "pendulum/beta_vae/seed1": "69b888eb251cf5d2",
    "flow/icm_vae/seed0": "c14c498cec6c6a86", "flow/icm_vae/seed1": "9daade00cfb3f3ec",
    "flow/causal_vae/seed0": "cc8aab53b8ff8d1c", "flow/causal_vae/seed1": "410952e029237100",
    "flow/dear/seed0": "581218599858b47f", "flow/dear/seed1": "f6b59393b5bbc041",
    "flow/beta_vae/seed0": "d94ae6984eca6e4c", "flow/beta_vae/seed1": "acd74c3a3463a8f5",
    "causal_circuit/icm_vae/seed0": "8236db6e7015be5c", "causal_circuit/icm_vae/seed1": "999875c50fe6756a",
    "causal_circuit/causal_vae/seed0": "0e3dc0fdad1e5345", "causal_circuit/causal_vae/seed1": "4545457222551695",
    "causal_circuit/dear/seed0": "a390d4d2b96e5ae4", "causal_circuit/dear/seed1": "0a214b3378fd8b6b",
    "causal_circuit/beta_vae/seed0": "292fca4d909a5fe6", "causal_circuit/beta_vae/seed1": "12e2e4efeededef2",
    # added with issue 16; ILCM's record the version of the pairs it trains on (generated on Pendulum and Flow)
    "pendulum/scm_vae/seed0": "ceb7a2b6338b99a0", "pendulum/scm_vae/seed1": "037b8c5c7652038c",
    "pendulum/ivae/seed0": "956f30643901cc57", "pendulum/ivae/seed1": "119d16ecfe12ccf5",
    "pendulum/ilcm/seed0": "4927e536653fc3c4", "pendulum/ilcm/seed1": "ffdbcf00ce09517d",
    "flow/scm_vae/seed0": "4930bea989de28be", "flow/scm_vae/seed1": "41222299d4e9ed64",
    "flow/ivae/seed0": "7aa51887734d812b", "flow/ivae/seed1": "62f6918cff83ab67",
    "flow/ilcm/seed0": "9ba189cadd452754", "flow/ilcm/seed1": "54075828a376d5ea",
    "causal_circuit/scm_vae/seed0": "489c353f919372f0", "causal_circuit/scm_vae/seed1": "524476b22c6a6c1c",
    "causal_circuit/ivae/seed0": "24fe6013dd9533ff", "causal_circuit/ivae/seed1": "a3abe44c1073f42f",
    "causal_circuit/ilcm/seed0": "eed1cda5286c066b", "causal_circuit/ilcm/seed1": "9da2749554918df5",
    # added with issue 22: the reference rows (docs/protocol.md, "Reference rows")
    "pendulum/copy/seed0": "fd79cfd58f64dd3e", "pendulum/copy/seed1": "9982ce755f4bae2d",
    "pendulum/mean_image/seed0": "8b634e85b557f2d0", "pendulum/mean_image/seed1": "da6b5bd36cacbbd8",
    "pendulum/supervised/seed0": "a9c06ee5e5f0513b", "pendulum/supervised/seed1": "989ba56ad6dbe877",
    "pendulum/untrained/seed0": "9b012423a92427e5", "pendulum/untrained/seed1": "ac8c9487c251b673",
    "flow/copy/seed0": "e76a0e3bcc23d4bc", "flow/copy/seed1": "21b12bc5f47a34d7",
    "flow/mean_image/seed0": "ecd4e2b9832b4c67", "flow/mean_image/seed1": "b0ba2d09af5ecf4e",
    "flow/supervised/seed0": "68fd1768ccf333f9", "flow/supervised/seed1": "ba4de9b0303901b5",
    "flow/untrained/seed0": "94a9275e3fcf4141", "flow/untrained/seed1": "4379dc2cacec12bf",
    "causal_circuit/copy/seed0": "181fca292a41c087", "causal_circuit/copy/seed1": "57d0f1479355834f",
    "causal_circuit/mean_image/seed0": "f5d2790a89c865be", "causal_circuit/mean_image/seed1": "c93503ba0e51b402",
    "causal_circuit/supervised/seed0": "b0e0c090cbf9347f", "causal_circuit/supervised/seed1": "305f18dce5ea6e78",
    "causal_circuit/untrained/seed0": "d64c85bed326a3fa", "causal_circuit/untrained/seed1": "f3d7a78b30898566",
}
# Issue 23 made the reference's per-concept decoders the default of CausalVAE and SCM-VAE: their rows above
# were re-pinned then (the resolved hyperparameters, and so the hashes, changed on purpose).
# Evaluated on the val split: Pendulum and Flow have none, so a validation holdout is part of the hash.
SMOKE_VAL_HASHES = {"pendulum/icm_vae/seed0": "1a4d2cbedfc026ba", "flow/icm_vae/seed0": "ffcd4831fd7f4e7f",
                    "causal_circuit/icm_vae/seed0": "8236db6e7015be5c"}


def test_the_smoke_cells_keep_their_pinned_hashes():
    import dataclasses

    config = load_suite(SUITES / "smoke.yaml")
    assert {cell.title: cell.hash for cell in config.cells()} == SMOKE_HASHES
    on_val = dataclasses.replace(config, evaluation=dataclasses.replace(config.evaluation, split="val"))
    hashes = {cell.title: cell.hash for cell in on_val.cells()}
    assert {title: hashes[title] for title in SMOKE_VAL_HASHES} == SMOKE_VAL_HASHES


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


@pytest.mark.parametrize("suite", ["smoke", "quick", "paper", "standard"])
def test_leaderboard_suites_list_each_method_once_with_its_reference_settings(suite):
    """Ablations (a second row of one method, a deviating option) live in ablations.yaml, not here. Reference
    rows (docs/protocol.md, "Reference rows") are not methods: each is listed at most once, with its defaults."""
    config = load_suite(SUITES / f"{suite}.yaml")
    references = [model for model in config.models if getattr(registry.model_declaration(model.name), "reference_for", ())]
    assert sorted(model.name for model in references) == ["copy", "mean_image", "supervised", "untrained"]
    assert all(model.label == model.name and not model.hyperparameters for model in references)
    methods = [model for model in config.models if model not in references]
    names = [model.name for model in methods]
    assert sorted(names) == ["beta_vae", "causal_vae", "dear", "icm_vae", "ilcm", "ivae", "scm_vae"]
    assert [model.label for model in methods] == names
    allowed = {"schedule", "concept_dim"}  # the budget-scaled warm-up; smoke's small CausalCircuit model
    stated = {"ivae": {"lr"}}  # deviations a model's config file states (configs/models/ivae.yaml: 0.01 diverges)
    if suite == "quick":  # the default of its committed run, pinned so reports/quick keeps its cells (quick.yaml)
        allowed = allowed | {"decoder"}
    for model in methods:
        defaults = dataclasses.asdict(registry.model_declaration(model.name).Config())
        changed = {key for key, value in model.hyperparameters.items() if defaults.get(key, object()) != value}
        assert changed <= allowed | stated.get(model.name, set()), (model.name, changed)
    expected = "absolute" if suite == "paper" else "budget"
    icm_vae = next(model for model in config.models if model.name == "icm_vae")
    assert icm_vae.hyperparameters.get("schedule", "absolute") == expected


def test_the_budget_fraction_counts_the_short_last_batch_of_each_epoch():
    from crlbench.suites.runner import budget_fraction

    cell = cells_by(load_suite(SUITES / "quick.yaml"))["pendulum", "icm_vae"]  # batch 64, reference 101 epochs
    fraction = budget_fraction(cell, steps=3, train_size=100)  # 2 batches an epoch: 64 + 36, then 64
    assert fraction["images"] == 164 and fraction["reference_images"] == 10100


def test_the_sensitivity_suites_are_a_two_by_two_of_image_size_and_budget_sharing_the_standard_cells():
    """configs/suites/sensitivity/: the four suites differ only in image size and budget, and the 32x32 long
    one is a subset of the standard suite (its cells are the standard run's own, not trained twice)."""
    suites = {path.stem: load_suite(path) for path in sorted((SUITES / "sensitivity").glob("*.yaml"))}
    assert sorted(suites) == ["32px-long", "32px-short", "64px-long", "64px-short"]
    sizes = {name: {cell.dataset_params["size"] for cell in suite.cells()} for name, suite in suites.items()}
    assert sizes == {"32px-long": {32}, "32px-short": {32}, "64px-long": {64}, "64px-short": {64}}
    assert suites["32px-short"].budget == suites["64px-short"].budget != suites["32px-long"].budget == suites["64px-long"].budget
    titles = {name: sorted(cell.title for cell in suite.cells()) for name, suite in suites.items()}
    assert len({tuple(value) for value in titles.values()}) == 1  # the same methods, datasets and seeds
    standard = {cell.hash for cell in load_suite(SUITES / "standard.yaml").cells()}
    assert {cell.hash for cell in suites["32px-long"].cells()} <= standard


def test_the_tuned_suite_pairs_each_method_with_its_tuned_settings_on_the_standard_cells():
    """configs/suites/tuned.yaml: every leaderboard method once with its reference settings (the standard run's
    own cells) and once with its study's export, differing only in the searched hyperparameters."""
    from crlbench.tuning.tune import load_tune

    tuned, standard = load_suite(SUITES / "tuned.yaml"), load_suite(SUITES / "standard.yaml")
    assert (tuned.seeds, tuned.budget, tuned.metrics, tuned.evaluation) == (
        standard.seeds, standard.budget, standard.metrics, standard.evaluation)
    assert {cell.hash for cell in tuned.cells() if not cell.label.endswith(" (tuned)")} <= {
        cell.hash for cell in standard.cells()}
    entries = {model.label: model for model in tuned.models}
    methods = [model.name for model in standard.models if model.name not in ("copy", "mean_image", "supervised", "untrained")]
    assert sorted(label for label in entries if label.endswith(" (tuned)")) == sorted(f"{m} (tuned)" for m in methods)
    for method in methods:
        study = load_tune(SUITES.parent / "tune" / f"{method}-pendulum.yaml")
        searched = {param.name for param in study.search_space}
        reference, chosen = (entries[label].hyperparameters_for("pendulum") for label in (method, f"{method} (tuned)"))
        assert {key for key in chosen if chosen[key] != reference.get(key)} <= searched, method
        assert entries[f"{method} (tuned)"].training_for("pendulum") == entries[method].training_for("pendulum")
