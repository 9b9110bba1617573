"""One import namespace: crlbench installs as ``crlbench`` only, so it shares an environment with other
projects' top-level ``datasets`` and ``baselines`` (Hugging Face, OpenAI), and its parts import only
what their ``__init__`` docstrings allow.

The folders ``bench/``, ``datasets/``, ``baselines/`` and ``icmvae/`` are mapped to ``crlbench``,
``crlbench.datasets``, ``crlbench.baselines`` and ``crlbench.icmvae`` by ``[tool.setuptools]`` in
pyproject.toml. The editable install these tests run under uses setuptools' import finder; the first
test installs a copy of the project for real (non-editable) into a fresh virtual environment.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import textwrap
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FOLDERS = {"crlbench": "bench", "crlbench.datasets": "datasets", "crlbench.baselines": "baselines",
           "crlbench.icmvae": "icmvae"}
# data-only folders installed inside the package: the model files `crlbench run` reads (crlbench.suites.model_files)
DATA_FOLDERS = {"crlbench.configs": "configs"}
DATA_PACKAGES = {"crlbench.reports.templates": ["*.j2"], "crlbench.configs.models": ["*.yaml"]}
PROJECT_FILES = ("pyproject.toml", "README.md", *FOLDERS.values(), *DATA_FOLDERS.values())

STUB = '"""Another project\'s top-level package of the same name."""\nNAME = "stub"\n'

CHECK_BOTH = textwrap.dedent(
    """
    import json, sys
    import datasets, baselines                              # the other project's
    import crlbench.datasets, crlbench.baselines, crlbench.icmvae
    import crlbench.datasets.pendulum, crlbench.baselines.betavae, crlbench.icmvae.model
    from crlbench.core import registry
    from crlbench.suites.model_files import model_file
    from jinja2 import Environment, PackageLoader

    template = Environment(loader=PackageLoader("crlbench.reports", "templates")).get_template("report.html.j2")
    dataset = registry.dataset("pendulum", size=16)
    print(json.dumps({
        "datasets": [datasets.NAME, datasets.__file__], "baselines": [baselines.NAME, baselines.__file__],
        "crlbench": crlbench.__file__, "crlbench.datasets": crlbench.datasets.__file__,
        "crlbench.baselines": crlbench.baselines.__file__, "crlbench.icmvae": crlbench.icmvae.__file__,
        "pendulum": type(dataset).__module__, "models": registry.registry("model").names(),
        "template": template.filename, "model_file": str(model_file("ivae")),
        "after": sys.modules["datasets"].NAME,              # importing crlbench left the stub in place
    }))
    """
)


