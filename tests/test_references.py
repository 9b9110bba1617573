"""The reference rows (docs/protocol.md, "Reference rows"): copy, mean_image, supervised and untrained do
what they stand for, and the runner scores each only on what it stands for, without a partial cell."""

import numpy as np
import pytest
import torch

from crlbench.core import registry
from crlbench.core.references import LATENT, RECONSTRUCTION, expanded, latent_metrics
from crlbench.core.errors import NotApplicable
from crlbench.metrics import compute
from crlbench.suites.results import cell_dir
from crlbench.suites.suite import plan, run_suite
from crlbench.suites.suite_config import load_suite
from crlbench.training import model as model_contract
from crlbench.training.train import CHECKPOINT, Budget, batch_tensors, build_model, train
from model_fixtures import random_batch
from suite_fixture import write_suite

REFERENCES = ("copy", "mean_image", "supervised", "untrained")


@pytest.fixture(scope="module")
def pendulum(tmp_path_factory):
    """Pendulum at 32x32: 300 training images and 200 held-out ones."""
    dataset = registry.dataset("pendulum", cache_dir=tmp_path_factory.mktemp("d"), size=32)
    train_split, test_split = dataset.split("train"), dataset.split("test")
    return dataset.card, (train_split.images[:300], train_split.factors[:300]), (test_split.images[:200],
                                                                                 test_split.factors[:200])


def test_copy_do_returns_the_source_image_exactly(pendulum):
    card = pendulum[0]
    copy = build_model("copy", card, seed=0)
    images = random_batch(count=5)["images"]
    for target in range(len(card.factors)):
        assert torch.equal(copy.intervene(images, target, torch.randn(5, 1)), images)


def test_mean_image_returns_the_exact_training_mean_and_checkpoints_keep_it(pendulum, tmp_path):
    card, (images, factors), _ = pendulum
    model = build_model("mean_image", card, seed=0)
    train(model, images, factors, budget=Budget(steps=25, batch_size=32), seed=0, checkpoint_dir=tmp_path,
          progress=False)  # 10 batches an epoch: the mean is summed in epoch 0 only, not again in epochs 1-2
    pixels = batch_tensors(images, factors, np.zeros(len(card.factors)), np.ones(len(card.factors)))["images"]
    expected = pixels.double().mean(dim=0).float()
    assert float(model.image_count) == len(images)
    source = random_batch(count=3)["images"]
    assert torch.allclose(model.reconstruct(source), expected.expand(3, -1, -1, -1), rtol=0, atol=1e-7)
    assert torch.allclose(model.intervene(source, 1, torch.zeros(3)), expected.expand(3, -1, -1, -1), rtol=0, atol=1e-7)
    reloaded = build_model("mean_image", card, seed=0)
    reloaded.load_state_dict(torch.load(tmp_path / CHECKPOINT, weights_only=True)["model"])
    assert torch.equal(reloaded.reconstruct(source), model.reconstruct(source))


def test_untrained_weights_do_not_change_with_training(pendulum):
    card, (images, factors), _ = pendulum
    model = build_model("untrained", card, seed=3)
    fresh = build_model("untrained", card, seed=3)
    train(model, images, factors, budget=Budget(steps=12, batch_size=32), seed=3, progress=False)
    assert model.state_dict().keys() == fresh.state_dict().keys()
    assert all(torch.equal(value, fresh.state_dict()[name]) for name, value in model.state_dict().items())


def matched_mcc(model, images, factors, card) -> float:
    from crlbench.suites.runner import encode

    stats = card.label_stats
    standardised = (factors - np.asarray(stats["mean"])) / np.asarray(stats["std"])
    return compute("mcc@pearson", encode(model.eval(), images), standardised).scores["mcc"]


