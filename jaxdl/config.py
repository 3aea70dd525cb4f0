"""A run's configuration: one frozen dataclass, its validation, and reading a saved one back.

Field names are the command-line options (`jaxdl.cli` builds each experiment's parser from
them), and `config.json` in a run directory is this dataclass as JSON, so a run can be read
back exactly (`config_from_values(RunDir(path).read_config())`).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import jax.numpy as jnp

from jaxdl import models
from jaxdl.errors import ConfigError
from jaxdl.nn.conv import check_layer_impl
from jaxdl.optim import OptimizerConfig

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def default_layers() -> str:
    """The layer implementation a run uses unless told: `$JAXDL_LAYERS`, else "auto"."""
    return os.environ.get("JAXDL_LAYERS", "auto") or "auto"


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything one training run needs. Field names are the command-line options."""

    dataset: str = "mnist"
    data_dir: str | None = None
    model: str = "mlp"
    model_options: dict[str, Any] = dataclasses.field(default_factory=dict)
    epochs: int = 10
    time_budget_minutes: float = 0.0
    batch_size: int = 128
    eval_batch_size: int = 1000
    lr: float = 1e-3
    optimizer: str = "adam"
    schedule: str = "warmup_cosine"
    warmup_epochs: float = 1.0
    momentum: float = 0.9
    weight_decay: float = 0.0
    weight_decay_mode: str | None = None
    label_smoothing: float = 0.0
    clip_grad_norm: float = 0.0
    lr_decay: float = 0.1
    plateau_patience: int = 2
    lookahead_every: int = 0
    init_from: str | None = None
    freeze: str | None = None
    val_size: int = 5000
    crop_padding: int = 0
    flip: bool = False
    early_stopping_patience: int | None = None
    max_bad_steps: int = 20
    flip_tta: bool = False
    plots: bool = True
    parallel: str = "single"
    dtype: str = "float32"
    layers: str = dataclasses.field(default_factory=default_layers)
    seed: int = 0
    workdir: str = "runs/default"
    restart: bool = False
    checkpoint_every_steps: int = 0
    checkpoint_every_minutes: float = 0.0
    keep_checkpoints: int = 3
    train_limit: int | None = None
    test_limit: int | None = None
    save_predictions: bool = False
    quiet: bool = False

    def optimizer_config(self) -> OptimizerConfig:
        return OptimizerConfig(
            name=self.optimizer,
            lr=self.lr,
            momentum=self.momentum,
            weight_decay=self.weight_decay,
            weight_decay_mode=self.weight_decay_mode,
            schedule=self.schedule,
            warmup_epochs=self.warmup_epochs,
            clip_grad_norm=self.clip_grad_norm,
            lr_decay=self.lr_decay,
            plateau_patience=self.plateau_patience,
            freeze=self.freeze,
            lookahead_every=self.lookahead_every,
        )

    def validate(self) -> None:
        """Raises `ConfigError` for any option that cannot work, before data is loaded."""
        for name in ("epochs", "batch_size", "eval_batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(
                    f"--{name} must be a positive integer, got {getattr(self, name)}."
                )
        if not 0 <= self.time_budget_minutes < float("inf"):
            raise ConfigError(
                f"--time_budget_minutes must be 0 (off) or a positive number of minutes, got "
                f"{self.time_budget_minutes}."
            )
        for name in ("checkpoint_every_steps", "checkpoint_every_minutes"):
            if not 0 <= getattr(self, name) < float("inf"):
                raise ConfigError(
                    f"--{name} must be 0 (off) or a positive number, got {getattr(self, name)}."
                )
        check_layer_impl(self.layers)
        if self.dtype not in DTYPES:
            raise ConfigError(f"unknown --dtype {self.dtype!r}; choose one of {', '.join(DTYPES)}.")
        if not 0 <= self.label_smoothing < 1:
            raise ConfigError(f"--label_smoothing must be in [0, 1), got {self.label_smoothing}.")
        if self.model not in models.names():
            raise ConfigError(
                f"unknown model {self.model!r}; known models: {', '.join(models.names())}."
            )
        self.optimizer_config().validate()


def config_from_values(values: dict[str, Any]) -> TrainConfig:
    """The `TrainConfig` of `config.json`'s values; keys that are not fields (the data's channel
    statistics, an experiment's own options) are ignored, and JSON lists in `model_options`
    become the tuples the models take."""
    names = {field.name for field in dataclasses.fields(TrainConfig)}
    config = TrainConfig(**{k: v for k, v in values.items() if k in names})
    options = {k: tuple(v) if isinstance(v, list) else v for k, v in config.model_options.items()}
    return dataclasses.replace(config, model_options=options)
