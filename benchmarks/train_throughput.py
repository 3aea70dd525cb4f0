"""jaxdl against PyTorch on this machine: train- and eval-step images/s, timed alternately.

    python -m benchmarks.train_throughput                      # resnet20, resnet56, resnet18_cifar
    python -m benchmarks.train_throughput --models resnet20 --repeats 7
    python -m benchmarks.train_throughput --models airbench94  # the speedrun's net, batch 1024

For each model (batch 128, airbench94 at its recipe's 1024; float32, SGD with Nesterov momentum 0.9,
lr 0.1, weight decay 5e-4 as an L2 term, cross-entropy) it builds jaxdl's jitted `train_step` /
`eval_step` (default layers, and flax's plain layers for reference) and the same network in PyTorch
in four settings: eager or `torch.compile`, NCHW or channels_last. Every candidate is warmed up
first (compile time reported apart), then the candidates are timed in turn, repeat after repeat, so
that the shared machine's drifts fall on all of them alike; each figure is the median (min–max) of
`--repeats` timings of `--steps` steps, blocked on the result. It also measures an f32 matmul's
GFLOP/s as the machine's practical peak and gives jaxdl's training GFLOP/s (XLA cost analysis) as a
share of it.

PyTorch is an optional benchmark dependency (`pip install torch==2.13.0` installs the CPU build
here; never a CUDA build); without it the jaxdl figures are printed alone.
"""

from __future__ import annotations

import argparse
import functools
import statistics
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


def jaxdl_candidates(model_name: str, layers: str) -> tuple[Candidate, Candidate, float, int]:
    """(train, eval, train FLOPs per step, parameter count) for jaxdl with `layers`."""
    import jax

    from jaxdl import models
    from jaxdl.cost import xla_flops
    from jaxdl.nn.conv import layer_impl
    from jaxdl.optim import OptimizerConfig, create_optimizer
    from jaxdl.state import count_params, create_train_state
    from jaxdl.step import eval_step, train_step

    model = models.create(model_name, num_classes=10)
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
    with layer_impl(layers):
        train = (
            jax.jit(functools.partial(train_step, l2_weight=WEIGHT_DECAY), donate_argnums=0)
            .lower(state, batch)
            .compile()
        )
        evaluate = jax.jit(eval_step).lower(state, batch).compile()
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
        xla_flops(train),
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


def torch_candidates(model_name: str, compiled: bool, channels_last: bool):
    """(train, eval, parameter count) for PyTorch in one of the four settings."""
    import torch

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
        loss = loss_fn(model(images), labels)
        loss.backward()
        optimizer.step()
        return loss

    def eval_once(images):
        with torch.no_grad():
            return model(images)

    forward = model
    if compiled:
        forward = torch.compile(model)
        train_once = torch.compile(train_once)

        def eval_once(images):  # noqa: F811 (the compiled model's forward)
            with torch.no_grad():
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="resnet20,resnet56,resnet18_cifar")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--steps", type=int, default=3, help="steps per timing")
    parser.add_argument("--threads", type=int, default=2, help="PyTorch intra-op threads")
    parser.add_argument("--no_plain", action="store_true", help="skip jaxdl's plain layers")
    args = parser.parse_args()

    import jaxdl  # noqa: F401  (jaxdl's XLA flags, before JAX starts)

    try:
        import torch

        torch.set_num_threads(args.threads)
        torch_version = torch.__version__
    except ImportError:
        torch = None
        torch_version = None
        print("PyTorch is not installed: jaxdl's figures only (pip install torch==2.13.0).")

    import jax

    peak = matmul_peak()
    print(
        f"jax {jax.__version__} on {jax.default_backend()}, torch {torch_version}, "
        f"{args.threads} torch threads, float32; "
        f"f32 matmul 2048^3: {peak:.0f} GFLOP/s"
    )
    for model_name in args.models.split(","):
        if model_name not in ARCHITECTURES:
            raise SystemExit(
                f"--models {model_name!r}: no PyTorch twin; choose from {', '.join(ARCHITECTURES)}"
            )
        train, evaluate, flops, jax_params = jaxdl_candidates(model_name, "auto")
        trains, evals = [train], [evaluate]
        if not args.no_plain:
            plain_train, plain_eval, _, _ = jaxdl_candidates(model_name, "plain")
            trains.append(plain_train)
            evals.append(plain_eval)
        if torch is not None:
            for compiled in (False, True):
                for channels_last in (False, True):
                    try:
                        t, e, torch_params = torch_candidates(model_name, compiled, channels_last)
                    except Exception as error:  # torch.compile needs a working C++ toolchain
                        print(f"  {model_name}: torch compiled={compiled} failed: {error!r:.200}")
                        continue
                    if torch_params != jax_params:
                        raise SystemExit(
                            f"{model_name}: PyTorch model has {torch_params:,} parameters, "
                            f"jaxdl's {jax_params:,}; the benchmark compares equal networks only"
                        )
                    trains.append(t)
                    evals.append(e)
        for phase, candidates in (("train", trains), ("eval", evals)):
            for _ in range(args.repeats):
                for candidate in candidates:
                    candidate.time(args.steps)
            ours = candidates[0]
            print(f"{model_name} {phase} ({jax_params:,} parameters, batch {ours.batch}):")
            for candidate in candidates:
                extra = ""
                if candidate.compile_seconds:
                    extra = f", warm-up/compile {candidate.compile_seconds:.1f} s"
                if candidate is ours and phase == "train":
                    gflops = statistics.median(ours.rates) / ours.batch * flops / 1e9
                    extra += f", {gflops:.0f} GFLOP/s = {100 * gflops / peak:.0f} % of matmul"
                print(f"  {candidate.name:32s} {spread(candidate.rates)} img/s{extra}")
            others = [c for c in candidates if c.name.startswith("torch")]
            if others:
                best = max(others, key=lambda c: statistics.median(c.rates))
                ratio = statistics.median(ours.rates) / statistics.median(best.rates)
                print(
                    f"{model_name} {phase}: jaxdl {statistics.median(ours.rates):,.0f} img/s, "
                    f"best torch {statistics.median(best.rates):,.0f} img/s "
                    f"({best.name.removeprefix('torch ')}), {ratio:.2f}x"
                )


if __name__ == "__main__":
    main()
