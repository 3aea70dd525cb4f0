"""Shared test set-up: where the prepared TFDS data is, and small helpers."""

from __future__ import annotations

import os
import pathlib

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
DEFAULT_DATA_DIR = REPO.parent / "shared" / "tfds"

# Tests read the real MNIST / CIFAR-10 prepared under ../shared/tfds unless told otherwise.
os.environ.setdefault("TFDS_DATA_DIR", str(DEFAULT_DATA_DIR))

# Tests check numbers, not speed, and most of their time is XLA compiling dozens of small
# programs: XLA's cheapest backend optimisation level cuts the zoo tests' time by about a third
# (measured: 197 s -> 136 s) with the same results. Experiments and benchmarks are unaffected.
# Set XLA_FLAGS yourself to test with other flags.
#
# Eight fake CPU devices for the multi-device tests (tests/test_parallel.py); every other test
# runs on the default device, device 0, as a user's single-device run does.
os.environ.setdefault(
    "XLA_FLAGS",
    "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true "
    "--xla_force_host_platform_device_count=8",
)

# The "auto" layers take oneDNN for every convolution it covers instead of timing each new
# shape against XLA (jaxdl.ops.onednn.tuning): the suite traces hundreds of small shapes, and
# its results must not depend on which implementation won a timing. The tuning has its own test.
os.environ.setdefault("JAXDL_CONV_TUNING", "0")


@pytest.fixture(scope="session")
def data_dir() -> str:
    """Where the prepared MNIST and CIFAR-10 are. Without them a test that needs them skips,
    saying why; with JAXDL_REQUIRE_DATA=1 (CI, where the data is given) it fails instead."""
    path = os.environ["TFDS_DATA_DIR"]
    missing = [name for name in ("mnist", "cifar10") if not os.path.isdir(os.path.join(path, name))]
    if missing:
        reason = (
            f"needs the prepared {' and '.join(missing)} under TFDS_DATA_DIR={path} "
            f"(see ../shared/README.md)"
        )
        if os.environ.get("JAXDL_REQUIRE_DATA") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    return path


# The longest test files first, so that `make test`'s two workers (pytest-xdist, one file per
# worker at a time) finish together instead of one of them starting the zoo last.
LONGEST_FIRST = [
    "test_zoo.py",
    "test_curriculum.py",
    "test_parallel.py",
    "test_cifar_resnet.py",
    "test_reliability.py",
    "test_multiprocess.py",
]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        name = item.path.name
        return LONGEST_FIRST.index(name) if name in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=rank)  # stable: tests keep their order within a file
