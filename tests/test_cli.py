"""The crlbench command line, run as a user would."""

import subprocess
import sys

import pytest
from PIL import Image

from crlbench.cli import main
from crlbench.datasets.cache import CacheCorruptedWarning


def crlbench(*args, workdir):
    return subprocess.run(
        [sys.executable, "-m", "crlbench", *args, "--workdir", str(workdir)], capture_output=True, text=True
    )


def test_list_shows_the_three_datasets(capsys):
    assert main(["list", "datasets"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in ("pendulum", "flow", "causal_circuit"))


def test_generate_reports_split_sizes_then_hits_the_cache(tmp_path):
    args = ("data", "generate", "causal_circuit", "--size", "16", "--set", "n_train=12",
            "--set", "n_val=3", "--set", "n_test=3")
    first = crlbench(*args, workdir=tmp_path)
    assert first.returncode == 0, first.stderr
    assert "generated" in first.stdout and "train 12, val 3, test 3" in first.stdout
    assert "loaded from cache" in crlbench(*args, workdir=tmp_path).stdout


def test_show_writes_samples_and_one_intervention_strip_per_factor(tmp_path):
    out = tmp_path / "grid.png"
    result = subprocess.run(
        [sys.executable, "-m", "crlbench", "data", "show", "configs/datasets/pendulum.yaml", "--size", "32",
         "--workdir", str(tmp_path), "--out", str(out), "--count", "4"],
        capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stderr
    assert Image.open(out).width > 4 * 64  # four tiles of 32 pixels, scaled x2


def test_bad_input_exits_2_with_the_accepted_values(tmp_path):
    result = crlbench("data", "generate", "pendulum", "--set", "split_rule=odd", workdir=tmp_path)
    assert result.returncode == 2
    assert "'split_rule' must be one of reference, random; got 'odd'" in result.stderr
    assert not any((tmp_path / "data").glob("*")) if (tmp_path / "data").exists() else True
    result = crlbench("data", "generate", "flw", workdir=tmp_path)
    assert result.returncode == 2 and "did you mean 'flow'" in result.stderr


def test_show_draws_one_sample_row_and_one_strip_per_factor(tmp_path):
    out = tmp_path / "grid.png"
    assert main(["data", "show", "flow", "--size", "16", "--count", "3", "--workdir", str(tmp_path), "--out", str(out)]) == 0
    from crlbench.reports.preview import HEADER, PADDING

    assert Image.open(out).height == HEADER + 5 * (16 * 2 + PADDING)  # samples + 4 factors, tiles scaled x2


def test_bad_output_name_is_refused_before_any_generation(tmp_path, capsys):
    assert main(["data", "show", "pendulum", "--workdir", str(tmp_path), "--out", str(tmp_path / "grid.txt")]) == 2
    assert "unknown image format; use a file name ending in .png" in capsys.readouterr().err
    assert not (tmp_path / "data").exists()


def test_negative_seed_and_empty_splits_are_refused(tmp_path, capsys):
    assert main(["data", "generate", "flow", "--seed", "-1", "--workdir", str(tmp_path)]) == 2
    assert "parameter 'seed' must be a non-negative integer; got -1" in capsys.readouterr().err
    assert main(["data", "generate", "pendulum", "--set", "split_rule=random", "--set", "test_fraction=1e-9",
                 "--workdir", str(tmp_path)]) == 2
    assert "parameter 'test_fraction' = 1e-09 leaves an empty split" in capsys.readouterr().err


def test_config_errors_name_the_file(tmp_path, capsys):
    config = tmp_path / "bad.yaml"
    config.write_text("name: pendulum\nparams: {size: 0}\n")
    assert main(["data", "generate", str(config), "--workdir", str(tmp_path)]) == 2
    assert f"{config}: key 'params': dataset 'pendulum': parameter 'size' must be a positive integer" in capsys.readouterr().err
    config.write_bytes(b"\xff\xfe\x00bad")
    assert main(["data", "generate", str(config), "--workdir", str(tmp_path)]) == 2
    assert "not valid YAML text" in capsys.readouterr().err
    plugin = tmp_path / "broken_plugin_module.py"
    plugin.write_text("raise RuntimeError('boom')\n")
    config.write_text("name: pendulum\nplugins: [broken_plugin_module]\n")
    import sys

    sys.path.insert(0, str(tmp_path))
    try:
        assert main(["data", "generate", str(config), "--workdir", str(tmp_path)]) == 2
    finally:
        sys.path.remove(str(tmp_path))
    assert "plugin module 'broken_plugin_module' could not be imported (RuntimeError: boom)" in capsys.readouterr().err


def test_a_corrupted_cache_is_not_reported_as_a_cache_hit(tmp_path, capsys):
    args = ["data", "generate", "causal_circuit", "--size", "8", "--set", "n_train=6", "--set", "n_val=2",
            "--set", "n_test=2", "--workdir", str(tmp_path)]
    assert main(args) == 0
    npz = next((tmp_path / "data").glob("*.npz"))
    npz.write_bytes(npz.read_bytes()[:100])
    capsys.readouterr()
    with pytest.warns(CacheCorruptedWarning):
        assert main(args) == 0
    assert "generated in" in capsys.readouterr().out


def test_failed_cells_have_their_own_exit_status_apart_from_bad_input(tmp_path, data_dir, monkeypatch, capsys):
    # Exit 2 is bad input; a suite that ran with N failed cells exits 10 + N (at most 99).
    import yaml

    from crlbench.cli import EXIT_FAILED, EXIT_INPUT, failed_status
    from suite_fixture import PLUGINS, TINY

    monkeypatch.syspath_prepend(str(PLUGINS))
    workdir = tmp_path / "work"
    workdir.mkdir()
    (workdir / "data").symlink_to(data_dir, target_is_directory=True)
    suite = tmp_path / "failing.yaml"
    suite.write_text(yaml.safe_dump({**TINY, "plugins": ["crl_plugin_models"], "seeds": [0, 1], "metrics": ["mcc@pearson"],
                                     "models": [{"name": "linear_ae", "label": "exploding",
                                                 "hyperparameters": {"explode_at_step": 0}}]}))
    arguments = ["suite", str(suite), "--workdir", str(workdir), "--no-tracking"]
    try:
        assert main(arguments) == EXIT_FAILED + 2 == 12
        out = capsys.readouterr().out
        assert "0 ran, 0 already done, 2 failed" in out and out.count("failed: pendulum/exploding/seed") == 2
        assert main(arguments[:2] + ["--workdir", str(workdir), "--workers", "0"]) == EXIT_INPUT  # bad input: 2
    finally:
        sys.modules.pop("crl_plugin_models", None)
    assert [failed_status(n) for n in (0, 1, 2, 89, 90, 500)] == [0, 11, 12, 99, 99, 99]


def test_version_is_the_installed_distributions():
    import importlib.metadata

    import crlbench

    result = subprocess.run([sys.executable, "-m", "crlbench", "--version"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"crlbench {crlbench.__version__}"
    assert importlib.metadata.version("crlbench") == crlbench.__version__


def test_a_reader_that_closes_the_pipe_early_ends_the_output_quietly():
    import os

    from crlbench.cli import EXIT_BROKEN_PIPE

    # A pipe whose reader is already gone: every write fails, deterministically.
    read, write = os.pipe()
    os.close(read)
    try:
        closed = subprocess.run([sys.executable, "-m", "crlbench", "list", "metrics"], stdout=write,
                                stderr=subprocess.PIPE, text=True, timeout=300)
    finally:
        os.close(write)
    assert closed.returncode == EXIT_BROKEN_PIPE == 141
    assert closed.stderr == ""
    # And as a user types it: head's first line, no traceback (crlbench may finish writing before head exits).
    shell = subprocess.run(["bash", "-c", f"'{sys.executable}' -m crlbench list metrics | head -1; "
                                          "echo \"status ${PIPESTATUS[0]}\" >&2"],
                           capture_output=True, text=True, timeout=300)
    assert shell.stdout == "metrics:\n"
    assert "Traceback" not in shell.stderr and "BrokenPipeError" not in shell.stderr
    assert shell.stderr.strip() in ("status 0", "status 141")


def test_help_names_the_environment_default_and_the_ui_port(capsys):
    from crlbench.cli import build_parser

    parser = build_parser()
    for command in ("suite", "run", "report", "tune", "ui"):
        with pytest.raises(SystemExit):
            parser.parse_args([command, "--help"])
        text = " ".join(capsys.readouterr().out.split())
        assert "(default: $CRLBENCH_WORKDIR or runs)" in text, command
        assert "(default: runs)" not in text
    with pytest.raises(SystemExit):
        parser.parse_args(["ui", "--help"])
    assert "port of the UI on 127.0.0.1 (default: 5000)" in " ".join(capsys.readouterr().out.split())
    for command in ("suite", "run"):
        with pytest.raises(SystemExit):
            parser.parse_args([command, "--help"])
        assert "--keep-checkpoints" in capsys.readouterr().out


def test_list_imports_plugin_modules_given_with_plugins(monkeypatch, capsys):
    from suite_fixture import PLUGINS

    monkeypatch.syspath_prepend(str(PLUGINS))
    try:
        assert main(["list", "models", "--plugins", "crl_plugin_models"]) == 0
        assert "linear_ae" in capsys.readouterr().out
    finally:
        sys.modules.pop("crl_plugin_models", None)
    assert main(["list", "--plugins", "no_such_plugin_module_17"]) == 2
    assert "--plugins: plugin module 'no_such_plugin_module_17' could not be imported" in capsys.readouterr().err


def test_run_prints_the_scores_and_where_the_record_report_and_mlflow_run_are(tmp_path, data_dir, capsys):
    import re

    workdir = tmp_path / "work"
    workdir.mkdir()
    (workdir / "data").symlink_to(data_dir, target_is_directory=True)
    assert main(["run", "--dataset", "pendulum", "--data", "size=32", "--model", "beta_vae", "--steps", "3",
                 "--batch-size", "16", "--metric", "mcc@pearson", "--workdir", str(workdir)]) == 0
    out = capsys.readouterr().out
    assert "1 ran" in out
    rows = {line.split()[0]: line for line in out.splitlines() if line.startswith("  ") and len(line.split()) == 2}
    assert {"score", "reconstruction.mse", "mcc@pearson.mcc"} <= set(rows)
    assert len({len(rows[name]) for name in ("score", "reconstruction.mse", "mcc@pearson.mcc")}) == 1  # aligned
    (record,) = (workdir / "cells").glob("*/result.json")
    assert f"record:  {record}" in out
    assert f"report:  crlbench report {workdir / 'cells'} --out reports/run" in out
    assert re.search(r"MLflow:  experiment crlbench/run, run [0-9a-f]{32} ", out)

    # --dry-run says how much the work directory holds.
    suite = tmp_path / "s.yaml"
    suite.write_text("name: s\nseeds: [0]\nbudget: {steps: 3}\ndatasets: [{name: pendulum, params: {size: 32}}]\n"
                     "models: [{name: beta_vae}]\nmetrics: [mcc@pearson]\n")
    assert main(["suite", str(suite), "--workdir", str(workdir), "--dry-run"]) == 0
    assert re.search(r"work directory size: [0-9.]+ MB \([0-9.]+ MB of it checkpoints\)", capsys.readouterr().out)


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def listening(port: int) -> bool:
    import socket

    with socket.socket() as connection:
        return connection.connect_ex(("127.0.0.1", port)) == 0


def start_ui(workdir, port: int, **popen) -> subprocess.Popen:
    """``crlbench ui`` on ``port``, returned once its server listens (within 120 s)."""
    import time

    ui = subprocess.Popen([sys.executable, "-m", "crlbench", "ui", "--port", str(port), "--workdir", str(workdir)],
                          stderr=subprocess.DEVNULL, **popen)
    deadline = time.monotonic() + 120
    while not listening(port):
        assert ui.poll() is None and time.monotonic() < deadline, "the MLflow server did not start"
        time.sleep(0.5)
    return ui


def test_ui_prints_the_experiment_urls_and_stops_its_server_with_it(tmp_path):
    import os
    import signal
    import time

    from mlflow import MlflowClient

    from crlbench.tracking.mlflow_runs import default_tracking_uri

    client = MlflowClient(tracking_uri=default_tracking_uri(tmp_path))
    experiment_id = client.create_experiment("crlbench/quick")
    client.create_experiment("not-crlbench")
    port = free_port()
    ui = None
    try:
        ui = start_ui(tmp_path, port, stdout=subprocess.PIPE, text=True)
        os.kill(ui.pid, signal.SIGTERM)
        assert ui.wait(timeout=15) == 128 + signal.SIGTERM
        deadline = time.monotonic() + 5
        while listening(port):
            assert time.monotonic() < deadline, "the MLflow server outlived crlbench ui"
            time.sleep(0.2)
    finally:
        if ui is not None and ui.poll() is None:
            ui.kill()
    out = ui.stdout.read()
    assert f"crlbench/quick: http://127.0.0.1:{port}/#/experiments/{experiment_id}/runs" in out
    assert "not-crlbench" not in out
    assert client.get_experiment(experiment_id).tags.get("mlflow.experimentKind") == "custom_model_development"


def test_ui_killed_with_sigkill_takes_its_server_and_the_servers_children_down(tmp_path):
    """Issue 24: ``kill -9`` of ``crlbench ui`` left the MLflow server and its children holding the port. Its
    supervisor (crlbench.core.supervisor), the server's direct parent and group leader, ends the group."""
    import os
    import signal

    from test_executor import session_processes, wait_until_gone

    port = free_port()
    ui = start_ui(tmp_path, port, stdout=subprocess.DEVNULL, start_new_session=True)
    try:
        assert len(session_processes(ui.pid)) >= 3  # ui, the supervisor, the server (and its workers)
        ui.kill()  # SIGKILL, crlbench ui only
        ui.wait()
        left = wait_until_gone(ui.pid, timeout=20)
        assert not left, f"processes left behind by the killed ui: {left}"
        assert not listening(port)
    finally:
        if session_processes(ui.pid):
            os.killpg(ui.pid, signal.SIGKILL)


def test_ui_refuses_a_port_in_use_in_one_line(tmp_path):
    import socket

    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        result = subprocess.run([sys.executable, "-m", "crlbench", "ui", "--port", str(port), "--workdir", str(tmp_path)],
                                capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "starting" not in result.stdout
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"crlbench: error: port {port} on 127.0.0.1 is in use") and "--port" in line


# --- crlbench run trains with the settings a suite would (configs/models/MODEL.yaml) ----------------------------

def single_run_cell(*flags):
    """The cell ``crlbench run`` would train (resolved and hashed as a suite's), without training it."""
    from crlbench.cli import build_parser, single_run_suite

    args = build_parser().parse_args(["run", *flags])
    (cell,) = single_run_suite(args).cells()
    return cell


def suite_cell(dataset, model_file, seed=0, steps=10):
    from crlbench.suites.suite_config import suite_from_dict
    from crlbench.suites.model_files import model_files_folder

    suite = suite_from_dict({"name": "run", "seeds": [seed], "budget": {"steps": steps, "batch_size": 64},
                             "datasets": [{"name": dataset}],
                             "models": [{"config": str(model_files_folder() / model_file)}],
                             "metrics": ["dci@reg", "mcc@pearson", "irs@dlib", "r2@linear", "mic@aligned",
                                         "counterfactual@probe"]},
                            where="test")
    return suite.cells()[0]


def test_run_trains_ivae_with_the_learning_rate_of_its_model_file():
    """configs/models/ivae.yaml sets lr 1e-3 (the Config's reference 0.01 diverged on images): run uses it."""
    cell = single_run_cell("--dataset", "pendulum", "--model", "ivae", "--steps", "10")
    assert cell.identity()["model"]["hyperparameters"]["lr"] == 0.001
    assert cell.reference_budget == {"epochs": 20}


def test_run_trains_the_same_cell_as_a_suite_naming_the_model_file():
    """Same hyperparameters (per dataset too), reference batch size, rescaled steps and hash as a suite's cell."""
    for dataset, model, file in (("pendulum", "dear", "dear.yaml"), ("causal_circuit", "icm_vae", "icm_vae.yaml")):
        cell = single_run_cell("--dataset", dataset, "--model", model, "--steps", "10")
        assert cell.hash == suite_cell(dataset, file).hash
    dear = single_run_cell("--dataset", "pendulum", "--model", "dear", "--steps", "10")
    assert (dear.budget.batch_size, dear.budget.steps) == (128, 5)  # DEAR's batch 128, as many images as 10 x 64
    circuit = single_run_cell("--dataset", "causal_circuit", "--model", "icm_vae", "--steps", "10")
    assert circuit.hyperparameters["concept_dim"] == 32 and circuit.budget.batch_size == 100


def test_run_flags_win_over_the_model_file():
    cell = single_run_cell("--dataset", "causal_circuit", "--model", "icm_vae", "--steps", "10", "--set", "beta=2",
                           "--batch-size", "32")
    assert cell.identity()["model"]["hyperparameters"]["beta"] == 2.0  # over the file's per-dataset 0.05
    assert (cell.budget.batch_size, cell.budget.steps) == (32, 10)
    bare = single_run_cell("--dataset", "pendulum", "--model", "ivae", "--steps", "10", "--model-file", "none")
    assert bare.identity()["model"]["hyperparameters"]["lr"] == 0.01 and bare.reference_budget is None


def test_the_model_files_are_package_data():
    """A non-editable install ships configs/models/*.yaml as crlbench/configs/models (tests/test_namespace.py installs
    one); in this checkout they are found beside the package."""
    import tomllib
    from pathlib import Path

    from crlbench.suites.model_files import model_file

    root = Path(__file__).resolve().parents[1]
    setuptools = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert setuptools["package-dir"]["crlbench.configs"] == "configs"
    assert "crlbench.configs.models" in setuptools["packages"]
    assert setuptools["package-data"]["crlbench.configs.models"] == ["*.yaml"]
    assert model_file("ivae") == root / "configs" / "models" / "ivae.yaml"
    assert model_file("no_such_model") is None
