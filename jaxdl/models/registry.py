"""Models found by name: `create("resnet20", num_classes=10)`."""

from __future__ import annotations

from collections.abc import Callable

import flax.linen as nn

from jaxdl.errors import ConfigError

_FACTORIES: dict[str, Callable[..., nn.Module]] = {}


def register(name: str, factory: Callable[..., nn.Module]) -> None:
    """Adds `factory(num_classes=..., **options) -> nn.Module` under `name`."""
    if name in _FACTORIES:
        raise ValueError(f"model {name!r} is registered twice")
    _FACTORIES[name] = factory


def names() -> list[str]:
    """Every registered model name, sorted."""
    return sorted(_FACTORIES)


def create(name: str, num_classes: int = 10, **options) -> nn.Module:
    """The model called `name` with `num_classes` outputs; `options` go to its constructor
    (e.g. `dtype`, `axis_name`, `dropout_rate`)."""
    if name not in _FACTORIES:
        raise ConfigError(f"unknown model {name!r}; known models: {', '.join(names())}.")
    if num_classes < 1:
        raise ConfigError(f"num_classes must be at least 1, got {num_classes}.")
    try:
        return _FACTORIES[name](num_classes=num_classes, **options)
    except TypeError as error:
        raise ConfigError(
            f"model {name!r} does not take the options {sorted(options)} ({error}); "
            f"drop the ones it does not know."
        ) from None
