# Setup and the main jobs. `make bench` and `make test` each create .venv on first use.
PYTHON ?= python3
# The CPU build of torch that lies on the project's machines; GPU users may preinstall their own
# torch into .venv (crlbench accepts torch >= 2.2) or run `make TORCH=torch bench`.
TORCH ?= torch==2.13.0
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
WORKDIR ?= runs
SUITE ?= configs/suites/quick.yaml
WORKERS ?= 2

export MLFLOW_DISABLE_TELEMETRY := true

.PHONY: setup bench test test-slow test-cluster soak benchmarks docs clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install --quiet "$(TORCH)"
	$(BIN)/python -m pip install --quiet -e ".[test,bench,postgres]"
	touch $(STAMP)

# The main job on embedded defaults: run $(SUITE) (the quick suite: every model on every dataset,
# three seeds, within an hour on 2 cores) into $(WORKDIR) with MLflow on $(WORKDIR)/mlflow.db, write
# its report to $(WORKDIR)/reports/<suite>, and draw each dataset's sample grid to $(WORKDIR)/samples.
# A rerun skips finished cells. CI runs it with SUITE=configs/suites/smoke.yaml. Exit status 3 of
# `crlbench suite` (no cell failed, some are partial: a metric failed, the other scores stand) is
# accepted: the report lists the partial cells; a failed cell (10 + N) still fails the target.
bench: setup
	for name in pendulum flow causal_circuit; do \
	  $(BIN)/crlbench data show $$name --workdir $(WORKDIR) --out $(WORKDIR)/samples/$$name.png || exit 1; \
	done
	$(BIN)/crlbench suite $(SUITE) --workdir $(WORKDIR) --workers $(WORKERS) || test $$? -eq 3
	$(BIN)/crlbench report $(SUITE) --workdir $(WORKDIR) --out $(WORKDIR)/reports/$(basename $(notdir $(SUITE)))

test: setup
	$(BIN)/python -m pytest

test-slow: setup
	$(BIN)/python -m pytest -m slow

# The cluster executors against real engines on this machine (root, Debian): the slurm and ray extras,
# a one-node Slurm cluster with accounting started and stopped by .ci/cluster-tests (.ci/slurm.sh), and
# the local Ray cluster tests/test_ray.py starts itself. `make test-slow` skips the Slurm tests.
test-cluster: setup
	$(BIN)/python -m pip install --quiet -e ".[test,bench,postgres,slurm,ray]"
	.ci/cluster-tests

# The chaos soak (benchmarks/chaos_soak.py): two launchers under random kills, pauses and corrupt files for
# SOAK_MINUTES, then the invariants (one record per cell with the undisturbed scores, each logged once, no
# process left, nothing written outside the work directory); prints its seed to replay a failure
SOAK_MINUTES ?= 8
soak: setup
	$(BIN)/python benchmarks/chaos_soak.py --minutes $(SOAK_MINUTES)

# The documentation site from docs/ (getting-started.md, "Building the docs"): Sphinx with MyST, the API reference
# generated from the docstrings into docs/api/. Warnings are errors, and a link to a missing page or heading
# anchor is one (MyST's cross-references); links to the web are not followed, so the build needs no network.
docs: setup
	$(BIN)/python -m pip install --quiet -e ".[docs]"
	rm -rf docs/_build/html docs/api
	$(BIN)/python -m sphinx -W --keep-going -b html docs docs/_build/html
	$(BIN)/python -m pytest -q tests/test_docs_site.py  # and a broken link or anchor does fail this configuration

benchmarks: setup
	$(BIN)/python benchmarks/render_speed.py
	$(BIN)/python benchmarks/render_fidelity.py
	$(BIN)/python benchmarks/metric_speed.py --skip-dlib

clean:
	rm -rf $(VENV) $(WORKDIR) .pytest_cache
