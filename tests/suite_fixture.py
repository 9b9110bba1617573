"""A tiny suite for the runner tests: Pendulum at 32x32, a few steps, cheap metrics."""

from pathlib import Path

import yaml

PLUGINS = Path(__file__).parent / "plugins"

TINY = {
    "name": "tiny",
    "seeds": [0],
    "budget": {"steps": 3, "batch_size": 16},
    "datasets": [{"name": "pendulum", "params": {"size": 32}}],
    "models": [{"name": "beta_vae"}, {"name": "icm_vae"}],
    "metrics": ["dci@reg", "mcc@pearson"],
    "evaluation": {"n_train": 60, "n_test": 40, "interventions": 2},
}


def write_suite(directory: Path, name: str = "tiny.yaml", **changes) -> Path:
    """TINY with ``changes`` (top-level keys replaced), written as YAML in ``directory``."""
    path = Path(directory) / name
    path.write_text(yaml.safe_dump({**TINY, **changes}, sort_keys=False))
    return path