def test_a_real_install_shares_an_environment_with_top_level_datasets_and_baselines(tmp_path):
    """``pip install`` (not editable) of a copy of the project into a fresh virtual environment that
    also holds stub ``datasets`` and ``baselines`` packages: both projects import side by side."""
    if importlib.util.find_spec("setuptools") is None:
        pytest.skip("building crlbench offline needs setuptools in the test environment")
    source = tmp_path / "source"  # a copy: pip builds in the source tree (build/, *.egg-info)
    source.mkdir()
    for name in PROJECT_FILES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(ROOT / name, source / name)
    env_dir = tmp_path / "env"
    venv.EnvBuilder(with_pip=False, symlinks=os.name != "nt").create(env_dir)
    python = env_dir / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    site = Path(subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    # The test environment's libraries (torch, numpy, pip, setuptools ...) without downloading: its
    # site-packages as a plain path entry, after the new environment's own (whose packages win), and
    # without its .pth files (so not the editable crlbench of the test environment).
    (site / "test_environment.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    for stub in ("datasets", "baselines"):
        (site / stub).mkdir()
        (site / stub / "__init__.py").write_text(STUB)

    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "PYTHONHOME")}
    env.update(PIP_NO_INDEX="1", PIP_DISABLE_PIP_VERSION_CHECK="1")
    install = subprocess.run([python, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                              str(source)], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    assert install.returncode == 0, install.stdout + install.stderr

    run = subprocess.run([python, "-c", CHECK_BOTH], capture_output=True, text=True, env=env, cwd=tmp_path,
                         timeout=300)
    assert run.returncode == 0, run.stderr
    seen = json.loads(run.stdout.strip().splitlines()[-1])
    for stub in ("datasets", "baselines"):
        assert seen[stub] == ["stub", str(site / stub / "__init__.py")]
    for package in FOLDERS:
        installed = site.joinpath(*package.split("."), "__init__.py")
        assert Path(seen[package]) == installed, (package, seen[package])
    assert seen["pendulum"] == "crlbench.datasets.pendulum"
    assert seen["models"] == ["beta_vae", "causal_vae", "contrastive_crl", "copy", "dear", "icm_vae", "ilcm", "ivae",
                              "mean_image", "scm_vae", "supervised", "untrained"]  # entry points of the installed copy (4 reference rows)
    assert Path(seen["template"]) == site / "crlbench" / "reports" / "templates" / "report.html.j2"
    assert Path(seen["model_file"]) == site / "crlbench" / "configs" / "models" / "ivae.yaml"  # shipped, not the source's
    assert seen["after"] == "stub"

    command = subprocess.run([python.parent / "crlbench", "list", "datasets"], capture_output=True, text=True,
                             env=env, cwd=tmp_path, timeout=300)
    assert command.returncode == 0 and "pendulum" in command.stdout, command.stderr
    module = subprocess.run([python, "-m", "crlbench", "list", "metrics"], capture_output=True, text=True, env=env,
                            cwd=tmp_path, timeout=300)
    assert module.returncode == 0 and "dci@reg" in module.stdout, module.stderr


def test_the_editable_install_maps_the_folders_and_takes_no_other_top_level_name(tmp_path):
    code = ("import importlib.util, json, crlbench.datasets, crlbench.baselines, crlbench.icmvae\n"
            "print(json.dumps({name: getattr(importlib.util.find_spec(name), 'origin', None)\n"
            "                  for name in ('crlbench', 'crlbench.datasets', 'crlbench.baselines', 'crlbench.icmvae',\n"
            "                               'bench', 'datasets', 'baselines', 'icmvae')}))")
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, env=env)
    assert run.returncode == 0, run.stderr
    origins = json.loads(run.stdout)
    if Path(origins["crlbench"]).resolve() == ROOT / "bench" / "__init__.py":  # editable: the folders themselves
        for package, folder in FOLDERS.items():
            assert Path(origins[package]).resolve() == ROOT / folder / "__init__.py"
    for name in ("bench", "datasets", "baselines", "icmvae"):  # none of crlbench's folders is a top-level package
        assert origins[name] is None or not Path(origins[name]).resolve().is_relative_to(ROOT), (name, origins[name])


def test_the_package_list_names_every_folder_of_the_package():
    tomllib = pytest.importorskip("tomllib")
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert setuptools["package-dir"] == {**FOLDERS, **DATA_FOLDERS}
    expected = set()
    for package, folder in FOLDERS.items():
        for path in (ROOT / folder).rglob("*"):
            if path.is_dir() and path.name != "__pycache__" and any(
                    child.suffix in (".py", ".j2") for child in path.iterdir()):
                relative = path.relative_to(ROOT / folder).parts
                expected.add(".".join((package, *relative)))
        expected.add(package)
    assert set(setuptools["packages"]) == expected | set(DATA_PACKAGES)
    for package in expected - set(DATA_PACKAGES):
        folder = FOLDERS.get(package) or "/".join(["bench", *package.split(".")[1:]])
        assert (ROOT / folder / "__init__.py").is_file(), package
    assert setuptools["package-data"] == DATA_PACKAGES


# --- what each part may import (the "May import" line of its __init__ docstring) ----------------

PARTS = ("core", "training", "metrics", "datasets", "icmvae", "baselines", "suites", "tracking", "reports",
         "scores", "tuning", "cli", "__main__")
MAY_IMPORT = {
    "core": set(),
    "training": {"core"},
    "metrics": {"core"},
    "datasets": {"core"},
    "icmvae": {"core", "training"},
    "baselines": {"core", "training"},
    "suites": {"core", "training", "metrics"},
    "tracking": {"core", "suites"},
    "reports": {"core"},
    "scores": {"core", "suites", "reports"},
    "tuning": {"core", "training", "suites", "tracking"},
    "cli": set(PARTS),
    "__main__": {"cli"},
}
# Imports inside a function that the docstrings name: tracking draws a cell's intervention grid with the
# report's figure code. (The suites report their cells through the hook they are given: they never import
# tracking, not even inside a function.)
LAZY_EXCEPTIONS = {("crlbench.tracking.cell_runs", "reports")}


def _modules():
    for package, folder in FOLDERS.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            parts = [part for part in path.relative_to(ROOT / folder).with_suffix("").parts if part != "__init__"]
            yield ".".join((package, *parts)), path


