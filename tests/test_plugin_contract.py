"""The plugin contract of crlbench.training.model.CausalModel: an unaligned method written from it runs
every metric; a failing metric keeps the other scores; an edited plugin's finished cells warn."""

import hashlib
import logging
import sys

import pytest
import torch

from crlbench.core.errors import ConfigError
from crlbench.suites.results import cell_dir, load_records, read_result
from crlbench.suites.suite import plan, run_suite
from crlbench.suites.suite_config import load_suite
from suite_fixture import PLUGINS, write_suite

PLUGIN_MODULES = ("crl_plugin_models", "crl_plugin_unaligned", "crl_plugin_metrics")


@pytest.fixture
def plugin_path(monkeypatch):
    """The test plugins importable; the names they register are dropped afterwards (as in test_pairs), so that
    later tests see only the built-in models and metrics (the reference rows' latent metrics are read from
    the registry)."""
    from crlbench.core import registry

    monkeypatch.syspath_prepend(str(PLUGINS))
    for kind in registry.KINDS:
        names = registry.registry(kind)
        monkeypatch.setattr(names, "_objects", dict(names._objects))
        monkeypatch.setattr(names, "_registered_by", dict(names._registered_by))
    yield
    for name in PLUGIN_MODULES:
        sys.modules.pop(name, None)


def test_the_base_class_gives_an_unaligned_model_its_alignment(tmp_path, plugin_path):
    from crlbench.core import registry
    from crlbench.metrics.interventional import concept_value

    import crl_plugin_unaligned  # noqa: F401 - registers linear_unaligned

    card = registry.dataset("pendulum", cache_dir=tmp_path, size=32).card
    model = registry.model("linear_unaligned", card)
    images = torch.rand(3, 3, 32, 32)
    with pytest.raises(ConfigError, match="set_alignment"):
        concept_value(model, images, 0)
    with pytest.raises(ConfigError, match="one code in 0..5 per factor"):
        model.set_alignment([0, 1])
    with pytest.raises(ConfigError, match="one code in 0..5 per factor"):
        model.set_alignment([0, 1, 2, 6])
    model.set_alignment([5, 0, 3, 1])
    assert model.factor_codes.dtype == torch.long and model.factor_codes.tolist() == [5, 0, 3, 1]
    assert [model.matched_code(k) for k in range(4)] == [5, 0, 3, 1]
    assert "factor_codes" not in model.state_dict()  # checkpoints stay as they were
    assert torch.equal(concept_value(model, images, 0), model.encode(images)[:, 0, 5])
    model.set_alignment([1, 2, 3, 4])  # again: replaced
    assert model.factor_codes.tolist() == [1, 2, 3, 4]
    assert model.intervene(images, 2, torch.zeros(3)).shape == images.shape


def test_an_unaligned_plugin_method_runs_counterfactual_probe(tmp_path, plugin_path):
    path = write_suite(tmp_path, plugins=["crl_plugin_unaligned"], models=[{"name": "linear_unaligned"}],
                       metrics=["mcc@pearson", {"name": "counterfactual@probe",
                                                "options": {"n_samples": 16, "probe_samples": 60}}])
    summary = run_suite(load_suite(path), tmp_path / "work", progress=False)
    assert (summary.ok, summary.failed) == (1, 0), summary.failures
    record = summary.records[0]
    assert record["status"] == "ok" and "metric_errors" not in record and "partial" not in record
    assert record["alignment"]["kind"] == "matched" and len(record["alignment"]["codes"]) == 4
    assert record["scores"]["counterfactual@probe.counterfactual_mse"] >= 0
    assert 0 <= record["scores"]["counterfactual@probe.target_error"] <= 1
    assert record["given"] == [] and record["latent_size"] == 6
    source = record["model_source"]
    assert source["module"] == "crl_plugin_unaligned"
    assert source["sha256"] == hashlib.sha256((PLUGINS / "crl_plugin_unaligned.py").read_bytes()).hexdigest()