def test_supervised_learns_what_the_untrained_backbone_does_not(pendulum):
    """After 40 epochs on 300 Pendulum images (400 steps), the supervised backbone's held-out MCC beats the
    untrained backbone's 16 codes matched to the factors (which reach 0.78 on these images: a high floor; the
    supervised row, seed 0, read 0.75 after 10 epochs and 0.96 after 40 in a run made while writing this test)."""
    card, (images, factors), (test_images, test_factors) = pendulum
    supervised = build_model("supervised", card, seed=0)
    train(supervised, images, factors, budget=Budget(epochs=40, batch_size=32), seed=0, progress=False)
    untrained = build_model("untrained", card, seed=0)
    learned = matched_mcc(supervised, test_images, test_factors, card)
    floor = matched_mcc(untrained, test_images, test_factors, card)
    assert learned > floor


@pytest.mark.parametrize("name", ["supervised", "untrained"])
def test_a_reference_without_a_do_raises_not_applicable(pendulum, name):
    model = build_model(name, pendulum[0], seed=0)
    with pytest.raises(NotApplicable, match=name):
        model.intervene(random_batch(count=2)["images"], 0, torch.zeros(2))


# The built-in metrics that read the representation (the list the supervised and untrained records name).
BUILT_IN_LATENT = ("dci@dlib", "dci@reg", "irs@dlib", "irs@icmvae", "irs@suter", "mcc@pearson", "mcc@spearman",
                   "mic@aligned", "mic@flat", "mic@matched", "mig", "modularity", "r2@linear", "sap@continuous",
                   "sap@discrete")


def test_the_latent_metrics_are_every_metric_that_reads_the_representation():
    metrics = registry.registry("metric")
    built_in = [entry.name for entry in metrics.entries() if entry.provider.split()[0] == "crlbench"]
    reads_the_representation = {name for name in built_in if not metrics.get(name).needs_model}
    assert set(BUILT_IN_LATENT) == reads_the_representation
    assert expanded([LATENT]) == tuple(name for name in latent_metrics() if name in BUILT_IN_LATENT) == BUILT_IN_LATENT
    assert RECONSTRUCTION == model_contract.RECONSTRUCTION


def test_a_plugins_latent_metric_applies_to_the_supervised_and_untrained_rows():
    """The latent metrics are read from the registry at run time: a metric registered by a plugin that reads
    only the representation is one, and the supervised and untrained rows stand for it; copy does not."""
    from crlbench.metrics.base import variant

    @variant("latent@plugin_test")
    def _plugin(z_train, y_train, **_):
        """A plugin's latent metric."""
        return None

    try:
        assert "latent@plugin_test" in latent_metrics()
        for name in ("supervised", "untrained"):
            model_class = registry.registry("model").get(name)
            assert model_contract.stands_for(model_class, "latent@plugin_test")
            assert "latent@plugin_test" in model_contract.stood_for(model_class)
            assert not model_contract.stands_for(model_class, "counterfactual@probe")
            assert not model_contract.stands_for(model_class, RECONSTRUCTION)
        assert not model_contract.stands_for(registry.registry("model").get("copy"), "latent@plugin_test")
    finally:
        metrics = registry.registry("metric")
        metrics._objects.pop("latent@plugin_test")
        metrics._registered_by.pop("latent@plugin_test")


def test_a_listed_metric_that_cannot_be_loaded_is_left_out_of_the_latent_metrics_with_a_warning(monkeypatch, caplog):
    metrics = registry.registry("metric")
    monkeypatch.setattr(metrics, "_registered_by", {**metrics._registered_by, "ghost@test": "gone.module:ghost"})
    with caplog.at_level("WARNING", logger="crlbench.core.references"):
        found = latent_metrics()
    assert "ghost@test" not in found and set(BUILT_IN_LATENT) <= set(found)
    assert "'ghost@test' is listed but cannot be loaded" in caplog.text


@pytest.mark.parametrize("name", REFERENCES)
def test_the_light_declaration_says_what_each_reference_stands_for(name):
    model_class = registry.registry("model").get(name)
    declared = registry.model_declaration(name)
    assert declared.Config is model_class.Config and declared.version == model_class.version
    assert declared.reference_for == model_class.reference_for != ()


