"""What the cluster tests (test_slurm.py, test_ray.py) share: a suite of slow, cheap cells and their scores."""

from __future__ import annotations

import os
import time
from pathlib import Path

from crlbench.suites.results import cell_dir, read_result
from suite_fixture import PLUGINS

SMOKE = Path(__file__).resolve().parents[1] / "configs" / "suites" / "smoke.yaml"  # the CI suite: 24 cells

COUNTING_PLUGIN = '''
"""linear_ae that notes every training step (the cell, the pid, the step and the time) in
$CRLBENCH_TEST_TRAININGS, so a test sees whether two processes trained a cell at the same time."""
import os
import time

from crlbench.core.registry import register_model
from crl_plugin_models import LinearAutoencoder


@register_model("counted_ae")
class CountedAutoencoder(LinearAutoencoder):
    name = "counted_ae"

    def __init__(self, card, **hyperparameters):
        super().__init__(card, **hyperparameters)
        self.identity = f"{float(self.encoder.weight.detach().sum()):.6f}"  # drawn from the cell's seed

    def training_step(self, batch, step):
        with open(os.environ["CRLBENCH_TEST_TRAININGS"], "a") as trainings:
            trainings.write(f"{self.identity} {os.getpid()} {step} {time.time():.3f}\\n")
        return super().training_step(batch, step)
'''


def trainings(path: Path) -> dict[str, dict[int, tuple[float, float, list[int]]]]:
    """What the counting plugin wrote: cell identity -> pid -> (first, last step time, steps)."""
    found: dict[str, dict[int, tuple[float, float, list[int]]]] = {}
    for line in path.read_text().splitlines():
        identity, pid, step, at = line.split()
        first, last, steps = found.setdefault(identity, {}).get(int(pid), (float(at), float(at), []))
        found[identity][int(pid)] = (min(first, float(at)), max(last, float(at)), [*steps, int(step)])
    return found


def overlapping(found) -> list[str]:
    """Cells that two processes trained at the same time."""
    clashes = []
    for identity, processes in found.items():
        spans = sorted((first, last, pid) for pid, (first, last, _) in processes.items())
        for (_, end, pid), (start, _, other) in zip(spans, spans[1:]):
            if start <= end:
                clashes.append(f"cell {identity}: pids {pid} and {other}")
    return clashes


def cluster_suite(seeds: list[int], steps: int = 8, step_seconds: float = 0.0, model: str = "linear_ae") -> dict:
    """Cells of the plugin's linear autoencoder on a small CausalCircuit: 4 steps an epoch, so a
    checkpoint every 4 steps; ``step_seconds`` makes training slow but cheap (a sleep)."""
    return {
        "plugins": ["crl_plugin_models"] if model == "linear_ae" else ["counting_plugin"],
        "seeds": seeds, "budget": {"steps": steps, "batch_size": 16},
        "datasets": [{"name": "causal_circuit", "params": {"size": 32, "n_train": 64, "n_val": 16, "n_test": 48}}],
        "models": [{"name": model, "hyperparameters": {"step_seconds": step_seconds}}],
        "metrics": ["mcc@pearson", "dci@reg"], "evaluation": {"n_train": 40, "n_test": 40, "interventions": 2},
    }


def plugin_env(monkeypatch, *folders: Path) -> None:
    """The test plugins importable here and in every task the cluster starts (they inherit the environment)."""
    paths = [str(PLUGINS), *map(str, folders)]
    for path in reversed(paths):
        monkeypatch.syspath_prepend(path)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([*paths, os.environ.get("PYTHONPATH", "")]))
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")


def scores(config, workdir: Path) -> dict[str, dict]:
    """Cell hash -> scores of every cell of ``config`` in ``workdir``."""
    return {cell.hash: read_result(cell_dir(workdir, cell.hash))["scores"] for cell in config.cells()}


def wait_for(condition, timeout: float, what: str, poll: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(poll)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def mlflow_children(workdir: Path, suite: str) -> list:
    """The child runs (one per logged cell) of ``crlbench/<suite>`` in the work directory's store."""
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}")
    experiment = client.get_experiment_by_name(f"crlbench/{suite}")
    if experiment is None:
        return []
    return [run for run in client.search_runs([experiment.experiment_id]) if "mlflow.parentRunId" in run.data.tags]