def test_a_failing_metric_keeps_the_other_scores_and_names_its_error(tmp_path, plugin_path, caplog):
    import crl_plugin_metrics

    from crlbench.reports.report import write_report

    crl_plugin_metrics.FAIL = True
    path = write_suite(tmp_path, plugins=["crl_plugin_models", "crl_plugin_metrics"],
                       models=[{"name": "linear_ae"}], metrics=["mcc@pearson", "broken@test", "dci@reg"])
    config = load_suite(path)
    workdir = tmp_path / "work"
    with caplog.at_level(logging.WARNING):
        summary = run_suite(config, workdir, progress=False)
    assert summary.ok == 1
    directory = cell_dir(workdir, config.cells()[0].hash)
    record = read_result(directory)
    assert record["status"] == "ok" and record["partial"] is True
    assert set(record["metric_errors"]) == {"broken@test"}
    error = record["metric_errors"]["broken@test"]
    assert error["type"] == "RuntimeError" and error["message"] == "broken@test was asked to fail"
    assert "metric broken@test failed" in caplog.text
    assert 0 <= record["scores"]["mcc@pearson.mcc"] <= 1 and "dci@reg.disentanglement" in record["scores"]
    assert not any(key.startswith("broken@test") for key in record["scores"])
    assert set(record["metrics"]) == {"mcc@pearson", "dci@reg"}
    assert set(record["timings"]["metrics_s"]) == {"mcc@pearson", "broken@test", "dci@reg"}

    write_report(load_records(workdir), tmp_path / "report", title="partial")  # the report uses its scores
    assert "linear_ae" in (tmp_path / "report" / "leaderboard.md").read_text()

    assert [p.state for p in plan(config, workdir)] == ["partial"]  # not done: retried on request
    again = run_suite(config, workdir, progress=False)
    assert (again.ok, again.cached) == (0, 1) and read_result(directory)["partial"] is True

    crl_plugin_metrics.FAIL = False  # the metric is fixed: --retry-failed computes only what is missing
    stored = {name: (directory / "metrics" / f"{name}.json").stat().st_mtime_ns for name in ("mcc@pearson", "dci@reg")}
    checkpoint = (directory / "checkpoint" / "last.pt").stat().st_mtime_ns
    fixed = run_suite(config, workdir, retry_failed=True, progress=False)
    assert fixed.ok == 1
    record = read_result(directory)
    assert "partial" not in record and "metric_errors" not in record
    assert record["scores"]["broken@test.mean_abs"] >= 0
    assert stored == {name: (directory / "metrics" / f"{name}.json").stat().st_mtime_ns for name in stored}
    assert (directory / "checkpoint" / "last.pt").stat().st_mtime_ns == checkpoint
    assert [p.state for p in plan(config, workdir)] == ["done"]


def test_the_cli_reports_a_partial_cell_as_partial_in_every_command(tmp_path, plugin_path, capsys):
    """Issue 24: a partial cell (one metric raised) made ``suite`` print "0 failed" and exit 0, a rerun say
    "already done" and ``--dry-run`` say "failed". All three say partial now, and ``suite`` exits 3."""
    import crl_plugin_metrics

    from crlbench.cli import EXIT_PARTIAL, main

    crl_plugin_metrics.FAIL = True
    path = write_suite(tmp_path, plugins=["crl_plugin_models", "crl_plugin_metrics"],
                       models=[{"name": "linear_ae"}], metrics=["mcc@pearson", "broken@test"])
    command = ["suite", str(path), "--workdir", str(tmp_path / "work"), "--no-tracking"]
    assert main(command) == EXIT_PARTIAL
    first = capsys.readouterr().out
    assert "1 ran, 0 already done, 1 partial (a metric failed), 0 failed" in first
    assert main(command) == EXIT_PARTIAL  # a rerun: nothing trained, the cell still partial
    again = capsys.readouterr().out
    assert "0 ran, 1 already done, 1 partial (a metric failed), 0 failed" in again
    assert main([*command, "--dry-run"]) == 0
    dry = capsys.readouterr().out
    assert "partial  pendulum/linear_ae/seed0" in dry and "0 done, 0 stale, 1 partial, 0 failed" in dry
    crl_plugin_metrics.FAIL = False