def test_a_method_stands_for_every_score_and_a_reference_for_its_own():
    methods = registry.registry("model").get("beta_vae")
    assert methods.reference_for == () and model_contract.stands_for(methods, "graph@card")
    copy = registry.registry("model").get("copy")
    assert model_contract.stands_for(copy, "counterfactual@probe")
    assert not model_contract.stands_for(copy, "dci@reg") and not model_contract.stands_for(copy, RECONSTRUCTION)


# --- through the runner ---------------------------------------------------------------------------------------

METRICS = ["dci@reg", "mcc@pearson", {"name": "counterfactual@probe", "options": {"n_samples": 16, "probe_samples": 60}},
           "graph@card"]


@pytest.fixture(scope="module")
def suite(tmp_path_factory):
    """The four reference rows and beta-VAE in one tiny suite, run once: (config, workdir, records by label)."""
    from crlbench.suites.results import read_result

    directory = tmp_path_factory.mktemp("references")
    config = load_suite(write_suite(directory, models=[{"name": "beta_vae"}, *({"name": n} for n in REFERENCES)],
                                    metrics=METRICS))
    run_suite(config, directory / "work", progress=False)
    return config, directory / "work", {cell.label: read_result(cell_dir(directory / "work", cell.hash))
                                        for cell in config.cells()}


def test_the_record_says_what_a_reference_row_stands_for_and_runs(suite):
    _, _, records = suite
    assert records["beta_vae"]["reference"] is None
    assert records["copy"]["reference"]["for"] == ["counterfactual@probe"]
    assert records["mean_image"]["reference"]["for"] == ["reconstruction", "counterfactual@probe"]
    assert records["supervised"]["reference"]["for"] == records["untrained"]["reference"]["for"] == list(BUILT_IN_LATENT)
    assert "ConvEncoder" in records["supervised"]["reference"]["architecture"]
    assert "never trained" in records["copy"]["reference"]["architecture"]


def test_a_reference_row_is_scored_only_on_what_it_stands_for(suite):
    _, _, records = suite
    scored = {label: {name.split(".")[0] for name in record["scores"]} for label, record in records.items()}
    assert scored["copy"] == {"counterfactual@probe"}
    assert scored["mean_image"] == {"reconstruction", "counterfactual@probe"}
    assert scored["supervised"] == scored["untrained"] == {"dci@reg", "mcc@pearson"}
    assert set(records["copy"]["not_applicable"]) == {"dci@reg", "mcc@pearson", "graph@card"}
    assert records["copy"]["not_applicable"]["dci@reg"] == "reference row 'copy' stands for counterfactual@probe only"
    assert set(records["supervised"]["not_applicable"]) == {"counterfactual@probe", "graph@card"}
    assert records["mean_image"]["metrics"].keys() == {"counterfactual@probe"}
    assert "reconstruction.mse" in records["beta_vae"]["scores"] and "dci@reg.disentanglement" in records["beta_vae"]["scores"]


def test_a_cell_with_a_reference_row_is_complete_not_partial(suite):
    config, workdir, records = suite
    assert all(record["status"] == "ok" and "partial" not in record and "metric_errors" not in record
               for record in records.values())
    assert {planned.cell.label: planned.state for planned in plan(config, workdir)} == dict.fromkeys(records, "done")
    grids = {label: (cell_dir(workdir, cell.hash) / "interventions.npz").exists()
             for label, cell in ((c.label, c) for c in config.cells())}
    assert grids == {"beta_vae": True, "copy": True, "mean_image": True, "supervised": False, "untrained": False}


def test_copy_scores_the_counterfactual_of_an_unchanged_source(suite):
    """Copy's do() and null do() both return x: its reconstruction error is 0 and nothing is shifted."""
    _, _, records = suite
    scores = records["copy"]["scores"]
    assert scores["counterfactual@probe.reconstruction_mse"] == 0.0
    assert scores["counterfactual@probe.non_descendant_shift"] == 0.0
    assert scores["counterfactual@probe.counterfactual_mse"] > 0
