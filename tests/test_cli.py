"""The crlbench command line, run as a user would."""

import re
import subprocess
import sys
from pathlib import Path

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


def output_lines(process: subprocess.Popen):
    """A queue of ``process``'s stdout lines as they come (read by a thread), for reads with a timeout."""
    import queue
    import threading

    lines = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in process.stdout], daemon=True).start()
    return lines


def test_ui_prints_the_urls_once_its_server_answers_and_stops_its_server_with_it(tmp_path):
    """Issue 26: the URL came about 27 s before the server answered. Now "starting", then "ready after N s"
    when the server answers HTTP, then the experiments' URLs in the model-training view."""
    import os
    import queue
    import signal
    import time
    import urllib.request

    from mlflow import MlflowClient

    from crlbench.tracking.mlflow_runs import default_tracking_uri
    from crlbench.tracking.ui import experiment_url

    client = MlflowClient(tracking_uri=default_tracking_uri(tmp_path))
    experiment_id = client.create_experiment("crlbench/quick")
    client.create_experiment("not-crlbench")
    port = free_port()
    ui = subprocess.Popen([sys.executable, "-m", "crlbench", "ui", "--port", str(port), "--workdir", str(tmp_path)],
                          stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        lines, seen = output_lines(ui), []
        deadline = time.monotonic() + 120
        while not (seen and seen[-1].startswith("ready after ")):
            try:
                seen.append(lines.get(timeout=max(deadline - time.monotonic(), 0.1)))
            except queue.Empty:
                pytest.fail(f"crlbench ui printed no 'ready after' line within 120 s: {seen}")
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as answer:  # at once: it answers
            assert answer.status == 200
        assert seen[0].startswith("starting the MLflow UI") and not any("#/experiments" in line for line in seen)
        assert re.fullmatch(r"ready after \d+ s; .*:\n", seen[-1])
        url_line = lines.get(timeout=10)
        while "#/experiments/" not in url_line:  # the server's own log lines share the output
            url_line = lines.get(timeout=10)
        os.kill(ui.pid, signal.SIGTERM)
        assert ui.wait(timeout=15) == 128 + signal.SIGTERM
        deadline = time.monotonic() + 5
        while listening(port):
            assert time.monotonic() < deadline, "the MLflow server outlived crlbench ui"
            time.sleep(0.2)
    finally:
        if ui.poll() is None:
            ui.kill()
    url = experiment_url(f"http://127.0.0.1:{port}", experiment_id)
    assert url_line == f"  crlbench/quick: {url}\n"
    assert "workflowType=machine_learning" in url and "orderByKey=tags.%60mlflow.runName%60" in url
    rest = ui.stdout.read()
    assert "not-crlbench" not in rest
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


def test_ui_urls_open_the_runs_table_in_the_model_training_view_with_the_cells_flat():
    """MLflow 3 reads workflowType from the address; sorted by name, child runs are not nested under (and
    collapsed in) their parent run (crlbench.tracking.ui)."""
    from crlbench.tracking.ui import experiment_url

    assert experiment_url("http://127.0.0.1:5000", "7") == (
        "http://127.0.0.1:5000/#/experiments/7/runs?workflowType=machine_learning"
        "&orderByKey=tags.%60mlflow.runName%60&orderByAsc=true")
    assert experiment_url("http://127.0.0.1:5000/") == "http://127.0.0.1:5000/#/experiments?workflowType=machine_learning"


@pytest.fixture
def idle_process():
    """A process that runs and never answers HTTP (a server still starting)."""
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield process
    process.kill()
    process.wait()


def test_waiting_for_the_ui_returns_once_the_server_answers_any_http(idle_process):
    import http.server
    import threading
    import time

    from crlbench.tracking.ui import wait_until_answering

    port = free_port()
    servers = []

    def serve_later():
        time.sleep(0.6)
        servers.append(http.server.ThreadingHTTPServer(("127.0.0.1", port), http.server.BaseHTTPRequestHandler))
        servers[0].serve_forever()  # answers 501 to a GET: an answer all the same

    threading.Thread(target=serve_later, daemon=True).start()
    try:
        seconds = wait_until_answering(f"http://127.0.0.1:{port}/health", idle_process, timeout_s=30, poll_s=0.1)
    finally:
        while not servers:
            time.sleep(0.05)
        servers[0].shutdown()
        servers[0].server_close()
    assert 0.5 < seconds < 10


def test_waiting_for_the_ui_stops_when_its_server_exits():
    from crlbench.tracking.ui import ServerNotReady, wait_until_answering

    exited = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
    with pytest.raises(ServerNotReady, match=r"exited \(status 3\) before it answered"):
        wait_until_answering(f"http://127.0.0.1:{free_port()}/health", exited, timeout_s=60, poll_s=0.1)


def test_waiting_for_the_ui_gives_up_after_its_timeout(idle_process):
    import time

    from crlbench.tracking.ui import ServerNotReady, wait_until_answering

    start = time.monotonic()
    with pytest.raises(ServerNotReady, match=r"did not answer .* within 0.5 s.*--start-timeout"):
        wait_until_answering(f"http://127.0.0.1:{free_port()}/health", idle_process, timeout_s=0.5, poll_s=0.1)
    assert time.monotonic() - start < 5


@pytest.mark.parametrize("server, message", [
    ("import os, time; open(PID, 'w').write(str(os.getpid())); time.sleep(60)", "did not answer"),
    ("import os; open(PID, 'w').write(str(os.getpid())); raise SystemExit(4)", "exited (status 4)"),
])
def test_ui_prints_no_url_for_a_server_that_never_answers_and_leaves_no_process(tmp_path, monkeypatch, capsys,
                                                                               server, message):
    import time

    from crlbench.tracking import mlflow_runs

    pid_file = tmp_path / "server.pid"
    code = server.replace("PID", repr(str(pid_file)))
    monkeypatch.setattr(mlflow_runs, "ui_command", lambda workdir, port: [sys.executable, "-c", code])
    assert main(["ui", "--workdir", str(tmp_path), "--port", str(free_port()), "--start-timeout", "5"]) == 2
    captured = capsys.readouterr()
    assert "starting the MLflow UI" in captured.out and "#/experiments" not in captured.out
    assert message in captured.err
    pid = int(pid_file.read_text())
    deadline = time.monotonic() + 10
    while Path(f"/proc/{pid}").exists() and Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
        assert time.monotonic() < deadline, "the server outlived crlbench ui"
        time.sleep(0.1)


def test_ui_refuses_a_start_timeout_that_is_not_positive(tmp_path, capsys):
    assert main(["ui", "--workdir", str(tmp_path), "--port", str(free_port()), "--start-timeout", "0"]) == 2
    assert "--start-timeout must be a positive number of seconds; got 0" in capsys.readouterr().err
    assert not (tmp_path / "mlflow.db").exists()


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


# --- crlbench run --plugins, and its errors in the flags' terms --------------------------------------------------

@pytest.fixture
def test_plugins(monkeypatch):
    """tests/plugins importable; the names they register dropped afterwards."""
    from crlbench.core import registry
    from suite_fixture import PLUGINS

    monkeypatch.syspath_prepend(str(PLUGINS))
    for kind in registry.KINDS:
        names = registry.registry(kind)
        monkeypatch.setattr(names, "_objects", dict(names._objects))
        monkeypatch.setattr(names, "_registered_by", dict(names._registered_by))
    yield
    sys.modules.pop("crl_plugin_unaligned", None)


def test_run_imports_the_plugins_it_is_given_as_a_suite_does(test_plugins):
    cell = single_run_cell("--plugins", "crl_plugin_unaligned", "--dataset", "pendulum", "--model",
                           "linear_unaligned", "--steps", "10")
    assert cell.model == "linear_unaligned" and cell.plugins == ("crl_plugin_unaligned",)
    suite = suite_cell("pendulum", "beta_vae.yaml")
    assert suite.plugins == () and single_run_cell("--dataset", "pendulum", "--model", "beta_vae",
                                                   "--steps", "10").hash == suite.hash  # no plugins: as before


@pytest.mark.parametrize("flags, expected", [
    (["--model", "bta_vae"], "--model 'bta_vae': unknown model; known: beta_vae, "),
    (["--dataset", "pendlum"], "--dataset 'pendlum': unknown dataset; known: causal_circuit, "),
    (["--metric", "dci"], "--metric 'dci': unknown metric; known: counterfactual@probe, "),
    (["--metric", "dci@reg", "--metric", "dci@reg"], "--metric 'dci@reg' is given twice"),
    (["--plugins", "no_such_plugin_module_26"], "--plugins: plugin module 'no_such_plugin_module_26' could not be"),
    (["--set", "bta=2"], "--set: unknown parameter 'bta'; known: "),
    (["--set", "beta=high"], "--set: parameter 'beta' must be float; got 'high'"),
    (["--set", "beta=-1"], "--set: model 'beta_vae': parameter 'beta' must be non-negative; got -1.0"),
    (["--data", "sise=32"], "--data: unknown parameter 'sise'; known: "),
    (["--steps", "0"], "--steps must be a positive integer; got 0"),
    (["--epochs", "-2"], "--epochs must be a positive integer; got -2"),
    (["--batch-size", "0"], "--batch-size must be a positive integer; got 0"),
    (["--seed", "-1"], "--seed must be a non-negative integer; got -1"),
    (["--model-file", "no/such/model.yaml"], "--model-file 'no/such/model.yaml': no such file"),
])
def test_run_errors_name_the_flag_not_a_suite_key(tmp_path, capsys, flags, expected):
    base = {"--dataset": "pendulum", "--model": "beta_vae", "--steps": "3"}
    argv = ["run", *[item for flag, value in base.items() if flag not in flags for item in (flag, value)], *flags,
            "--workdir", str(tmp_path), "--no-tracking"]
    assert main(argv) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("crlbench: error: " + expected), line
    assert "key '" not in line and "crlbench run:" not in line
    assert not (tmp_path / "cells").exists()


def test_run_without_a_budget_names_the_flags(tmp_path, capsys):
    assert main(["run", "--dataset", "pendulum", "--model", "beta_vae", "--workdir", str(tmp_path)]) == 2
    assert "give the training budget: --steps N (optimiser steps) or --epochs N" in capsys.readouterr().err


def test_a_suite_error_the_flag_checks_miss_is_still_named_by_its_flag():
    import argparse

    from crlbench.cli import in_flag_terms

    args = argparse.Namespace(model="foo", dataset="pendulum", metrics=["mig", "dci@reg"])
    assert in_flag_terms("crlbench run: key 'models[0]': key 'name': unknown model 'foo'", args) == (
        "--model 'foo': key 'name': unknown model 'foo'")
    assert in_flag_terms("crlbench run: key 'metrics[1]': key 'options': x", args) == "--metric 'dci@reg': key 'options': x"
    assert in_flag_terms("crlbench run: key 'seeds' must be ...", args) == "--seed must be ..."
    assert in_flag_terms("/home/me/model.yaml: key 'training' ...", args) == "/home/me/model.yaml: key 'training' ..."
