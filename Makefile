# The two commands of the README: `make dev` runs the platform locally, `make test` runs every test.
# Both set up everything they need on a fresh machine: a virtualenv (.venv), the Python packages, and the
# real servers the test world runs (built once per machine from their Go modules, cached by version in
# ~/.cache/voxfleet/bin).

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PYTEST_WORKERS ?= auto
# The exact versions (with hashes) of everything `make` installs: every extra plus the test tools. The image
# installs requirements/image.lock, a tenant's CI may pin with requirements/eval.lock; `make lock` writes all three.
LOCK   := requirements/dev.lock
UV_VERSION := 0.13.9

.PHONY: setup servers playground chromium postgresql dev test test-fast crds bench lock clean

setup: $(STAMP) servers playground postgresql

$(STAMP): pyproject.toml $(LOCK)
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "voxfleet needs Python 3.11+; found " + sys.version)'
	@echo "==> creating $(VENV) and installing voxfleet with its test tools from $(LOCK) (about a minute the first time)"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet --progress-bar off --require-hashes -r $(LOCK) || \
		{ echo "==> the install from $(LOCK) stopped; trying once more"; \
		  $(BIN)/pip install --progress-bar off --require-hashes -r $(LOCK); }
	$(BIN)/pip install --quiet --progress-bar off --no-deps -e .
	$(BIN)/pip check  # no installed package misses a requirement (tests/packaging/test_lock_files.py: lock vs pyproject)
	@touch $(STAMP)
	@echo "==> the voxfleet command is $(CURDIR)/$(BIN)/voxfleet (or: source $(VENV)/bin/activate)"

# Re-resolve the lock files from pyproject.toml, keeping today's versions where they still fit (UPGRADE=1: the
# newest that fit). Universal (any platform, Python 3.11+) and with every file's hash. The image and eval locks
# are constrained to the dev lock, so all three agree on every version they share.
LOCK_COMPILE = $(BIN)/uv pip compile pyproject.toml --quiet --universal --python-version 3.11 --generate-hashes \
	--custom-compile-command "make lock" $(if $(UPGRADE),--upgrade)
lock:
	@test -x $(BIN)/pip || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet uv==$(UV_VERSION)
	$(LOCK_COMPILE) --extra all --extra test -o $(LOCK)
	$(LOCK_COMPILE) --extra operator --extra gateway --extra worker -c $(LOCK) -o requirements/image.lock
	$(LOCK_COMPILE) --extra eval -c $(LOCK) -o requirements/eval.lock

servers:
	@echo "==> the real servers of the test world: Kubernetes, LiveKit, kwok, helm, Prometheus + promtool and an"
	@echo "    OpenTelemetry Collector (built once per machine from their Go modules, then cached by version)"
	bash world/build-servers.sh

# The browser playground the gateway serves: livekit-client bundled with esbuild, both from the npm registry.
PLAYGROUND_BUNDLE := playground/dist/index.html
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
APT_INSTALL := $(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq

playground: $(PLAYGROUND_BUNDLE)

$(PLAYGROUND_BUNDLE): playground/package.json playground/package-lock.json $(wildcard playground/src/*)
	@command -v npm >/dev/null 2>&1 || { echo "==> installing node and npm (Debian)"; $(APT_INSTALL) nodejs npm; }
	@echo "==> building the browser playground (npm ci, esbuild)"
	cd playground && npm ci --no-audit --no-fund --loglevel=error && npm run --silent build

# Debian's chromium for the playground's browser test; skipped when it is already installed.
chromium:
	@command -v chromium >/dev/null 2>&1 || { echo "==> installing Debian's chromium for the browser test"; \
		$(APT_INSTALL) chromium chromium-driver; }

# Debian's PostgreSQL server: the store's database in the test world and in `voxfleet dev` (world/postgres.py runs
# its binaries itself, in the world's folder; the package's own cluster is never used). Skipped when installed.
postgresql:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1 || \
		{ echo "==> installing Debian's PostgreSQL server (the store's database in the test world)"; \
		  $(APT_INSTALL) postgresql; }

dev: setup
	$(BIN)/voxfleet dev

# Two phases: everything in parallel, then the tests that time audio in a LiveKit room, alone (see
# tests/conftest.py REALTIME_MODULES); a test that failed gets one rerun, alone, and passes the run only as a
# test named FLAKY in the output (tests/rerun_failed.py; more than 5 failures are not rerun); then a scan of
# every log the run wrote for every secret it minted (tests/security/log_scan.py). All always run; the target
# fails if any did. The run folder keeps each phase's logs and pytest's captured output (JUnit XML) for the
# scan, and for reading after a failure.
test: setup chromium
	@run=$$(mktemp -d /tmp/voxfleet-run-XXXXXX); touch $$run/started; export VOXFLEET_TEST_RUN_DIR=$$run; \
	status=0; \
	echo "==> phase 1/2: the suite in parallel against real servers"; \
	$(BIN)/pytest -n $(PYTEST_WORKERS) -m "not realtime" --durations=15 --basetemp=$$run/phase1 \
		--junitxml=$$run/phase1-junit.xml -o junit_logging=all tests || status=1; \
	echo "==> phase 2/2: real-time call tests, one at a time"; \
	$(BIN)/pytest -p no:xdist -m realtime --durations=15 --basetemp=$$run/phase2 \
		--junitxml=$$run/phase2-junit.xml -o junit_logging=all tests || status=1; \
	if [ $$status != 0 ]; then $(BIN)/python -m tests.rerun_failed $$run && status=0; fi; \
	echo "==> no secret in any log of the run ($$run)"; \
	$(BIN)/python -m tests.security.log_scan $$run || status=1; \
	exit $$status

test-fast: $(STAMP)
	$(BIN)/pytest -n $(PYTEST_WORKERS) -m "not world" tests

crds: $(STAMP)
	$(BIN)/voxfleet crds
	$(BIN)/python -m tests.chart.chart_generated_files  # the chart's copies

bench: setup
	@for b in bench/*_bench.py; do echo "==> $$b"; $(BIN)/python $$b || exit 1; done  # in_tree.py is a helper

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
