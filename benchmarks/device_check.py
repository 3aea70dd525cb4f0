"""What jaxdl does on the accelerator this machine has, in one short command.

    python -m benchmarks.device_check                      # on a GPU or TPU machine
    python -m benchmarks.device_check --data_dir ../shared/tfds
    python -m benchmarks.device_check --smoke              # every check at toy sizes, any backend

Prints the backend, each device and its memory, then three checks:

1. ResNet-20 (32x32, batch 256) and ResNet-50 (224x224, batch 64) train-step images/s in
   float32 and bfloat16 on flax's plain layers (what "auto" is on accelerators): one jitted
   step (SGD with Nesterov momentum, cross-entropy), warmed up, median (min-max) of 5 timings
   of 10 steps, each blocked on its result;
2. `pmap` and `sharded` over all devices against `single`: ResNet-20's parameters after one
   step on the same global batch (float32, highest matmul precision, flax's plain layers as
   `tests/test_parallel.py` compares them), the largest difference against 5e-4;
3. a 2-epoch CIFAR-10 ResNet-20 run through `jaxdl.train` (the real loop, data and
   evaluation), its test accuracy and images/s; skipped, saying so, when the TFDS data is not
   found.

On the CPU backend it says "no accelerator" and stops (under a minute, mostly JAX's start):
the CPU has its own benchmarks (`benchmarks.train_throughput`). `--smoke` runs every check at
toy sizes on whatever backend there is, which is how the script itself is tested. Exits 1 when
a parallel mode disagrees with `single`.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from typing import Any

import jax
import jax.numpy as jnp

from jaxdl import models, parallel
from jaxdl.optim import OptimizerConfig, create_optimizer
from jaxdl.state import create_train_state
from jaxdl.step import train_step

# (model, image side, batch) per check; --smoke shrinks them
FULL = {"throughput": [("resnet20", 32, 256), ("resnet50", 224, 64)], "steps": 10, "repeats": 5}
SMOKE = {"throughput": [("resnet20", 32, 8), ("resnet50", 32, 2)], "steps": 2, "repeats": 2}
# The layers every check uses: "auto" is XLA's own on accelerators; the smoke run on a CPU
# takes them too, skipping the per-machine timing of oneDNN against XLA.
LAYERS = "plain"
PARALLEL_TOLERANCE = 5e-4  # one step's float32 rounding between device splits (test_parallel)


def gib(count: float) -> str:
    return f"{count / 2**30:.1f} GiB"


def describe_devices() -> list[str]:
    """One line for the backend, then one per local device with its memory where the backend
    reports it."""
    lines = [
        f"jax {jax.__version__}, backend {jax.default_backend()}, "
        f"{jax.device_count()} device(s) in {jax.process_count()} process(es)"
    ]
    for device in jax.local_devices():
        stats = device.memory_stats() or {}
        memory = f", memory {gib(stats['bytes_limit'])}" if "bytes_limit" in stats else ""
        lines.append(f"  {device.id}: {device.device_kind}{memory}")
    return lines


def random_batch(size: int, side: int, dtype: Any, seed: int = 1) -> dict[str, jax.Array]:
    key_image, key_label = jax.random.split(jax.random.PRNGKey(seed))
    return {
        "image": jax.random.normal(key_image, (size, side, side, 3), dtype),
        "label": jax.random.randint(key_label, (size,), 0, 10),
    }


def resnet_state(
    name: str, side: int, dtype: Any, layers: str, num_classes: int = 10, mode: str = "single"
):
    """A fresh train state of zoo model `name` for side x side x 3 images, set up for parallel
    mode `mode` (BatchNorm's pmap axis)."""
    model = models.create(name, num_classes=num_classes, dtype=dtype, layers=layers)
    model = parallel.model_for_mode(model, mode)
    config = OptimizerConfig(name="nesterov", lr=0.1, momentum=0.9, schedule="constant")
    tx, _ = create_optimizer(config, 1, 1)
    return create_train_state(model, tx, jax.random.PRNGKey(0), (1, side, side, 3))


def train_rate(name: str, side: int, batch_size: int, dtype: Any, steps: int, repeats: int):
    """(median, min, max) train images/s of zoo model `name`, and the compile seconds."""
    state = resnet_state(name, side, dtype, LAYERS, num_classes=1000 if side > 64 else 10)
    batch = random_batch(batch_size, side, dtype)
    start = time.perf_counter()
    step = jax.jit(train_step, donate_argnums=0).lower(state, batch).compile()
    state, metrics = step(state, batch)
    jax.block_until_ready(metrics)
    compile_seconds = time.perf_counter() - start
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(steps):
            state, metrics = step(state, batch)
        jax.block_until_ready(metrics)
        rates.append(steps * batch_size / (time.perf_counter() - start))
    return (statistics.median(rates), min(rates), max(rates)), compile_seconds


def parallel_difference(mode: str, batch_size: int) -> float:
    """Largest |parameter difference| between `mode` over all local devices and `single`
    after one ResNet-20 step on the same global batch."""
    batch = random_batch(batch_size, 32, jnp.float32)
    results = []
    with jax.default_matmul_precision("highest"):
        for name in ("single", mode):
            runner = parallel.create_runner(name, l2_weight=5e-4)
            state = resnet_state("resnet20", 32, jnp.float32, LAYERS, mode=name)
            state = runner.put_state(state)
            state, _ = runner.train(state, batch)
            results.append(jax.device_get(runner.local_state(state).params))
    differences = jax.tree.map(lambda a, b: float(jnp.max(jnp.abs(a - b))), *results)
    return max(jax.tree.leaves(differences))


def cifar_run(data_dir: str | None, smoke: bool) -> str:
    """The 2-epoch CIFAR-10 ResNet-20 line, or why it was skipped."""
    from jaxdl.config import TrainConfig
    from jaxdl.train import train_and_evaluate

    directory = data_dir or os.environ.get("TFDS_DATA_DIR")
    if not directory or not os.path.isdir(os.path.join(directory, "cifar10")):
        return f"CIFAR-10: skipped, no TFDS cifar10 under {directory!r} (pass --data_dir)"
    with tempfile.TemporaryDirectory() as workdir:
        config = TrainConfig(
            dataset="cifar10",
            data_dir=directory,
            model="resnet20",
            epochs=1 if smoke else 2,
            batch_size=128,
            lr=0.1,
            optimizer="nesterov",
            weight_decay=5e-4,
            crop_padding=4,
            flip=True,
            train_limit=512 if smoke else None,
            test_limit=500 if smoke else None,
            val_size=100 if smoke else 5000,
            plots=False,
            quiet=True,
            layers=LAYERS,
            workdir=workdir,
        )
        results = train_and_evaluate(config)
    return (
        f"CIFAR-10 ResNet-20, {results['epochs_run']} epochs: test accuracy "
        f"{100 * results['test_accuracy']:.2f} %, {results['images_per_second']:,.0f} img/s, "
        f"{results['train_seconds']:.0f} s training"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="every check at toy sizes")
    parser.add_argument("--data_dir", default=None, help="TFDS data (default $TFDS_DATA_DIR)")
    args = parser.parse_args(argv)
    for line in describe_devices():
        print(line, flush=True)
    if jax.default_backend() == "cpu" and not args.smoke:
        print("no accelerator: this machine runs JAX on its CPU; nothing to measure here "
              "(benchmarks.train_throughput measures the CPU; --smoke runs these checks at toy "
              "sizes)")  # fmt: skip
        return 0
    sizes = SMOKE if args.smoke else FULL
    for name, side, batch_size in sizes["throughput"]:
        for dtype in (jnp.float32, jnp.bfloat16):
            (median, low, high), seconds = train_rate(
                name, side, batch_size, dtype, sizes["steps"], sizes["repeats"]
            )
            print(
                f"{name} {side}x{side} batch {batch_size} {jnp.dtype(dtype).name}: train "
                f"{median:,.0f} img/s ({low:,.0f}-{high:,.0f}), compiled in {seconds:.1f} s",
                flush=True,
            )
    failed = False
    count = jax.local_device_count()
    for mode in ("pmap", "sharded"):
        difference = parallel_difference(mode, 8 * count if args.smoke else 32 * count)
        verdict = "ok" if difference <= PARALLEL_TOLERANCE else "DIFFERS"
        failed |= difference > PARALLEL_TOLERANCE
        print(
            f"{mode} over {count} device(s) vs single: largest parameter difference after one "
            f"step {difference:.1e} ({verdict}; tolerance {PARALLEL_TOLERANCE:.0e})",
            flush=True,
        )
    print(cifar_run(args.data_dir, args.smoke), flush=True)
    return int(failed)


if __name__ == "__main__":
    sys.exit(main())
