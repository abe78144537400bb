# Every target does its own set-up, so a bare machine needs only `make test`
# (or `make overnight`). PYTHON picks the interpreter the venv is made from.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
CONTRACT ?= contracts/ml-training.toml
HOURS    ?=
TAG      ?=

.PHONY: install engine images agent-image test lint bench overnight clean

install: $(STAMP)

$(STAMP): pyproject.toml requirements.lock
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r requirements.lock
	$(BIN)/python -m pip install -q --no-deps -e .
	@touch $(STAMP)

engine:
	@scripts/ensure-docker
	@scripts/ensure-runsc
	@scripts/ensure-seccomp-base

images: install engine
	$(BIN)/autoresearch images build

# The command agent's image (Node, the Claude Code CLI): built on first use otherwise.
agent-image: install engine
	$(BIN)/autoresearch images build agent

# gVisor and Chromium are set up or the target fails; AUTORESEARCH_TEST_WITHOUT_RUNSC=1 and
# AUTORESEARCH_TEST_WITHOUT_CHROMIUM=1 opt out (the summary then says what was skipped).
test: images
	@scripts/ensure-runsc --required
	@scripts/ensure-chromium --required
	scripts/run-tests

lint: install
	$(BIN)/ruff check orchestrator tests
	$(BIN)/ruff format --check orchestrator tests
	$(BIN)/mypy

bench: images
	$(BIN)/python -m tests.bench

overnight: images
	$(BIN)/autoresearch run $(CONTRACT) $(if $(HOURS),--hours $(HOURS)) $(if $(TAG),--tag $(TAG))

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
