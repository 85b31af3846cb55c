# Everything installs into the project's own virtual environment, .venv.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run test lint bench broker clean

install: $(STAMP)

# The compiled core (setup.py's COMPILED: each module with a .pxd, and its .py) is rebuilt
# whenever its source changes.
CORE_PXD := $(wildcard detector/core/*.pxd)
CORE_SOURCES := $(CORE_PXD) $(CORE_PXD:.pxd=.py)

$(STAMP): pyproject.toml setup.py $(CORE_SOURCES)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[broker,dev,tuning]'
	touch $(STAMP)

run: install
	$(BIN)/detector demo

# The router's tests run a real Alertmanager (Debian's prometheus-alertmanager).
ALERTMANAGER := /usr/bin/prometheus-alertmanager

# The HTML report's test (tests/unit/test_report.py) opens it in headless Chromium
# (Debian's chromium).
CHROMIUM := /usr/bin/chromium

test: install $(ALERTMANAGER) $(CHROMIUM)
	$(BIN)/python -m pytest

$(ALERTMANAGER):
	@if [ "$$(id -u)" != 0 ]; then echo "make test needs $(ALERTMANAGER): run 'apt-get install prometheus-alertmanager' as root" >&2; exit 1; fi
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus-alertmanager

$(CHROMIUM):
	@if [ "$$(id -u)" != 0 ]; then echo "make test needs $(CHROMIUM): run 'apt-get install chromium' as root" >&2; exit 1; fi
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium

lint: install
	$(BIN)/ruff check detector tests
	$(BIN)/ruff format --check detector tests
	$(BIN)/mypy

bench: install
	$(BIN)/detector bench --output docs/benchmarks.md

broker: install
	$(BIN)/detector broker

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
