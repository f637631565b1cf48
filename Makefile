# Everything is installed from scratch into .venv (project + dev tools) and
# .tools/sam (SAM CLI, kept apart because it pins boto3 and click).
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON_VERSION ?= 3.13
PYENV_ROOT ?= $(HOME)/.pyenv
# Python 3.13 (the Lambda runtime) from pyenv or PATH where it exists, else python3.
PYTHON ?= $(firstword $(wildcard $(PYENV_ROOT)/versions/$(PYTHON_VERSION)*/bin/python$(PYTHON_VERSION)) \
	$(shell python$(PYTHON_VERSION) -c 'import sys; print(sys.executable)' 2>/dev/null) \
	$(shell command -v python3))
VENV := .venv
TOOLS := .tools
UV := $(TOOLS)/uv/bin/uv
SAM := $(TOOLS)/sam/bin/sam
BIN := $(VENV)/bin
export UV_PYTHON_DOWNLOADS := never
export UV_NO_PROGRESS := 1
export SAM_CLI_TELEMETRY := 0
export AWS_DEFAULT_REGION ?= eu-west-1

.PHONY: help setup lint types docs docs-build test test-fast template-check demo bench bench-record soak soak-record build clean

help:
	@echo "make setup   create .venv (project, dev tools) and $(TOOLS)/sam"
	@echo "make demo    run the whole pipeline locally on the embedded defaults"
	@echo "make test    lint, template checks and the whole test suite"
	@echo "make bench   benchmarks: table on screen, results under build/bench/"
	@echo "make bench-record  the same, and update the committed benchmarks/results.{json,md}"
	@echo "make soak    the reliability run (2,000 notifications), results under build/soak/"
	@echo "make docs    serve the documentation site on http://127.0.0.1:8000"
	@echo "make build   sam build (python$(PYTHON_VERSION), arm64)"

$(UV):
	python3 -m venv $(TOOLS)/uv
	$(TOOLS)/uv/bin/python -m pip install -q --disable-pip-version-check uv==0.13.8

$(VENV)/.installed: $(UV) requirements-dev.txt pyproject.toml
	$(UV) venv -q --allow-existing --python "$(PYTHON)" $(VENV)
	$(UV) pip install -q --compile-bytecode --python $(BIN)/python -r requirements-dev.txt
	$(UV) pip install -q --compile-bytecode --python $(BIN)/python --no-deps -e .
	@touch $@

$(TOOLS)/sam/.installed: $(UV) requirements-tools.txt
	$(UV) venv -q --allow-existing --python "$(PYTHON)" $(TOOLS)/sam
	$(UV) pip install -q --compile-bytecode --python $(TOOLS)/sam/bin/python -r requirements-tools.txt
	@touch $@

setup: $(VENV)/.installed $(TOOLS)/sam/.installed
	@$(BIN)/python -c "import sys; print('venv ready:', sys.version.split()[0])"

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# Lint the template, then build it (sam build is part of the check) and print the sizes.
template-check: setup
	$(SAM) validate --lint --template-file template.yaml
	$(TOOLS)/sam/bin/cfn-lint template.yaml
	@$(MAKE) --no-print-directory sizes

# The runtime (what Lambda runs) strictly; each function on its own, as each is module `app`.
types: setup
	$(BIN)/mypy --strict layers/visma_webhooks functions/ingest/app.py
	$(BIN)/mypy --strict functions/processor/app.py
	$(BIN)/mypy --strict functions/reconciler/app.py
	$(BIN)/mypy visma_webhooks_local benchmarks tests

docs: setup
	$(BIN)/mkdocs serve

# --strict: a broken link or a page missing from the nav fails the build.
docs-build: setup
	$(BIN)/mkdocs build --strict --quiet --site-dir build/site

test: setup lint types template-check docs-build
	$(BIN)/python -m pytest -n 2 --dist loadgroup

test-fast: setup
	$(BIN)/python -m pytest -n 2 --dist loadgroup -m "not e2e and not slow"

# sam build needs python3.13 on PATH. The functions have no requirements.txt and the layer's
# holds only requests: Powertools and pydantic come from the AWS-managed layer.
build: setup
	PATH="$(dir $(PYTHON)):$$PATH" $(SAM) build --template-file template.yaml

# Files, unzipped and zipped size of each built function and layer; fails if one bundles
# what the runtime or the managed layer provides.
.PHONY: sizes
sizes: build
	@$(BIN)/python -m tests.template.artifacts .aws-sam/build

demo: setup
	$(BIN)/visma-webhooks demo

bench: setup
	$(BIN)/python -m benchmarks.run

bench-record: setup
	$(BIN)/python -m benchmarks.run --record

soak: setup
	$(BIN)/python -m benchmarks.soak

soak-record: setup
	$(BIN)/python -m benchmarks.soak --record

clean:
	rm -rf $(VENV) $(TOOLS) .aws-sam .pytest_cache .hypothesis .mypy_cache build
