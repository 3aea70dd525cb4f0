"""Models found by name: `create("resnet20", num_classes=10)`."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import flax.linen as nn

from jaxdl.errors import ConfigError
from jaxdl.nn.conv import check_layer_impl

_FACTORIES: dict[str, Callable[..., nn.Module]] = {}
_DATA_INITS: dict[str, Callable[[dict, Any], dict]] = {}


def register(
    name: str,
    factory: Callable[..., nn.Module],
    init_from_data: Callable[[dict, Any], dict] | None = None,
) -> None:
    """Adds `factory(num_classes=..., **options) -> nn.Module` under `name`.
    `init_from_data(params, images) -> params`, if given, sets the parameters that start from
    the training data (airbench's whitening layer) from normalised images f32[N, H, W, C]."""
    if name in _FACTORIES:
        raise ValueError(f"model {name!r} is registered twice")
    _FACTORIES[name] = factory
    if init_from_data is not None:
        _DATA_INITS[name] = init_from_data


def data_initializer(name: str) -> Callable[[dict, Any], dict] | None:
    """Model `name`'s `init_from_data` (see `register`), or None if it starts from its seed
    alone."""
    return _DATA_INITS.get(name)


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
