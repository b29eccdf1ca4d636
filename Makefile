# anonstream: every target sets itself up from a fresh clone (virtualenv, install, broker jars),
# idempotently, then runs.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
KAFKA_DIR := deploy/local-kafka
KAFKA_STAMP := $(KAFKA_DIR)/libs/.complete
INSTALL_STAMP := $(VENV)/.installed
DURATION ?= 0
RATE ?= 200
PYTEST_ARGS ?=

.PHONY: all install kafka-jars browser kustomize test lint typecheck demo bench bench-venv bench-worker clean distclean

all: test

$(BIN)/python:
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "error: $(PYTHON) not found; install Python >= 3.11 or run 'make PYTHON=/path/to/python3.11'" >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Reinstall when the dependency list changes.
$(INSTALL_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $@

install: $(INSTALL_STAMP)

# The local broker is assembled from Maven Central jars only; cached in deploy/local-kafka/libs.
$(KAFKA_STAMP): $(KAFKA_DIR)/pom.xml
	@command -v mvn >/dev/null 2>&1 || { echo "error: mvn (Apache Maven) not found; it fetches the Kafka broker jars" >&2; exit 1; }
	@command -v java >/dev/null 2>&1 || { echo "error: java (>= 17) not found; the local Kafka broker needs it" >&2; exit 1; }
	rm -rf $(KAFKA_DIR)/libs
	mvn -q -B -f $(KAFKA_DIR)/pom.xml dependency:copy-dependencies
	@touch $@

kafka-jars: $(KAFKA_STAMP)

# Debian's Chromium for the dashboard's browser test (tests/demo): installed with apt when
# absent (CI runs as root on Debian); no test tool downloads a browser.
CHROMIUM ?= /usr/bin/chromium
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
browser:
	@if [ -x "$(CHROMIUM)" ] || command -v chromium >/dev/null 2>&1; then :; \
	elif command -v apt-get >/dev/null 2>&1; then \
	  echo "installing Debian's chromium and chromium-driver for the browser test"; \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver \
	  || { $(SUDO) apt-get update -q && \
	       $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver; }; \
	else echo "error: Chromium not found and no apt-get; install chromium (needed by tests/demo)" >&2; exit 1; fi

# kustomize renders the Kubernetes manifests for tests/deploy: kubectl's own when installed,
# else kustomize built from the Go module proxy into build/bin (Go is on every machine here).
KUSTOMIZE_VERSION ?= v5.5.0
kustomize:
	@if command -v kubectl >/dev/null 2>&1 || command -v kustomize >/dev/null 2>&1 \
	   || [ -x build/bin/kustomize ]; then :; \
	elif command -v go >/dev/null 2>&1; then \
	  echo "building kustomize $(KUSTOMIZE_VERSION) into build/bin (tests/deploy renders the manifests)"; \
	  GOBIN=$(abspath build/bin) go install sigs.k8s.io/kustomize/kustomize/v5@$(KUSTOMIZE_VERSION); \
	else echo "error: neither kubectl, kustomize nor go found; tests/deploy needs kustomize" >&2; exit 1; fi

test: install kafka-jars browser kustomize bench-venv
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check stream anonymizers schemas tests benchmarks
	$(BIN)/mypy

demo: install kafka-jars
	$(BIN)/anonstream demo --duration $(DURATION) --rate $(RATE)

bench: install kafka-jars
	@for b in benchmarks/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

# The Quix Streams peer of `anonstream bench` runs in a virtualenv of its own (quixstreams pins
# pydantic below the project's version), with pinned packages (stream/local/bench/venv.py).
BENCH_VENV ?= build/bench-venv
BENCH_ARGS ?=
# Re-run (pip keeps what is already at the pinned version) when the pins change.
$(BENCH_VENV)/.bench-installed: stream/local/bench/venv.py | $(INSTALL_STAMP)
	rm -f $@
	$(BIN)/python -m stream.local.bench.venv $(BENCH_VENV) $(PYTHON)

bench-venv: $(BENCH_VENV)/.bench-installed

# The worker end to end beside the ceiling and the peers (under 10 minutes; the full run is
# `anonstream bench` without --quick). Extra options: make bench-worker BENCH_ARGS="--json".
bench-worker: install kafka-jars bench-venv
	$(BIN)/anonstream bench --quick --peer-python $(BENCH_VENV)/bin/python $(BENCH_ARGS)

# The documentation site (mkdocs-material, docs/ and mkdocs.yml), built with --strict into
# build/site: every nav entry and link must resolve. Its tools come from pyproject's `docs`
# extra, installed once (reinstalled when pyproject.toml changes); no plugin fetches anything
# at build time, so later builds run offline. (NO_MKDOCS_2_WARNING silences the theme's
# end-of-life banner, which is not a build warning.)
DOCS_STAMP := $(VENV)/.docs-installed
SITE_DIR ?= build/site

$(DOCS_STAMP): pyproject.toml $(INSTALL_STAMP)
	$(BIN)/python -m pip install --quiet -e '.[docs]'
	@touch $@

.PHONY: docs
docs: $(DOCS_STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir $(SITE_DIR)

clean:
	rm -rf .pytest_cache .mypy_cache .ruff_cache build *.egg-info

distclean: clean
	rm -rf $(VENV) $(KAFKA_DIR)/libs
