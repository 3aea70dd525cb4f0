"""jaxdl against PyTorch on this machine: train- and eval-step images/s, timed alternately.

    python -m benchmarks.train_throughput                      # resnet20, resnet56, resnet18_cifar
    python -m benchmarks.train_throughput --models resnet20 --repeats 7
    python -m benchmarks.train_throughput --models airbench94  # the speedrun's net, batch 1024
    python -m benchmarks.train_throughput --models resnet20 --isolate 2  # a process per candidate
    python -m benchmarks.train_throughput --models resnet20 --isolate 2 --dtype bfloat16

For each model (batch 128, airbench94 at its recipe's 1024; float32, SGD with Nesterov momentum 0.9,
lr 0.1, weight decay 5e-4 as an L2 term, cross-entropy) it builds jaxdl's jitted `train_step` /
`eval_step` (default layers: oneDNN where built; the XLA:CPU "fast" and flax's plain layers for
reference) and the same network in PyTorch in four settings: eager or `torch.compile`, NCHW or
channels_last. Every candidate is warmed up first (compile time reported apart, then
`--warmup_steps` untimed steps per phase: the first steps of a process grow its allocator's
heap, a page fault per new page), then the
candidates are timed in turn, repeat after repeat, so that the shared machine's drifts fall on all
of them alike; each figure is the median (min–max) of `--repeats` timings of `--steps` steps,
blocked on the result. It also measures an f32 matmul's GFLOP/s as the machine's practical peak
and gives jaxdl's training GFLOP/s as a share of it (XLA's cost analysis of the step lowered with
plain layers: it cannot see into the oneDNN kernels' custom calls).

`--dtype bfloat16` computes in bfloat16 with float32 parameters on both sides: jaxdl's layers
with `dtype=bfloat16` (oneDNN's bfloat16 convolutions where the CPU has bfloat16
instructions), PyTorch under `torch.autocast("cpu", torch.bfloat16)`, its mixed precision.

With `--isolate ROUNDS`, every candidate runs in a child process of its own instead, the
processes in turn for ROUNDS rounds, and the figures pool all rounds. Candidates sharing a
process slow each other down: PyTorch eager channels_last trained airbench94 at ~380 img/s alone
and ~327 img/s timed in turn with the other three PyTorch settings in one process (BENCHMARKS.md).
Isolated, no candidate's thread pool, allocator or caches are disturbed by another's, at the
price of drifts between processes (about ±15 % here: use several rounds).

PyTorch is an optional benchmark dependency (`pip install torch==2.13.0` installs the CPU build
here; never a CUDA build); without it the jaxdl figures are printed alone.
"""

from __future__ import annotations

import argparse
import functools
import json
import statistics
import subprocess
import sys
import time

BATCH = 128
BATCH_SIZES = {"airbench94": 1024}  # the speedrun's batch; every other model BATCH
LR, MOMENTUM, WEIGHT_DECAY = 0.1, 0.9, 5e-4
# model -> (torch builder arguments): blocks per stage, stage widths, shortcut option
ARCHITECTURES = {
    "resnet20": ((3, 3, 3), (16, 32, 64), "A"),
    "resnet56": ((9, 9, 9), (16, 32, 64), "A"),
    "resnet18_cifar": ((2, 2, 2, 2), (64, 128, 256, 512), "B"),
    "airbench94": None,  # torch_airbench
}


def batch_size(model_name: str) -> int:
    return BATCH_SIZES.get(model_name, BATCH)


def spread(rates: list[float]) -> str:
    return f"{statistics.median(rates):,.0f} ({min(rates):,.0f}–{max(rates):,.0f})"


def matmul_peak(repeats: int = 5, size: int = 2048) -> float:
    """GFLOP/s of a jitted f32 [size, size] @ [size, size], median of `repeats`."""
    import jax

    a = jax.random.normal(jax.random.PRNGKey(0), (size, size))
    f = jax.jit(lambda a: a @ a)
    f(a).block_until_ready()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        f(a).block_until_ready()
        times.append(time.perf_counter() - start)
    return 2 * size**3 / statistics.median(times) / 1e9


