"""Optax optimizers and learning-rate schedules built from a small config.

Weight decay comes in two forms, and the difference matters for adaptive optimizers:

* ``"l2"``: ``weight_decay * 0.5 * ||w||^2`` is added to the loss (`jaxdl.step` does it), so its
  gradient ``weight_decay * w`` goes through the optimizer's statistics: momentum accumulates it,
  Adam/RMSProp divide it by their running gradient scale. For plain SGD this is the classic
  weight decay of the ResNet papers.
* ``"decoupled"``: ``weight_decay * w`` is added to the *update*, after the optimizer's own
  transform and before the learning rate (Loshchilov & Hutter, AdamW). Every weight then shrinks
  by ``lr * weight_decay`` per step whatever its gradient history. ``adamw`` always uses it.

Only kernels (weights) are decayed; biases and BatchNorm parameters are not.

`freeze`, a regular expression, keeps every parameter whose path ("Dense_0/kernel",
"BasicBlock_3/ConvBN_0/Conv_0/conv/kernel") it matches where it is (`optax.multi_transform`
with `optax.set_to_zero` for those): fine-tuning only a head. BatchNorm's running statistics
are not parameters and still follow the data in training.

`airbench` is Keller Jordan's airbench optimizer (`jaxdl.recipes.airbench94.grouped_optimizer`):
Nesterov SGD over parameter groups, BatchNorm biases at 64x the learning rate, BatchNorm scales
and the whitening kernel frozen, the whitening bias trained for 3 epochs; its `weight_decay` is
coupled (it goes through the momentum) and scaled per group so that every parameter shrinks by
the same `lr * weight_decay` per step, biases included. Use it with the `triangle` schedule:
linear from 0.2 `lr` up to `lr` at 23 % of training, down to 0.07 `lr` at the end.

`lookahead_every` k > 0 adds airbench's lookahead average (`lookahead`): every k steps a running
average of the parameters moves towards them, by less and less as training ends, and the
parameters are put on it.

`clip_grad_norm` > 0 rescales each step's gradients to at most that global L2 norm
(`optax.clip_by_global_norm`, Pascanu et al. 2013), before the optimizer sees them: recurrent
nets need it against exploding gradients.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from optax.contrib import ReduceLROnPlateauState

from jaxdl.errors import ConfigError
from jaxdl.losses import kernel_mask
from jaxdl.recipes import airbench94

OPTIMIZERS = ("sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam", "adamw", "airbench")
SCHEDULES = (
    "constant", "step", "cosine", "warmup_cosine", "onecycle", "exponential", "plateau", "triangle"
)  # fmt: skip
WEIGHT_DECAY_MODES = ("l2", "decoupled")


@dataclasses.dataclass(frozen=True)
class OptimizerConfig:
    """What `create_optimizer` builds. `lr` is the peak learning rate of the schedule.

    `step_boundaries` are fractions of training at which the `step` schedule multiplies the
    learning rate by `step_factor` (He et al. 2016: 0.1 at 50 % and 75 %). `exponential`
    decays the rate smoothly to `lr_decay` x `lr` at the end of training (the same factor
    every epoch); `plateau` keeps `lr` until the validation loss has not improved for
    `plateau_patience` epochs, then multiplies it by `lr_decay` (`scale_by_plateau`).
    """

    name: str = "nesterov"
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 0.0
    weight_decay_mode: str | None = None  # None: "decoupled" for adamw, else "l2"
    schedule: str = "warmup_cosine"
    warmup_epochs: float = 1.0
    step_boundaries: tuple[float, ...] = (0.5, 0.75)
    step_factor: float = 0.1
    b1: float = 0.9
    b2: float = 0.999
    rmsprop_decay: float = 0.9
    eps: float = 1e-8
    clip_grad_norm: float = 0.0  # > 0: gradients rescaled to at most this global norm
    lr_decay: float = 0.1
    plateau_patience: int = 2
    freeze: str | None = None  # a regular expression over parameter paths: not trained
    lookahead_every: int = 0  # > 0: airbench's lookahead average every this many steps

    def resolved_weight_decay_mode(self) -> str:
        if self.name == "adamw":
            return "decoupled"
        return self.weight_decay_mode or "l2"

    def l2_weight(self) -> float:
        """The coefficient the step adds to the loss (zero unless the mode is "l2"; `airbench`
        applies its own decay)."""
        if self.name == "airbench":
            return 0.0
        return self.weight_decay if self.resolved_weight_decay_mode() == "l2" else 0.0

    def validate(self) -> None:
        if self.name not in OPTIMIZERS:
            raise ConfigError(
                f"unknown optimizer {self.name!r}; choose one of {', '.join(OPTIMIZERS)}."
            )
        if self.schedule not in SCHEDULES:
            raise ConfigError(
                f"unknown schedule {self.schedule!r}; choose one of {', '.join(SCHEDULES)}."
            )
        if not self.lr > 0:
            raise ConfigError(f"learning rate must be positive, got --lr {self.lr}.")
        if not 0 < self.lr_decay < 1:
            raise ConfigError(f"--lr_decay must be in (0, 1), got {self.lr_decay}.")
        if self.freeze is not None:
            try:
                re.compile(self.freeze)
            except re.error as error:
                raise ConfigError(
                    f"--freeze {self.freeze!r} is not a regular expression ({error})."
                ) from None
        if self.name == "airbench" and self.weight_decay_mode == "decoupled":
            raise ConfigError(
                "--optimizer airbench applies its own coupled weight decay; drop "
                "--weight_decay_mode decoupled."
            )
        if self.lookahead_every < 0:
            raise ConfigError(
                f"--lookahead_every must be 0 (off) or a positive number of steps, got "
                f"{self.lookahead_every}."
            )
        if self.plateau_patience < 1:
            raise ConfigError(
                f"--plateau_patience must be at least 1 epoch, got {self.plateau_patience}."
            )
        if self.weight_decay < 0:
            raise ConfigError(
                f"weight decay must be zero or positive, got --weight_decay {self.weight_decay}."
            )
        if not 0 <= self.clip_grad_norm < float("inf"):
            raise ConfigError(
                f"--clip_grad_norm must be 0 (off) or a positive norm, got {self.clip_grad_norm}."
            )
        if self.weight_decay_mode not in (None, *WEIGHT_DECAY_MODES):
            raise ConfigError(
                f"unknown weight decay mode {self.weight_decay_mode!r}; "
                f"choose one of {', '.join(WEIGHT_DECAY_MODES)}."
            )


def create_learning_rate_fn(
    config: OptimizerConfig, steps_per_epoch: int, epochs: int
) -> Callable[[int], float]:
    """The learning rate as a function of the step (an optax schedule)."""
    total = max(1, steps_per_epoch * epochs)
    warmup = min(total - 1, int(round(config.warmup_epochs * steps_per_epoch)))
    lr = config.lr
    if config.schedule == "constant":
        return optax.constant_schedule(lr)
    if config.schedule == "step":
        boundaries = {int(round(f * total)): config.step_factor for f in config.step_boundaries}
        return optax.piecewise_constant_schedule(lr, boundaries)
    if config.schedule == "cosine":
        return optax.cosine_decay_schedule(lr, decay_steps=total)
    if config.schedule == "warmup_cosine":
        return optax.warmup_cosine_decay_schedule(
            init_value=0.0, peak_value=lr, warmup_steps=warmup, decay_steps=total
        )
    if config.schedule == "onecycle":
        return optax.cosine_onecycle_schedule(transition_steps=total, peak_value=lr)
    if config.schedule == "exponential":
        return optax.exponential_decay(lr, transition_steps=total, decay_rate=config.lr_decay)
    if config.schedule == "plateau":  # the base rate; `scale_by_plateau` multiplies it
        return optax.constant_schedule(lr)
    if config.schedule == "triangle":
        return airbench94.triangle_schedule(lr, total)
    raise ConfigError(
        f"unknown schedule {config.schedule!r}; choose one of {', '.join(SCHEDULES)}."
    )


def _direction(config: OptimizerConfig) -> optax.GradientTransformation:
    """The optimizer's own transform, before weight decay and the learning rate."""
    if config.name == "sgd":
        return optax.identity()
    if config.name in ("momentum", "nesterov"):
        return optax.trace(decay=config.momentum, nesterov=config.name == "nesterov")
    if config.name == "adagrad":  # optax.adagrad's accumulator start and epsilon
        return optax.scale_by_rss(initial_accumulator_value=0.1, eps=1e-7)
    if config.name == "rmsprop":
        return optax.scale_by_rms(decay=config.rmsprop_decay, eps=config.eps)
    return optax.scale_by_adam(b1=config.b1, b2=config.b2, eps=config.eps)


