"""docs/plugins.md runs as written: its files (a code block whose first line is ``# NAME.py`` or
``# NAME.yaml``) are written to a scratch folder, every other Python block runs there, and its ``crlbench``
commands train and list the plugin it defines (in a scratch work directory, without MLflow)."""

import os
import re
import shlex
import sys
from pathlib import Path

import pytest

from crlbench.cli import main

PAGE = Path(__file__).resolve().parents[1] / "docs" / "plugins.md"
BLOCK = re.compile(r"^```(\w*)\n(.*?)^```", re.MULTILINE | re.DOTALL)
FILE_LINE = re.compile(r"# ([\w.]+\.(?:py|yaml))$")


def blocks(language: str) -> list[str]:
    return [text for found, text in BLOCK.findall(PAGE.read_text()) if found == language]


def files() -> dict[str, str]:
    """The page's files: ``{name: text}`` of each block that opens with ``# NAME.py`` or ``# NAME.yaml``."""
    named = {}
    for _, text in BLOCK.findall(PAGE.read_text()):
        match = FILE_LINE.fullmatch(text.split("\n", 1)[0])
        if match:
            named[match.group(1)] = text
    return named


def snippets() -> list[str]:
    """The page's Python blocks that are not files."""
    return [text for text in blocks("python") if not FILE_LINE.fullmatch(text.split("\n", 1)[0])]


@pytest.fixture
def folder(tmp_path, data_dir, monkeypatch):
    """The page's files in the current folder, which is on the import path (and PYTHONPATH, for workers); the
    work directory reads the session's generated datasets; the names the plugin registers are dropped after."""
    from crlbench.core import registry

    for name, text in files().items():
        (tmp_path / name).write_text(text)
    workdir = tmp_path / "work"
    workdir.mkdir()
    (workdir / "data").symlink_to(data_dir, target_is_directory=True)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")])))
    monkeypatch.setenv("CRLBENCH_WORKDIR", str(workdir))
    for kind in registry.KINDS:
        names = registry.registry(kind)
        monkeypatch.setattr(names, "_objects", dict(names._objects))
        monkeypatch.setattr(names, "_registered_by", dict(names._registered_by))
    yield tmp_path
    sys.modules.pop("my_vae", None)


def test_the_page_holds_a_plugin_file_snippets_and_commands():
    assert {"my_vae.py", "my_suite.yaml", "my_vae_model.yaml"} <= set(files())
    assert len(snippets()) >= 3 and blocks("bash")


@pytest.mark.parametrize("index", range(len(snippets())))
def test_each_python_block_runs(folder, index):
    exec(compile(snippets()[index], f"{PAGE.name} python block {index}", "exec"), {"__name__": "__doc_block__"})


def test_the_commands_train_and_list_the_plugin(folder, capsys):
    commands = [line for text in blocks("bash") for line in text.splitlines() if line.strip()]
    assert commands and all(line.startswith("PYTHONPATH=. crlbench ") for line in commands)
    outputs = {}
    for line in commands:
        argv = shlex.split(line)[2:]
        if argv[0] in ("run", "suite"):
            argv.append("--no-tracking")
        assert main(argv) == 0, line
        outputs[argv[0]] = capsys.readouterr().out
    assert "1 ran" in outputs["run"] and re.search(r"mcc@pearson\.mcc\s+-?[0-9.]+", outputs["run"])
    assert re.search(r"^\s*my_vae\b", outputs["list"], re.MULTILINE)


def test_the_suite_and_model_files_give_the_documented_settings(folder):
    from crlbench.suites.suite_config import load_suite, suite_from_dict

    suite = load_suite(folder / "my_suite.yaml")
    cells = {cell.model: cell for cell in suite.cells()}
    assert set(cells) == {"my_vae", "beta_vae"} and cells["my_vae"].hyperparameters == {"latent_dim": 8}
    assert cells["my_vae"].reference_budget == {"steps": 300_000, "batch_size": 64}  # the class attributes
    from_file = suite_from_dict({"name": "s", "seeds": [0], "budget": {"epochs": 2},
                                 "datasets": ["pendulum", "causal_circuit"],
                                 "models": [{"config": "my_vae_model.yaml"}], "metrics": ["mcc@pearson"]},
                                where="test", base=folder)
    by_dataset = {cell.dataset: cell for cell in from_file.cells()}
    assert by_dataset["pendulum"].budget.batch_size == 64
    assert by_dataset["causal_circuit"].budget.batch_size == 100
    assert by_dataset["causal_circuit"].reference_budget == {"epochs": 100}
