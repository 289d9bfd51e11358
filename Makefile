# batchdrain: the commands a newcomer needs. `make demo` and `make test` are the two
# in the README; `make check` is exactly what CI runs before the tests.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEMO_DIR ?= .demo

.PHONY: venv demo test test-fast test-e2e test-faults check lint typecheck layers clean cluster-up cluster-down images bench

$(BIN)/batchdrain: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,s3]'
	touch $@

venv: $(BIN)/batchdrain

# A real drain of a sample backlog: SQLite + the local executor, no cluster needed.
demo: venv
	rm -rf $(DEMO_DIR) && mkdir -p $(DEMO_DIR)
	cd $(DEMO_DIR) && ../$(BIN)/batchdrain import ../examples/sample-backlog.yaml
	cd $(DEMO_DIR) && ../$(BIN)/batchdrain drain --executor local --parallelism 3
	cd $(DEMO_DIR) && ../$(BIN)/batchdrain runs
	cd $(DEMO_DIR) && ../$(BIN)/batchdrain report "$$(ls .batchdrain/logs | tail -n 1)"

# The whole suite: unit, integration (real SQLite, real Postgres, a real S3 server built
# from source: hack/s3), e2e on a real cluster built from source (hack/cluster). Needs
# root on Debian 12; installs what it needs.
test:
	bash hack/test-all.sh

# Unit, integration and chaos (local executor) tiers: no cluster needed (the S3 server
# the integration tier starts is built first: ~18 min cold, a no-op warm).
test-fast: venv
	bash hack/s3/build.sh
	$(BIN)/python -m pytest tests/unit tests/integration tests/chaos -q

# E2E against whatever cluster KUBECONFIG points at (kind works too).
test-e2e: venv
	$(BIN)/python -m pytest tests/e2e -v

# Faults on a real cluster (apiserver stopped, node lost): needs KUBECONFIG and a way to
# stop cluster components (BATCHDRAIN_FAULTS_CONTROL; defaults to hack/cluster/control.sh
# for the cluster `make test` builds, hack/kind/control.sh for kind).
test-faults: venv
	$(BIN)/python -m pytest tests/faults -v

check: venv lint typecheck layers

lint:
	$(BIN)/ruff check controller tests benchmarks

typecheck:
	$(BIN)/mypy

layers:
	$(BIN)/lint-imports

cluster-up:
	bash hack/cluster/build.sh && bash hack/cluster/up.sh

cluster-down:
	bash hack/cluster/down.sh

images:
	bash hack/images.sh

# The no-cluster benchmarks (fake seam, database); the cluster ones need KUBECONFIG:
# see benchmarks/RESULTS.md for every command and its figures.
bench: venv
	PYTHONPATH=controller:. $(BIN)/python benchmarks/kube_executor_overhead.py --phases 10000
	PYTHONPATH=controller:. $(BIN)/python benchmarks/db_selection_latency.py --sizes 10000 100000

clean:
	rm -rf $(VENV) $(DEMO_DIR) .batchdrain batchdrain.db* .pytest_cache .mypy_cache .ruff_cache