def create_optimizer(
    config: OptimizerConfig, steps_per_epoch: int, epochs: int
) -> tuple[optax.GradientTransformation, Callable[[int], float]]:
    """Builds ``(tx, learning_rate_fn)`` for `config`; see the module docstring for decay."""
    config.validate()
    learning_rate_fn = create_learning_rate_fn(config, steps_per_epoch, epochs)
    if config.name == "airbench":
        recipe = airbench94.Recipe()
        parts = [
            airbench94.grouped_optimizer(
                learning_rate_fn,
                config.momentum,
                config.weight_decay,
                recipe.bias_scaler,
                recipe.whiten_bias_epochs * steps_per_epoch,
            )
        ]
    else:
        parts = [_direction(config)]
    if config.clip_grad_norm:
        # before the optimizer's statistics: a clipped RNN step is also a clipped Adam input
        parts.insert(0, optax.clip_by_global_norm(config.clip_grad_norm))
    if config.weight_decay and config.resolved_weight_decay_mode() == "decoupled":
        parts.append(optax.add_decayed_weights(config.weight_decay, mask=kernel_mask))
    if config.name != "airbench":  # its groups apply their own rates
        parts.append(optax.scale_by_learning_rate(learning_rate_fn))
    if config.schedule == "plateau":
        parts.append(scale_by_plateau(config.lr_decay, config.plateau_patience))
    if config.lookahead_every:
        parts.append(lookahead(config.lookahead_every, max(1, steps_per_epoch * epochs)))
    tx = optax.chain(*parts)
    if config.freeze:
        tx = optax.multi_transform(
            {"train": tx, "frozen": optax.set_to_zero()},
            lambda params: frozen_labels(params, config.freeze),
        )
    return tx, learning_rate_fn


