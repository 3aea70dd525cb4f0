"""Pure train-step and eval-step throughput of a zoo model on synthetic CIFAR-shaped batches.

    python -m benchmarks.step_throughput --model resnet20 --batch_size 128
    python -m benchmarks.step_throughput --compare_xla_default   # jaxdl's XLA flags vs jaxlib's
    python -m benchmarks.step_throughput --layers plain,fast    # layer implementations, alternated
    python -m benchmarks.step_throughput --layers auto,plain --dtypes float32,bfloat16

The step is the one the experiments run (`jaxdl.step.train_step`, Nesterov SGD, L2 weight
decay, donated state), compiled first (compile time reported apart), then timed `--repeats`
times over `--steps` steps each with `block_until_ready`; the median and min–max are printed.
Several `--layers` and `--dtypes` (the layers' compute dtype; parameters stay float32) are
each compiled, then timed in turn, repeat by repeat. `--compare_xla_default` runs this script
alternately in child processes with and without jaxdl's default XLA flags (flags only take
effect when XLA starts), `--rounds` times each.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import subprocess
import sys
import time


def measure(
    model_name: str, batch_size: int, steps: int, repeats: int, layers: str = "auto"
) -> dict:
    return measure_alternately(model_name, batch_size, steps, repeats, [layers])[layers]


def measure_alternately(
    model_name: str,
    batch_size: int,
    steps: int,
    repeats: int,
    layer_impls: list[str],
    dtypes: tuple[str, ...] = ("float32",),
) -> dict[str, dict]:
    """Compiles the step once per layer implementation and dtype, then times them in turn,
    repeat by repeat, so that drifts of the shared machine fall on all of them alike. Keyed
    by the layer implementation, or "layers dtype" when several dtypes are timed."""
    runs = {
        impl if len(dtypes) == 1 else f"{impl} {dtype}": _compile(
            model_name, batch_size, impl, dtype
        )
        for dtype in dtypes
        for impl in layer_impls
    }
    results = {
        impl: {**run["result"], "train_img_s": [], "eval_img_s": []} for impl, run in runs.items()
    }
    for _ in range(repeats):
        for impl, run in runs.items():
            results[impl]["train_img_s"].append(run["time_train"](steps))
            results[impl]["eval_img_s"].append(run["time_eval"](steps))
    for result in results.values():
        result["train_gflop_s"] = (
            statistics.median(result["train_img_s"]) / batch_size * result["train_flops"] / 1e9
        )
    return results


def synthetic_state_and_batch(
    model_name: str, batch_size: int, layers: str = "auto", dtype: str = "float32"
):
    """A fresh train state of a zoo model (10 classes, 32x32x3 input, Nesterov SGD at lr 0.1,
    layers computing in `dtype`) and one random CIFAR-shaped batch: what every step benchmark
    times."""
    import jax

    from jaxdl import models
    from jaxdl.config import DTYPES
    from jaxdl.optim import OptimizerConfig, create_optimizer
    from jaxdl.state import create_train_state

    model = models.create(model_name, num_classes=10, layers=layers, dtype=DTYPES[dtype])
    tx, _ = create_optimizer(OptimizerConfig(name="nesterov", lr=0.1, schedule="constant"), 1, 1)
    state = create_train_state(model, tx, jax.random.PRNGKey(0), (1, 32, 32, 3))
    key = jax.random.PRNGKey(1)
    batch = {
        "image": jax.random.normal(key, (batch_size, 32, 32, 3)),
        "label": jax.random.randint(key, (batch_size,), 0, 10),
    }
    return state, batch


def _compile(model_name: str, batch_size: int, layers: str, dtype: str = "float32") -> dict:
    import jax

    from jaxdl.step import eval_step, train_step
    from jaxdl.tools.cost import xla_flops

    state, batch = synthetic_state_and_batch(model_name, batch_size, layers, dtype)
    train = jax.jit(functools.partial(train_step, l2_weight=5e-4), donate_argnums=0)
    evaluate = jax.jit(eval_step)

    start = time.perf_counter()
    compiled_train = train.lower(state, batch).compile()
    compiled_eval = evaluate.lower(state, batch).compile()
    compile_seconds = time.perf_counter() - start
    state, _ = compiled_train(state, batch)  # warm-up
    jax.block_until_ready(compiled_eval(state, batch))

    def time_train(steps: int) -> float:
        nonlocal state
        start = time.perf_counter()
        for _ in range(steps):
            state, metrics = compiled_train(state, batch)
        jax.block_until_ready((state, metrics))
        return steps * batch_size / (time.perf_counter() - start)

    def time_eval(steps: int) -> float:
        start = time.perf_counter()
        for _ in range(steps):
            out = compiled_eval(state, batch)
        jax.block_until_ready(out)
        return steps * batch_size / (time.perf_counter() - start)

    result = {
        "model": model_name,
        "layers": layers,
        "batch_size": batch_size,
        "compile_seconds": compile_seconds,
        "train_flops": xla_flops(compiled_train),
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "backend": jax.default_backend(),
        "dtype": dtype,
    }
    return {"result": result, "time_train": time_train, "time_eval": time_eval}


def describe(result: dict, label: str = "") -> str:
    def spread(rates):
        return f"{statistics.median(rates):,.0f} img/s ({min(rates):,.0f}–{max(rates):,.0f})"

    return (
        f"{label}{result['model']} batch {result['batch_size']}, layers {result['layers']}, "
        f"{result['dtype']}: "
        f"train {spread(result['train_img_s'])}, "
        f"eval {spread(result['eval_img_s'])}, {result['train_gflop_s']:.0f} GFLOP/s in "
        f"training, compile {result['compile_seconds']:.1f} s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet20")
    parser.add_argument("--batch_size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--layers",
        default="auto",
        help="layer implementation(s), comma-separated to time several alternately "
        "(auto, fast, plain; see jaxdl.nn.conv)",
    )
    parser.add_argument(
        "--dtypes", default="float32", help="compute dtype(s), comma-separated: float32, bfloat16"
    )
    parser.add_argument("--compare_xla_default", action="store_true")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--json", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if not args.compare_xla_default:
        import jaxdl  # noqa: F401  (applies jaxdl's XLA flags unless JAXDL_NO_XLA_FLAGS is set)

        impls = args.layers.split(",")
        dtypes = tuple(args.dtypes.split(","))
        results = measure_alternately(
            args.model, args.batch_size, args.steps, args.repeats, impls, dtypes
        )
        for result in results.values():
            print(json.dumps(result) if args.json else describe(result))
        return
    child = [
        sys.executable,
        "-m",
        "benchmarks.step_throughput",
        "--model",
        args.model,
        "--batch_size",
        str(args.batch_size),
        "--steps",
        str(args.steps),
        "--repeats",
        str(args.repeats),
        "--layers",
        args.layers,
        "--dtypes",
        args.dtypes,
        "--json",
    ]
    settings = {"jaxdl default flags": {}, "jaxlib default flags": {"JAXDL_NO_XLA_FLAGS": "1"}}
    results: dict[str, list[dict]] = {label: [] for label in settings}
    for _ in range(args.rounds):
        for label, env in settings.items():
            output = subprocess.run(
                child, env={**os.environ, **env}, check=True, capture_output=True, text=True
            ).stdout
            results[label].append(json.loads(output.strip().splitlines()[-1]))
    for label, runs in results.items():
        merged = dict(runs[0])
        merged["train_img_s"] = [r for run in runs for r in run["train_img_s"]]
        merged["eval_img_s"] = [r for run in runs for r in run["eval_img_s"]]
        print(describe(merged, f"{label} [{merged['xla_flags'] or 'none'}]: "))


if __name__ == "__main__":
    main()
