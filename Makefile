# The README's commands. `make install` builds .venv; everything else runs inside it.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export TFDS_DATA_DIR ?= $(abspath ../shared/tfds)

.PHONY: install test test-slow lint bench clean

# The last line builds the CPU kernels (jaxdl/ops/onednn/conv.cc and batch_norm.cc, ~8 s), unless
# they are up to date; if they cannot be built it says why in one line and jaxdl runs on XLA.
install:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	$(BIN)/python -m jaxdl.ops.onednn.build

# Two workers, one test file each (module fixtures such as the short CIFAR-10 run are built once):
# most of the suite's time is XLA compiling small programs on one thread, so two workers use
# both cores. `make test TEST_WORKERS=0` runs in one process.
TEST_WORKERS ?= 2
test:
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile -m "not slow"

# The tests marked slow (each longer than ~20 s); CI runs them after `make test`.
test-slow:
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile -m slow

lint:
	$(BIN)/ruff check jaxdl experiments tests benchmarks
	$(BIN)/ruff format --check jaxdl experiments tests benchmarks

bench:
	$(BIN)/python -m benchmarks.train_throughput
	$(BIN)/python -m benchmarks.conv_layers --models resnet20,resnet18_cifar

clean:
	rm -rf $(VENV) .pytest_cache jaxdl/ops/onednn/_build