def test_an_edited_plugin_warns_that_its_finished_cells_are_reused(tmp_path, plugin_path, monkeypatch, caplog):
    module = tmp_path / "plugin_src" / "crl_plugin_edited.py"
    module.parent.mkdir()
    module.write_text('"""A plugin the test edits."""\n'
                      "from crl_plugin_models import LinearAutoencoder\n"
                      "from crlbench.core.registry import register_model\n\n\n"
                      '@register_model("edited_ae")\n'
                      "class EditedAutoencoder(LinearAutoencoder):\n"
                      '    name = "edited_ae"\n')
    monkeypatch.syspath_prepend(str(module.parent))
    try:
        path = write_suite(tmp_path, plugins=["crl_plugin_edited"], models=[{"name": "edited_ae"}],
                           metrics=["mcc@pearson"])
        config = load_suite(path)
        workdir = tmp_path / "work"
        summary = run_suite(config, workdir, progress=False)
        assert summary.ok == 1
        cell = config.cells()[0]
        record = read_result(cell_dir(workdir, cell.hash))
        assert record["model_source"]["sha256"] == hashlib.sha256(module.read_bytes()).hexdigest()
        assert record["model_source"]["file"] == str(module.resolve())

        with caplog.at_level(logging.WARNING, logger="crlbench.suites.suite"):
            assert [p.state for p in plan(config, workdir)] == ["done"]
        assert "changed since" not in caplog.text  # unchanged: no warning

        module.write_text(module.read_text() + "    # edited: a change that alters training, version not bumped\n")
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="crlbench.suites.suite"):
            again = run_suite(config, workdir, progress=False)
        assert again.cached == 1  # still reused: the warning says so
        warnings = [r.getMessage() for r in caplog.records if "changed since" in r.getMessage()]
        assert len(warnings) == 1
        assert "'edited_ae'" in warnings[0] and str(module.resolve()) in warnings[0]
        assert cell.title in warnings[0] and cell.hash in warnings[0] and "version" in warnings[0]
    finally:
        sys.modules.pop("crl_plugin_edited", None)


def test_a_plugin_edited_in_its_docstrings_only_since_the_records_commit_does_not_warn(tmp_path, plugin_path,
                                                                                      monkeypatch, caplog):
    import json
    import subprocess

    source = tmp_path / "plugin_src"
    module = source / "crl_plugin_documented.py"
    source.mkdir()
    module.write_text('"""A plugin the test edits."""\n'
                      "from crl_plugin_models import LinearAutoencoder\n"
                      "from crlbench.core.registry import register_model\n\n\n"
                      '@register_model("documented_ae")\n'
                      "class DocumentedAutoencoder(LinearAutoencoder):\n"
                      '    """The linear autoencoder under another name."""\n'
                      '    name = "documented_ae"\n')
    git = ["git", "-C", str(source), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", module.name], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "plugin"], check=True)
    commit = subprocess.run([*git, "rev-parse", "HEAD"], check=True, capture_output=True, text=True).stdout.strip()
    monkeypatch.syspath_prepend(str(source))
    try:
        config = load_suite(write_suite(tmp_path, plugins=["crl_plugin_documented"],
                                        models=[{"name": "documented_ae"}], metrics=["mcc@pearson"]))
        workdir = tmp_path / "work"
        assert run_suite(config, workdir, progress=False).ok == 1
        result = cell_dir(workdir, config.cells()[0].hash) / "result.json"
        record = json.loads(result.read_text())
        record["provenance"]["git_commit"] = commit  # as if run from the plugin's repository at that commit
        result.write_text(json.dumps(record))

        def warnings_after(text):
            module.write_text(text)
            caplog.clear()
            with caplog.at_level(logging.WARNING, logger="crlbench.suites.suite"):
                assert [p.state for p in plan(config, workdir)] == ["done"]
            return [r.getMessage() for r in caplog.records if "changed since" in r.getMessage()]

        original = module.read_text()
        documented = original.replace('"""A plugin the test edits."""', '"""A plugin, edited: ::\n\n    docs\n"""')
        assert warnings_after(documented.replace('    name = "documented_ae"',
                                                 '    # a comment\n    name = "documented_ae"')) == []
        assert len(warnings_after(original.replace('name = "documented_ae"', 'name = "documented_ae"; depth = 2'))) == 1
        record["provenance"]["git_commit"] = commit + "+dirty"  # an uncommitted tree: its file cannot be read back
        result.write_text(json.dumps(record))
        assert len(warnings_after(documented)) == 1
    finally:
        sys.modules.pop("crl_plugin_documented", None)
