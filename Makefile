# The two commands of the README: `make dev` runs the platform locally, `make test` runs every test.
# Both set up everything they need on a fresh machine: a virtualenv (.venv), the Python packages, and the
# real servers the test world runs (built once per machine from their Go modules, cached by version in
# ~/.cache/voxfleet/bin).

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PYTEST_WORKERS ?= auto

.PHONY: setup servers dev test test-fast crds bench clean

setup: $(STAMP) servers

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "voxfleet needs Python 3.11+; found " + sys.version)'
	@echo "==> creating $(VENV) and installing voxfleet with its test tools (about a minute the first time)"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet --progress-bar off -e '.[test]'
	@touch $(STAMP)

servers:
	@echo "==> the real servers of the test world (built once per machine, then cached)"
	bash world/build-servers.sh

dev: setup
	$(BIN)/voxfleet dev

test: setup
	@echo "==> running the whole suite against real servers"
	$(BIN)/pytest -n $(PYTEST_WORKERS) --durations=15 tests

test-fast: $(STAMP)
	$(BIN)/pytest -n $(PYTEST_WORKERS) -m "not world" tests

crds: $(STAMP)
	$(BIN)/voxfleet crds

bench: setup
	@for b in bench/*.py; do echo "==> $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
