# The README's commands. `make install` builds .venv; everything else runs inside it.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export TFDS_DATA_DIR ?= $(abspath ../shared/tfds)

.PHONY: install test lint bench clean

install:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'

test:
	$(BIN)/python -m pytest -q

lint:
	$(BIN)/ruff check jaxdl experiments tests benchmarks
	$(BIN)/ruff format --check jaxdl experiments tests benchmarks

bench:
	$(BIN)/python -m benchmarks.train_throughput

clean:
	rm -rf $(VENV) .pytest_cache
