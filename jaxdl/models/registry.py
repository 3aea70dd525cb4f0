"""Models found by name: `create("resnet20", num_classes=10)`."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import flax.linen as nn

from jaxdl.errors import ConfigError
from jaxdl.nn.conv import check_layer_impl

_FACTORIES: dict[str, Callable[..., nn.Module]] = {}


def register(name: str, factory: Callable[..., nn.Module]) -> None:
    """Adds `factory(num_classes=..., **options) -> nn.Module` under `name`."""
    if name in _FACTORIES:
        raise ValueError(f"model {name!r} is registered twice")
    _FACTORIES[name] = factory


def names() -> list[str]:
    """Every registered model name, sorted."""
    return sorted(_FACTORIES)


def create(name: str, num_classes: int = 10, layers: str | None = None, **options) -> nn.Module:
    """The model called `name` with `num_classes` outputs; `options` go to its constructor
    (e.g. `dtype`, `axis_name`, `dropout_rate`). `layers` chooses the convolution / BatchNorm
    implementation of every layer (`jaxdl.nn.conv`; None keeps the models' "auto"); a model
    without convolutions has none to choose and ignores it."""
    if name not in _FACTORIES:
        raise ConfigError(f"unknown model {name!r}; known models: {', '.join(names())}.")
    if num_classes < 1:
        raise ConfigError(f"num_classes must be at least 1, got {num_classes}.")
    try:
        model = _FACTORIES[name](num_classes=num_classes, **options)
    except TypeError as error:
        raise ConfigError(
            f"model {name!r} does not take the options {sorted(options)} ({error}); "
            f"drop the ones it does not know."
        ) from None
    if layers is not None and has_field(model, "layers"):
        model = model.clone(layers=check_layer_impl(layers))
    return model


def has_field(model: nn.Module, name: str) -> bool:
    """Whether `model` has the dataclass field `name` (`layers`, `axis_name`, ...)."""
    return name in {field.name for field in dataclasses.fields(model)}