class Candidate:
    """One implementation of one phase: `run(steps)` does `steps` steps and blocks."""

    def __init__(self, name: str, run, compile_seconds: float, batch: int):
        self.name, self.run, self.compile_seconds, self.batch = name, run, compile_seconds, batch
        self.rates: list[float] = []

    def time(self, steps: int) -> None:
        start = time.perf_counter()
        self.run(steps)
        self.rates.append(steps * self.batch / (time.perf_counter() - start))


def jaxdl_candidates(
    model_name: str, layers: str, dtype: str = "float32"
) -> tuple[Candidate, Candidate, float, int]:
    """(train, eval, train FLOPs per step, parameter count) for jaxdl with `layers` computing
    in `dtype`."""
    import jax

    from jaxdl import models
    from jaxdl.config import DTYPES
    from jaxdl.optim import OptimizerConfig, create_optimizer
    from jaxdl.state import count_params, create_train_state
    from jaxdl.step import eval_step, train_step
    from jaxdl.tools.cost import xla_flops

    model = models.create(model_name, num_classes=10, layers=layers, dtype=DTYPES[dtype])
    config = OptimizerConfig(name="nesterov", lr=LR, momentum=MOMENTUM, schedule="constant")
    tx, _ = create_optimizer(config, 1, 1)
    state = create_train_state(model, tx, jax.random.PRNGKey(0), (1, 32, 32, 3))
    key = jax.random.PRNGKey(1)
    size = batch_size(model_name)
    batch = {
        "image": jax.random.normal(key, (size, 32, 32, 3)),
        "label": jax.random.randint(key, (size,), 0, 10),
    }
    start = time.perf_counter()
    train = (
        jax.jit(functools.partial(train_step, l2_weight=WEIGHT_DECAY), donate_argnums=0)
        .lower(state, batch)
        .compile()
    )
    evaluate = jax.jit(eval_step).lower(state, batch).compile()
    plain = models.create(model_name, num_classes=10, layers="plain", dtype=DTYPES[dtype])
    flops = xla_flops(
        jax.jit(functools.partial(train_step, l2_weight=WEIGHT_DECAY))
        .lower(state.replace(apply_fn=plain.apply), batch)
    )  # fmt: skip
    state, _ = train(state, batch)
    jax.block_until_ready(evaluate(state, batch))
    compile_seconds = time.perf_counter() - start
    holder = {"state": state}

    def run_train(steps):
        for _ in range(steps):
            holder["state"], metrics = train(holder["state"], batch)
        jax.block_until_ready(metrics)

    def run_eval(steps):
        for _ in range(steps):
            out = evaluate(holder["state"], batch)
        jax.block_until_ready(out)

    label = "jaxdl" if layers == "auto" else f"jaxdl {layers} layers"
    return (
        Candidate(label, run_train, compile_seconds, size),
        Candidate(label, run_eval, 0.0, size),
        flops,
        count_params(state.params),
    )


