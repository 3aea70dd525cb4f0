"""airbench94 trained in PyTorch on this CPU, on the same data as the speedrun.

    python -m benchmarks.torch_airbench --seeds 1            # eager, channels_last, 2 threads
    python -m benchmarks.torch_airbench --compile            # torch.compile'd model

The reference `python -m experiments.cifar_speedrun` is measured against (cifar10-airbench's
airbench94.py, in float32 on the CPU instead of half precision on CUDA): the network of
`benchmarks.train_throughput.torch_airbench`, its first layer set to whiten 2x2 patches of
5,000 training images, Nesterov SGD (momentum 0.85) in two parameter groups (BatchNorm biases
at 64x the rate), label-smoothed (0.2) summed cross-entropy, the triangular schedule, the
whitening bias trained for 3 epochs, a lookahead average every 5 steps from the first step
with the state put on it after the last, 9.9 epochs of batch 1024 with alternating flips and
2-pixel translations, and flip + shift test-time augmentation. Images are normalised with the
training set's channel statistics, as jaxdl's speedrun does.

Each seed prints its test accuracy (plain and with TTA) and training time (whitening and the
training steps, as the reference times it; evaluation apart). Needs PyTorch
(`pip install torch==2.13.0`, the CPU build).
"""

from __future__ import annotations

import argparse
import copy
import math
import statistics
import time

import jax.numpy as jnp
import numpy as np

from jaxdl import data
from jaxdl.errors import ConfigError
from jaxdl.recipes import airbench94


def as_tensor(images: np.ndarray, mean, std):
    """uint8[N, H, W, C] -> normalised f32[N, C, H, W] torch tensor, channels_last."""
    import torch

    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255
    x = (x - torch.tensor(mean).view(1, -1, 1, 1)) / torch.tensor(std).view(1, -1, 1, 1)
    return x.contiguous(memory_format=torch.channels_last)


def whitening_weight(images):
    """f32[24, 3, 2, 2]: `jaxdl.recipes.airbench94.whitening_kernel` of normalised images
    f32[N, 3, H, W], in PyTorch's [out, in, kh, kw] layout."""
    import torch

    kernel = airbench94.whitening_kernel(jnp.asarray(images.permute(0, 2, 3, 1).numpy()))
    return torch.from_numpy(np.asarray(kernel).transpose(3, 2, 0, 1).copy())


def crops(padded, size: int, generator):
    """One random size x size crop of every padded image (offsets uniform per image)."""
    import torch

    n, room = len(padded), padded.shape[-1] - size + 1
    dy = torch.randint(0, room, (n,), generator=generator)
    dx = torch.randint(0, room, (n,), generator=generator)
    out = torch.empty((n, padded.shape[1], size, size)).contiguous(
        memory_format=torch.channels_last
    )
    for y in range(room):
        for x in range(room):
            rows = torch.nonzero((dy == y) & (dx == x)).flatten()
            out[rows] = padded[rows, :, y : y + size, x : x + size]
    return out


def lookahead(model, average: dict, decay: float) -> None:
    """Moves `average` (a state dict) to the model's floating-point state by 1 - decay and puts
    the model there (`jaxdl.recipes.airbench94.lookahead`)."""
    import torch

    with torch.no_grad():
        for key, value in model.state_dict().items():
            if value.is_floating_point():
                average[key].lerp_(value, 1 - decay)
                value.copy_(average[key])


def tta_logits(model, images):
    """airbench's TTA level 2 (see `jaxdl.recipes.airbench94.tta_logits`)."""
    import torch
    import torch.nn.functional as F

    mirror = lambda x: 0.5 * (model(x) + model(torch.flip(x, (-1,))))
    padded = F.pad(images, (1, 1, 1, 1), mode="reflect")
    h, w = images.shape[-2:]
    shifted = [padded[:, :, :h, :w], padded[:, :, 2 : h + 2, 2 : w + 2]]
    return 0.5 * mirror(images) + 0.25 * (mirror(shifted[0]) + mirror(shifted[1]))


def accuracy(model, images, labels, tta: bool) -> float:
    import torch

    model.eval()
    hits = 0
    with torch.no_grad():
        for start in range(0, len(images), 2000):
            x = images[start : start + 2000]
            logits = tta_logits(model, x) if tta else model(x)
            hits += int((logits.argmax(1) == labels[start : start + 2000]).sum())
    return hits / len(images)


