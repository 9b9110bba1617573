"""A suite's cells are resolved and hashed without torch, scipy or numba (issue 17: a rerun or --dry-run
with nothing to do answers at once); the light declarations agree with the model classes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from crlbench.core import registry

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "scipy", "numba", "sklearn", "mlflow")


@pytest.mark.parametrize("name", ["beta_vae", "icm_vae", "causal_vae", "dear", "scm_vae", "ivae", "ilcm",
                                  "contrastive_crl", "copy", "mean_image", "supervised", "untrained"])
def test_light_model_declaration_matches_the_model_class(name):
    from crlbench.training.model import source_fingerprint

    declared = registry.model_declaration(name)
    model_class = registry.registry("model").get(name)
    assert declared.Config is model_class.Config
    assert declared.version == str(getattr(model_class, "version", "1"))
    registry.registry("model")._objects.pop(name)  # as in a fresh process: read from the entry point
    try:
        assert registry.model_source(name) == source_fingerprint(model_class)
    finally:
        registry.registry("model").add(name, model_class)


def test_dry_run_imports_no_heavy_library(tmp_path):
    code = (
        "import json, sys\n"
        "from crlbench.cli import main\n"
        f"status = main(['suite', {str(ROOT / 'configs/suites/smoke.yaml')!r}, '--workdir', {str(tmp_path)!r}, '--dry-run'])\n"
        f"print(json.dumps({{'status': status, 'heavy': [m for m in {HEAVY!r} if m in sys.modules]}}))\n"
    )
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["status"] in (0, None)
    assert "24 pending" in done.stdout or "pending" in done.stdout
    assert result["heavy"] == []
