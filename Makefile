# Everything installs into the project's own virtual environment, .venv.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run test lint bench broker clean

install: $(STAMP)

# The compiled hot path is rebuilt whenever its source changes.
$(STAMP): pyproject.toml setup.py detector/core/_kernel.pyx
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[broker,dev]'
	touch $(STAMP)

run: install
	$(BIN)/detector demo

test: install
	$(BIN)/python -m pytest

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
