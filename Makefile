# inloop developer commands. `make help` lists them.
#
# `make demo` and `make test` are all a newcomer needs: they create .venv with
# python3 -m venv and install what they need. The installs are recorded in stamp
# files inside .venv that depend on pyproject.toml, so later calls skip pip.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=
BENCH_ARGS ?=
# Flows of `make demo` keep their runs here (gitignored) instead of ~/.inloop.
INLOOP_HOME ?= $(CURDIR)/.inloop

.DEFAULT_GOAL := help
.PHONY: help demo test lint bench clean

help: ## Show this list of commands.
	@echo "Usage: make <target>"
	@echo
	@grep -E '^[a-z][a-zA-Z_-]*:.*## ' $(MAKEFILE_LIST) | \
		awk 'BEGIN {FS = ":.*## "}; {printf "  \033[36m%-8s\033[0m %s\n", $$1, $$2}'

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# One stamp per extra: a change to pyproject.toml reinstalls, nothing else does.
$(VENV)/.installed-%: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[$*]"
	@touch $@

demo: $(VENV)/.installed-examples ## Train digits classifiers in a flow, label with active learning (simulated), serve them.
	INLOOP_HOME="$(INLOOP_HOME)" $(BIN)/python examples/digits_flow.py run
	INLOOP_HOME="$(INLOOP_HOME)" $(BIN)/python examples/label_demo.py
	INLOOP_HOME="$(INLOOP_HOME)" $(BIN)/python examples/serve_demo.py
	@echo
	@echo "The run is stored in $(INLOOP_HOME). Inspect it with:"
	@echo "  export INLOOP_HOME=$(INLOOP_HOME)"
	@echo "  $(BIN)/inloop runs DigitsFlow"
	@echo "  $(BIN)/python -c 'from inloop import Flow; print(Flow(\"DigitsFlow\").latest_run.data.best_accuracy)'"

# The browser tests drive Debian's Chromium; install it where it is missing.
CHROMIUM ?= /usr/bin/chromium
$(CHROMIUM):
	@echo "Installing Chromium for the browser tests (Debian packages chromium, chromium-driver)"
	@if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
		$$SUDO apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium chromium-driver

test: $(VENV)/.installed-dev $(CHROMIUM) ## Run the test suite (PYTEST_ARGS="..." passes options to pytest).
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(VENV)/.installed-dev ## Check the code: ruff check, ruff format --check, mypy.
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/mypy examples benchmarks/flows.py benchmarks/_measure.py benchmarks/_common.py \
		benchmarks/labeling.py benchmarks/_labeling_audit_large.py benchmarks/serving.py \
		benchmarks/_serving_apps.py benchmarks/_serving_load.py benchmarks/_serving_models.py \
		benchmarks/startup.py

bench: $(VENV)/.installed-dev ## Run the benchmarks, print tables, write benchmarks/results/*.json.
	$(BIN)/python benchmarks/flows.py $(BENCH_ARGS)
	$(BIN)/python benchmarks/startup.py $(BENCH_ARGS)
	$(BIN)/python benchmarks/labeling.py $(BENCH_ARGS)
	$(BIN)/python benchmarks/serving.py $(BENCH_ARGS)

clean: ## Remove caches, build output, demo runs and benchmark scratch (keeps .venv).
	rm -rf build dist .pytest_cache .mypy_cache .ruff_cache .inloop benchmarks/.work
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +
	find . -path ./$(VENV) -prune -o -name '*.egg-info' -type d -prune -exec rm -rf {} +