def parameter_path(path) -> str:
    """A parameter's path as text: "BasicBlock_0/ConvBN_0/Conv_0/conv/kernel"."""
    return "/".join(str(getattr(key, "key", key)) for key in path)


def frozen_labels(params, pattern: str):
    """The tree of "frozen" (path matches `pattern`, `re.search`) or "train" labels."""
    regex = re.compile(pattern)
    return jax.tree_util.tree_map_with_path(
        lambda path, _: "frozen" if regex.search(parameter_path(path)) else "train", params
    )


class LookaheadState(NamedTuple):
    """The running average of the parameters and the steps taken."""

    average: Any  # a tree like the parameters
    count: jax.Array  # i32[]


def lookahead(every: int, total_steps: int) -> optax.GradientTransformation:
    """airbench's lookahead as an optimizer's last transform: after every `every`-th step the
    average moves towards the step's new parameters, keeping `airbench94.lookahead_decay` of
    itself (0.95^5 (step / total)^3: it follows the parameters early and holds them late),
    and the update puts the parameters on it. Other steps' updates pass unchanged. The average
    is optimizer state, so checkpoints and resumes carry it. (The reference averages
    BatchNorm's running statistics too; their momentum here follows the parameters within
    a few steps.)"""

    def init(params):
        return LookaheadState(jax.tree.map(jnp.array, params), jnp.zeros((), jnp.int32))

    def update(updates, state, params=None):
        if params is None:
            raise ValueError("lookahead needs the parameters: call update(updates, state, params).")
        count = state.count + 1
        new = optax.apply_updates(params, updates)
        decay = airbench94.lookahead_decay(jnp.minimum(count, total_steps), total_steps)
        sync = count % every == 0
        average = jax.tree.map(
            lambda a, x: jnp.where(sync, decay * a + (1 - decay) * x, a), state.average, new
        )
        updates = jax.tree.map(lambda u, a, p: jnp.where(sync, a - p, u), updates, average, params)
        return updates, LookaheadState(average, count)

    return optax.GradientTransformation(init, update)


class PlateauState(NamedTuple):
    """`optax.contrib.reduce_on_plateau`'s state, and how many validation results it has
    been fed (so that feeding the same epoch's result twice, as a resume may, changes
    nothing)."""

    plateau: ReduceLROnPlateauState
    evaluations: jax.Array  # i32[]


def scale_by_plateau(factor: float, patience: int) -> optax.GradientTransformation:
    """Multiplies the updates by the current reduce-on-plateau scale, which the training step
    only reads: `feed_plateau` (between epochs, with the validation loss) changes it, so the
    step stays a pure function of the state."""
    plateau = optax.contrib.reduce_on_plateau(factor=factor, patience=patience)

    def init(params):
        return PlateauState(plateau.init(params), jnp.zeros((), jnp.int32))

    def update(updates, state, params=None):
        del params
        return jax.tree.map(lambda g: state.plateau.scale * g, updates), state

    return optax.GradientTransformation(init, update)


def feed_plateau(config: OptimizerConfig, opt_state, value: float, evaluations: int):
    """`opt_state` (of `create_optimizer(config, ...)`) with validation result `value`, the
    `evaluations`-th, fed to its reduce-on-plateau scale, unless that scale has seen it
    already; unchanged for an optimizer without one."""
    plateau = optax.contrib.reduce_on_plateau(
        factor=config.lr_decay, patience=config.plateau_patience
    )

    def feed(node):
        if not isinstance(node, PlateauState) or int(node.evaluations) >= evaluations:
            return node
        _, fed = plateau.update(jnp.zeros(()), node.plateau, value=jnp.asarray(value))
        return PlateauState(fed, jnp.asarray(evaluations, jnp.int32))

    return jax.tree.map(feed, opt_state, is_leaf=lambda n: isinstance(n, PlateauState))


def plateau_scale(opt_state) -> float | None:
    """The reduce-on-plateau scale held in `opt_state`, or None if it has none."""
    nodes = jax.tree.leaves(opt_state, is_leaf=lambda n: isinstance(n, PlateauState))
    found = [n for n in nodes if isinstance(n, PlateauState)]
    return float(found[0].plateau.scale) if found else None