def _imports(path: Path) -> list[tuple[str, bool]]:
    """The crlbench modules ``path`` imports, each with whether the import is at module level."""
    tree = ast.parse(path.read_text())
    top = set()
    for node in tree.body:
        top.update(id(child) for child in ast.walk(node) if not isinstance(node, (ast.FunctionDef, ast.ClassDef)))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("crlbench"):
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names if alias.name.startswith("crlbench")]
        else:
            continue
        found += [(name, id(node) in top) for name in names]
    return found


def _part(module: str) -> str | None:
    pieces = module.split(".")
    return pieces[1] if len(pieces) > 1 and pieces[1] in PARTS else None


def test_every_part_imports_only_what_its_docstring_allows():
    known = dict(_modules())
    wrong = []
    for module, path in known.items():
        part = _part(module)
        for imported, at_top in _imports(path):
            target = _part(imported)
            if part is None or target is None or target == part or target in MAY_IMPORT[part]:
                continue
            if not at_top and (module, target) in LAZY_EXCEPTIONS:
                continue
            wrong.append(f"{module} imports {imported}")
    assert not wrong, wrong
    for part in PARTS[:-2]:
        package = f"crlbench.{part}"
        assert "May import" in (ast.get_docstring(ast.parse(known[package].read_text())) or ""), package


def test_a_cell_needs_neither_the_suite_config_nor_the_runner():
    """The loops cell -> runner -> suite_config -> cell and cell <-> suite_config are gone: the suite
    config builds cells, and the validation fraction lives with the cell whose hash records it."""
    imported = {name for name, _ in _imports(ROOT / "bench" / "suites" / "cell.py")}
    assert not imported & {"crlbench.suites.suite_config", "crlbench.suites.runner"}, imported


# --- the module graph: no cycle, counting imports inside functions ----------------------------------

def _import_graph() -> dict[str, set[str]]:
    """Each crlbench module and the crlbench modules it imports, at module level or inside a function
    (``from package import module`` counts as importing the module)."""
    known = dict(_modules())
    return {module: {name for name, _ in _imports(path) if name in known and name != module}
            for module, path in known.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm, iteratively)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    components.append(sorted(component))
    return components


def test_the_cycle_finder_finds_a_cycle_through_an_import_inside_a_function():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_module_imports_itself_back_through_others():
    """No import cycle among crlbench's modules, counting the imports inside functions (which only defer one):
    each module can be read, tested and imported without the modules that import it."""
    assert _cycles(_import_graph()) == []


def test_no_part_imports_itself_back_through_others():
    """Between parts too (suites, tracking, tuning, ...): tracking reads the suites' records, and the suites
    report their cells through a hook, never importing tracking."""
    parts: dict[str, set[str]] = {}
    for module, imported in _import_graph().items():
        parts.setdefault(_part(module) or module, set()).update(
            _part(name) or name for name in imported if (_part(name) or name) != (_part(module) or module))
    assert _cycles(parts) == []


def test_no_import_is_relative():
    """The graph above reads absolute imports only (``from crlbench.x import y``), as the code writes them."""
    relative = [f"{module}: line {node.lineno}" for module, path in _modules()
                for node in ast.walk(ast.parse(path.read_text())) if isinstance(node, ast.ImportFrom) and node.level]
    assert not relative, relative


def test_the_executors_share_an_interface_that_imports_none_of_them():
    """The local, Slurm and Ray executors import the contract they implement; the contract, the runner and the
    suite import no executor but the local default (the suite's), and only dispatch chooses among them."""
    graph = _import_graph()
    executors = {"crlbench.suites.executor", "crlbench.suites.slurm", "crlbench.suites.ray_cells"}
    for executor in executors:
        assert "crlbench.suites.executor_contract" in graph[executor], executor
    assert not graph["crlbench.suites.executor_contract"] & (executors | {"crlbench.suites.dispatch"})
    assert not graph["crlbench.suites.runner"] & (executors | {"crlbench.suites.dispatch",
                                                             "crlbench.suites.executor_contract"})
    assert graph["crlbench.suites.suite"] & (executors | {"crlbench.suites.dispatch"}) == {"crlbench.suites.executor"}
    importers = {module for module, imported in graph.items() if imported & {"crlbench.suites.slurm",
                                                                            "crlbench.suites.ray_cells"}}
    assert importers <= {"crlbench.suites.dispatch", "crlbench.cli.suite"}, importers