def torch_resnet(model_name: str):
    """The CIFAR ResNet of `ARCHITECTURES[model_name]` in PyTorch (torchvision-style init is
    irrelevant to speed; layers and shapes match jaxdl's model)."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    blocks, widths, option = ARCHITECTURES[model_name]

    class Block(nn.Module):
        def __init__(self, cin, cout, stride):
            super().__init__()
            self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(cout)
            self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(cout)
            self.stride, self.extra = stride, cout - cin
            self.projection = None
            if option == "B" and (stride != 1 or cin != cout):
                self.projection = nn.Sequential(
                    nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)
                )

        def shortcut(self, x):
            if self.projection is not None:
                return self.projection(x)
            if self.stride > 1:
                x = x[:, :, :: self.stride, :: self.stride]
            if self.extra:
                x = F.pad(x, (0, 0, 0, 0, self.extra // 2, self.extra - self.extra // 2))
            return x

        def forward(self, x):
            out = F.relu(self.bn1(self.conv1(x)))
            return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))

    class ResNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = nn.Sequential(
                nn.Conv2d(3, widths[0], 3, 1, 1, bias=False), nn.BatchNorm2d(widths[0]), nn.ReLU()
            )
            layers, cin = [], widths[0]
            for stage, (count, width) in enumerate(zip(blocks, widths, strict=True)):
                for index in range(count):
                    stride = 2 if stage > 0 and index == 0 else 1
                    layers.append(Block(cin, width, stride))
                    cin = width
            self.blocks = nn.Sequential(*layers)
            self.head = nn.Linear(cin, 10)

        def forward(self, x):
            x = self.blocks(self.stem(x))
            return self.head(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))

    return ResNet()


def torch_airbench():
    """airbench94's network in PyTorch as the reference writes it: a 2x2 whitening convolution
    with bias (3 -> 24; its kernel never trains), GELU, three groups (conv, 2x2 max-pool,
    BatchNorm, GELU, conv, BatchNorm, GELU) of 64, 256, 256 channels, a 3x3 max-pool, a bias-free
    linear layer / 9. BatchNorm keeps 0.6 of its running statistics per step, eps 1e-12, and
    trains only its bias; 3x3 convolutions start as identities on their first input-many filters
    (dirac) and PyTorch's default init elsewhere. `benchmarks.torch_airbench` trains it."""
    import torch
    from torch import nn

    def conv(cin, cout):
        layer = nn.Conv2d(cin, cout, 3, padding="same", bias=False)
        with torch.no_grad():
            nn.init.dirac_(layer.weight[: min(cin, cout)])
        return layer

    def norm(channels):
        layer = nn.BatchNorm2d(channels, eps=1e-12, momentum=0.4)  # torch's momentum = 1 - 0.6
        layer.weight.requires_grad = False
        return layer

    def group(cin, cout):
        return nn.Sequential(
            conv(cin, cout), nn.MaxPool2d(2), norm(cout), nn.GELU(),
            conv(cout, cout), norm(cout), nn.GELU(),
        )  # fmt: skip

    class Scale(nn.Module):
        def forward(self, x):
            return x / 9

    whiten = nn.Conv2d(3, 24, 2, padding=0, bias=True)
    whiten.weight.requires_grad = False
    nn.init.zeros_(whiten.bias)
    return nn.Sequential(
        whiten, nn.GELU(),
        group(24, 64), group(64, 256), group(256, 256),
        nn.MaxPool2d(3), nn.Flatten(), nn.Linear(256, 10, bias=False), Scale(),
    )  # fmt: skip


