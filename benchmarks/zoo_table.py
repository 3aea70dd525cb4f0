"""The zoo table of the README: every model's parameters and forward FLOPs at its input size.

    python -m benchmarks.zoo_table > zoo_table.md

Parameters from `jax.eval_shape` (nothing allocated); FLOPs from XLA's cost analysis of the
compiled inference forward pass at batch 1 (a multiply-add counts as 2).
"""

from __future__ import annotations

from jaxdl import models
from jaxdl.tools import cost

CIFAR = (1, 32, 32, 3)
IMAGENET = (1, 224, 224, 3)


def input_for(name: str) -> tuple[tuple[int, ...], int]:
    if name == "lenet5":
        return (1, 32, 32, 1), 10
    if name in ("linear_regression", "logistic_regression"):
        return (1, 28, 28, 1), 1
    if name in ("softmax_regression", "mlp"):
        return (1, 28, 28, 1), 10
    if name == "fcn":
        return (1, 64, 64, 1), 11
    cifar_resnets = {"resnet20", "resnet32", "resnet44", "resnet56", "resnet110"}
    cifar = name in cifar_resnets or name.startswith(("wrn", "densenet_bc")) or "cifar" in name
    cifar = cifar or name == "vgg_small"
    return (CIFAR, 10) if cifar else (IMAGENET, 1000)


def main() -> None:
    print("| model | input | classes | parameters | forward GFLOPs |")
    print("| --- | --- | --- | ---: | ---: |")
    for name in models.names():
        shape, classes = input_for(name)
        model = models.create(name, num_classes=classes)
        params = cost.param_count(model, shape)
        flops = cost.forward_flops(model, shape)
        size = "x".join(map(str, shape[1:]))
        print(f"| `{name}` | {size} | {classes} | {params:,} | {flops / 1e9:.3f} |", flush=True)


if __name__ == "__main__":
    main()