def run_seed(seed: int, train, test, recipe: airbench94.Recipe, compiled: bool) -> dict:
    import torch
    import torch.nn.functional as F

    from benchmarks.train_throughput import torch_airbench

    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    mean, std = data.channel_stats(train.images)
    images = as_tensor(train.images, mean, std)
    labels = torch.from_numpy(np.asarray(train.labels)).long()
    test_images = as_tensor(test.images, mean, std)
    test_labels = torch.from_numpy(np.asarray(test.labels)).long()

    model = torch_airbench().to(memory_format=torch.channels_last)
    forward = torch.compile(model) if compiled else model
    steps_per_epoch = len(labels) // recipe.batch_size
    total_steps = math.ceil(steps_per_epoch * recipe.epochs)
    lr, wd = airbench94.summed_loss_rates(recipe)
    named = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    is_norm = lambda name: isinstance(
        model.get_submodule(name.rsplit(".", 1)[0]), torch.nn.BatchNorm2d
    )
    norm_biases = [p for name, p in named if is_norm(name)]
    others = [p for name, p in named if not is_norm(name)]
    bias_lr = lr * recipe.bias_scaler
    optimizer = torch.optim.SGD(
        [
            {"params": norm_biases, "lr": bias_lr, "weight_decay": wd / bias_lr},
            {"params": others, "lr": lr, "weight_decay": wd / lr},
        ],
        momentum=recipe.momentum,
        nesterov=True,
    )
    multipliers = airbench94.triangle(total_steps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: multipliers[step])
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=recipe.label_smoothing, reduction="none")

    compile_seconds = 0.0
    if compiled:  # compile the train and eval graphs on a throw-away step, as jaxdl does apart
        start, initial = time.perf_counter(), copy.deepcopy(model.state_dict())
        for whiten_bias_trains in (False, True):  # the step before and after epoch 3
            model[0].bias.requires_grad = whiten_bias_trains
            model.train()
            batch = images[: recipe.batch_size], labels[: recipe.batch_size]
            loss_fn(forward(batch[0]), batch[1]).sum().backward()
        accuracy(forward, test_images[:2000], test_labels[:2000], tta=True)
        model.load_state_dict(initial)
        optimizer.zero_grad(set_to_none=True)
        compile_seconds = time.perf_counter() - start

    start = time.perf_counter()
    with torch.no_grad():
        model[0].weight.copy_(whitening_weight(images[:5000]))
    average = {k: v.clone() for k, v in model.state_dict().items()}
    flip = torch.rand(len(images), generator=generator) < 0.5
    flipped = torch.where(flip.view(-1, 1, 1, 1), torch.flip(images, (-1,)), images)
    t = recipe.translate
    padded = F.pad(flipped, (t, t, t, t), mode="reflect")
    done = 0
    for epoch in range(math.ceil(recipe.epochs)):
        model[0].bias.requires_grad = epoch < recipe.whiten_bias_epochs
        model.train()
        epoch_images = crops(padded, images.shape[-1], generator)
        if epoch % 2 == 1:
            epoch_images = torch.flip(epoch_images, (-1,))
        order = torch.randperm(len(images), generator=generator)
        for index in range(steps_per_epoch):
            rows = order[index * recipe.batch_size : (index + 1) * recipe.batch_size]
            loss = loss_fn(forward(epoch_images[rows]), labels[rows]).sum()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            done += 1
            if done % recipe.lookahead_every == 0:
                lookahead(model, average, airbench94.lookahead_decay(done, total_steps))
            if done >= total_steps:
                lookahead(model, average, 1.0)  # the run ends on the average
                break
    train_seconds = time.perf_counter() - start
    plain = accuracy(forward, test_images, test_labels, tta=False)
    tta = accuracy(forward, test_images, test_labels, tta=True)
    print(
        f"seed {seed}: test accuracy {100 * plain:.2f} % ({100 * tta:.2f} % with TTA); "
        f"{done} steps in {train_seconds:.1f} s ({done * recipe.batch_size / train_seconds:.0f} "
        f"img/s{f', +{compile_seconds:.1f} s compile' if compiled else ''}), "
        f"final batch loss {loss.detach().item() / recipe.batch_size:.3f}",
        flush=True,
    )
    return {"tta": tta, "plain": plain, "seconds": train_seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--epochs", type=float, default=airbench94.Recipe.epochs)
    parser.add_argument("--batch_size", type=int, default=airbench94.Recipe.batch_size)
    parser.add_argument("--threads", type=int, default=2, help="PyTorch intra-op threads")
    parser.add_argument("--compile", action="store_true", help="torch.compile the model")
    parser.add_argument("--data_dir", default=None, help="TFDS data (default: $TFDS_DATA_DIR)")
    parser.add_argument("--train_limit", type=int, default=None, help="first N training images")
    parser.add_argument("--test_limit", type=int, default=None, help="first N test images")
    args = parser.parse_args()
    try:
        import torch
    except ImportError:
        raise SystemExit("PyTorch is not installed: pip install torch==2.13.0") from None
    if args.seeds < 1:
        raise ConfigError(f"--seeds {args.seeds} must be at least 1.")
    torch.set_num_threads(args.threads)
    recipe = airbench94.Recipe(epochs=args.epochs, batch_size=args.batch_size)
    train = data.load("cifar10", "train", args.data_dir, limit=args.train_limit)
    test = data.load("cifar10", "test", args.data_dir, limit=args.test_limit)
    print(
        f"torch {torch.__version__}, {args.threads} threads, "
        f"{'compiled' if args.compile else 'eager'}, channels_last, float32; airbench94 "
        f"{recipe.epochs} epochs of batch {recipe.batch_size} on {len(train):,} images"
    )
    runs = [run_seed(seed, train, test, recipe, args.compile) for seed in range(args.seeds)]
    if len(runs) > 1:
        summary = {
            k: (statistics.mean(r[k] for r in runs), statistics.stdev(r[k] for r in runs))
            for k in runs[0]
        }
        print(
            f"{len(runs)} seeds: test accuracy {100 * summary['plain'][0]:.2f} ± "
            f"{100 * summary['plain'][1]:.2f} %, with TTA {100 * summary['tta'][0]:.2f} ± "
            f"{100 * summary['tta'][1]:.2f} %; training {summary['seconds'][0]:.1f} ± "
            f"{summary['seconds'][1]:.1f} s"
        )


if __name__ == "__main__":
    main()