def torch_candidates(model_name: str, compiled: bool, channels_last: bool, dtype: str = "float32"):
    """(train, eval, parameter count) for PyTorch in one of the four settings, under autocast
    to `dtype` when it is bfloat16."""
    import torch

    autocast = functools.partial(
        torch.autocast, "cpu", dtype=torch.bfloat16, enabled=dtype == "bfloat16"
    )

    torch.manual_seed(0)
    model = torch_airbench() if model_name == "airbench94" else torch_resnet(model_name)
    size = batch_size(model_name)
    images = torch.randn(size, 3, 32, 32)
    labels = torch.randint(0, 10, (size,))
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        images = images.contiguous(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(
        model.parameters(), lr=LR, momentum=MOMENTUM, nesterov=True, weight_decay=WEIGHT_DECAY
    )
    loss_fn = torch.nn.CrossEntropyLoss()

    def train_once(images, labels):
        optimizer.zero_grad(set_to_none=True)
        with autocast():
            loss = loss_fn(model(images), labels)
        loss.backward()
        optimizer.step()
        return loss

    def eval_once(images):
        with torch.no_grad(), autocast():
            return model(images)

    forward = model
    if compiled:
        forward = torch.compile(model)
        train_once = torch.compile(train_once)

        def eval_once(images):  # noqa: F811 (the compiled model's forward)
            with torch.no_grad(), autocast():
                return forward(images)

    start = time.perf_counter()
    model.train()
    for _ in range(2):
        train_once(images, labels)
    model.eval()
    for _ in range(2):
        eval_once(images)
    compile_seconds = time.perf_counter() - start

    def run_train(steps):
        model.train()
        for _ in range(steps):
            loss = train_once(images, labels)
        loss.item()

    def run_eval(steps):
        model.eval()
        for _ in range(steps):
            out = eval_once(images)
        out.sum().item()

    layout = "channels_last" if channels_last else "NCHW"
    name = f"torch {'compile' if compiled else 'eager'}, {layout}"
    params = sum(p.numel() for p in model.parameters())
    return (
        Candidate(name, run_train, compile_seconds, size),
        Candidate(name, run_eval, 0.0, size),
        params,
    )


# Every candidate, by the name its figures are printed under.
CANDIDATES = (
    "jaxdl",
    "jaxdl fast layers",
    "jaxdl plain layers",
    "torch eager, NCHW",
    "torch eager, channels_last",
    "torch compile, NCHW",
    "torch compile, channels_last",
)


def measure(model_name: str, args, names: tuple[str, ...]) -> dict:
    """Builds the candidates `names` (of `CANDIDATES`) for one model, times them in turn
    `args.repeats` times per phase, and returns JSON-able results: parameter counts, jaxdl's
    train FLOPs per step, and per phase a list of {name, rates, compile_seconds}."""
    result = {"params": {}, "flops": None, "train": [], "eval": []}
    trains, evals = [], []
    for name in names:
        if name.startswith("jaxdl"):
            layers = name.removeprefix("jaxdl").removesuffix("layers").strip() or "auto"
            train, evaluate, flops, result["params"]["jaxdl"] = jaxdl_candidates(
                model_name, layers, args.dtype
            )
            if layers == "auto":
                result["flops"] = flops
        else:
            compiled, channels_last = "compile" in name, "channels_last" in name
            try:
                train, evaluate, result["params"]["torch"] = torch_candidates(
                    model_name, compiled, channels_last, args.dtype
                )
            except Exception as error:  # torch.compile needs a working C++ toolchain
                print(f"  {model_name}: {name} failed: {error!r:.200}")
                continue
        trains.append(train)
        evals.append(evaluate)
    for phase, candidates in (("train", trains), ("eval", evals)):
        for candidate in candidates:  # steady state: allocators' heaps and caches grown
            candidate.run(args.warmup_steps)
        for _ in range(args.repeats):
            for candidate in candidates:
                candidate.time(args.steps)
        result[phase] = [
            {"name": c.name, "rates": c.rates, "compile_seconds": c.compile_seconds}
            for c in candidates
        ]
    return result


def merge(results: list[dict]) -> dict:
    """One result from several (`measure`'s, from alternating child processes): every
    candidate's rates concatenated, its compile time the median of the runs'."""
    merged = {"params": {}, "flops": None, "train": [], "eval": []}
    for result in results:
        merged["params"].update(result["params"])
        merged["flops"] = merged["flops"] or result["flops"]
    for phase in ("train", "eval"):
        by_name: dict[str, dict] = {}
        for result in results:
            for candidate in result[phase]:
                entry = by_name.setdefault(
                    candidate["name"], {"name": candidate["name"], "rates": [], "compiles": []}
                )
                entry["rates"] += candidate["rates"]
                entry["compiles"].append(candidate["compile_seconds"])
        merged[phase] = [
            {
                "name": e["name"],
                "rates": e["rates"],
                "compile_seconds": statistics.median(e["compiles"]),
            }
            for e in by_name.values()
        ]
    return merged


def report(model_name: str, result: dict, peak: float) -> None:
    """Prints each phase's candidates and the line jaxdl / best PyTorch."""
    params = result["params"]
    if "torch" in params and params["torch"] != params.get("jaxdl", params["torch"]):
        raise SystemExit(
            f"{model_name}: PyTorch model has {params['torch']:,} parameters, "
            f"jaxdl's {params['jaxdl']:,}; the benchmark compares equal networks only"
        )
    size = batch_size(model_name)
    for phase in ("train", "eval"):
        candidates = result[phase]
        ours = candidates[0]
        print(f"{model_name} {phase} ({params['jaxdl']:,} parameters, batch {size}):")
        for candidate in candidates:
            extra = ""
            if candidate["compile_seconds"]:
                extra = f", warm-up/compile {candidate['compile_seconds']:.1f} s"
            if candidate is ours and phase == "train":
                gflops = statistics.median(ours["rates"]) / size * result["flops"] / 1e9
                extra += f", {gflops:.0f} GFLOP/s = {100 * gflops / peak:.0f} % of matmul"
            print(f"  {candidate['name']:32s} {spread(candidate['rates'])} img/s{extra}")
        others = [c for c in candidates if c["name"].startswith("torch")]
        if others:
            best = max(others, key=lambda c: statistics.median(c["rates"]))
            ratio = statistics.median(ours["rates"]) / statistics.median(best["rates"])
            print(
                f"{model_name} {phase}: jaxdl {statistics.median(ours['rates']):,.0f} img/s, "
                f"best torch {statistics.median(best['rates']):,.0f} img/s "
                f"({best['name'].removeprefix('torch ')}), {ratio:.2f}x"
            )


def child_result(module: str, label: str, *options: str) -> dict:
    """Runs `python -m module *options` in a fresh process and returns the JSON it printed
    after "RESULT " (the children of `--isolate` here and of `benchmarks.conv_layers`)."""
    command = [sys.executable, "-m", module, *options]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode != 0 or not lines:
        raise SystemExit(f"{label} child failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return json.loads(lines[-1].removeprefix("RESULT "))


def run_child(model_name: str, name: str, args) -> dict:
    """`measure` for the one candidate `name` in a fresh process (`--isolate`): its result."""
    return child_result(
        "benchmarks.train_throughput", name, "--child", name, "--models", model_name,
        "--repeats", str(args.repeats), "--steps", str(args.steps), "--threads", str(args.threads),
        "--warmup_steps", str(args.warmup_steps), "--dtype", args.dtype,
    )  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="resnet20,resnet56,resnet18_cifar")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--steps", type=int, default=3, help="steps per timing")
    parser.add_argument("--threads", type=int, default=2, help="PyTorch intra-op threads")
    parser.add_argument(
        "--warmup_steps", type=int, default=10, help="untimed steps per candidate and phase"
    )
    parser.add_argument(
        "--dtype",
        choices=("float32", "bfloat16"),
        default="float32",
        help="compute dtype (parameters stay float32); PyTorch under autocast for bfloat16",
    )
    parser.add_argument("--no_plain", action="store_true", help="skip jaxdl's plain layers")
    parser.add_argument("--no_fast", action="store_true", help="skip jaxdl's XLA:CPU layers")
    parser.add_argument(
        "--isolate",
        type=int,
        default=0,
        metavar="ROUNDS",
        help="time each candidate in its own child process, the processes in turn for ROUNDS "
        "rounds (--repeats timings each), instead of all candidates in one process",
    )
    parser.add_argument("--child", choices=CANDIDATES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    models = args.models.split(",")
    for model_name in models:
        if model_name not in ARCHITECTURES:
            raise SystemExit(
                f"--models {model_name!r}: no PyTorch twin; choose from {', '.join(ARCHITECTURES)}"
            )

    if args.child:  # one candidate, in a process of its own; jaxdl's flags before JAX starts
        if args.child.startswith("torch"):
            import torch

            torch.set_num_threads(args.threads)
        else:
            import jaxdl  # noqa: F401
        result = measure(models[0], args, (args.child,))
        if args.child == "jaxdl":
            result["peak"] = matmul_peak()
        print("RESULT " + json.dumps(result), flush=True)
        return

    import jaxdl  # noqa: F401  (jaxdl's XLA flags, before JAX starts)

    try:
        import torch

        torch.set_num_threads(args.threads)
        torch_version = torch.__version__
    except ImportError:
        torch_version = None
        print("PyTorch is not installed: jaxdl's figures only (pip install torch==2.13.0).")
    names = [
        name
        for name in CANDIDATES
        if (torch_version or not name.startswith("torch"))
        and not (args.no_plain and name == "jaxdl plain layers")
        and not (args.no_fast and name == "jaxdl fast layers")
    ]

    if args.isolate:
        how = f"each candidate in its own process, {args.isolate} rounds"
        peak = None
    else:
        import jax

        peak = matmul_peak()
        how = f"jax {jax.__version__} on {jax.default_backend()}, all in one process"
    print(
        f"{how}; torch {torch_version}, {args.threads} torch threads, {args.dtype}"
        + (f"; f32 matmul 2048^3: {peak:.0f} GFLOP/s" if peak else "")
    )
    for model_name in models:
        if args.isolate:
            runs = [
                run_child(model_name, name, args) for _ in range(args.isolate) for name in names
            ]
            peak = statistics.median(run["peak"] for run in runs if "peak" in run)
            print(f"  f32 matmul 2048^3 in the jaxdl processes: {peak:.0f} GFLOP/s (median)")
            result = merge(runs)
        else:
            result = measure(model_name, args, tuple(names))
        report(model_name, result, peak)


if __name__ == "__main__":
    main()
