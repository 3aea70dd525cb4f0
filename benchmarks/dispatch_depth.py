"""What bounding the host's lead costs: train-step images/s with `jaxdl.dispatch.BoundedDispatch`
at depths 1, 2 (the loop's) and 4, against unbounded dispatch, on one device.

    python -m benchmarks.dispatch_depth [--rounds 5] [--steps 40]

Two steps: the MNIST MLP at batch 128 (about a millisecond a step, where dispatch shows) and
ResNet-20 at batch 128 (compute-bound). The settings run in turn, round after round, each
timing `--steps` steps blocked on the last; figures are the median (min-max) over rounds.
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax

from jaxdl import models
from jaxdl.dispatch import BoundedDispatch
from jaxdl.optim import OptimizerConfig, create_optimizer
from jaxdl.state import create_train_state
from jaxdl.step import train_step

DEPTHS = (None, 1, 2, 4)  # None: unbounded


def setup(name: str, shape: tuple[int, ...]):
    model = models.create(name, num_classes=10)
    tx, _ = create_optimizer(OptimizerConfig(name="adam", lr=1e-3, schedule="constant"), 1, 1)
    state = create_train_state(model, tx, jax.random.PRNGKey(0), (1, *shape))
    batch = {
        "image": jax.random.normal(jax.random.PRNGKey(1), (128, *shape)),
        "label": jax.random.randint(jax.random.PRNGKey(2), (128,), 0, 10),
    }
    step = jax.jit(train_step, donate_argnums=0)
    state, metrics = step(state, batch)
    jax.block_until_ready(metrics)
    return {"state": state, "step": step, "batch": batch}


def run(setting: dict, depth: int | None, steps: int) -> float:
    bound = BoundedDispatch(depth) if depth else (lambda outputs: outputs)
    state, step, batch = setting["state"], setting["step"], setting["batch"]
    start = time.perf_counter()
    for _ in range(steps):
        state, metrics = step(state, batch)
        bound(metrics)
    jax.block_until_ready(metrics)
    setting["state"] = state
    return steps * 128 / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=40)
    args = parser.parse_args()
    settings = {"mlp": setup("mlp", (28, 28, 1)), "resnet20": setup("resnet20", (32, 32, 3))}
    rates = {(name, depth): [] for name in settings for depth in DEPTHS}
    for _ in range(args.rounds):
        for (name, depth), found in rates.items():
            found.append(run(settings[name], depth, args.steps))
    print(f"jax {jax.__version__}, {jax.devices()[0].device_kind}; train img/s, median (min-max)")
    for (name, depth), found in rates.items():
        label = "unbounded" if depth is None else f"depth {depth}"
        print(
            f"{name:9s} {label:9s} {statistics.median(found):8,.0f} "
            f"({min(found):,.0f}-{max(found):,.0f})"
        )


if __name__ == "__main__":
    main()
