"""Several classification heads on one shared network, as a task of the one training path.

Any zoo model built with `num_classes = sum(head_sizes)` is a shared trunk with one linear
head per task: its last dense layer's output columns split into the heads' logits (separate
rows of weights on the same features, exactly two dense layers side by side). Only the
objective changes: `MultiHead` adds the heads' weighted cross-entropies, each head reading its
labels through a lookup from the dataset's label (CIFAR-10 class -> animal / vehicle), so the
data pipeline and the train step stay the ones every classifier uses.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxdl.data.device import DeviceDataset, Preprocess, eval_batches
from jaxdl.errors import ConfigError
from jaxdl.loop import log
from jaxdl.losses import softmax_cross_entropy
from jaxdl.plots.run import save_curves
from jaxdl.state import TrainState
from jaxdl.step import predict
from jaxdl.tasks.classification import Classification

if TYPE_CHECKING:
    from jaxdl.build import Run

# CIFAR-10's classes by index: airplane, automobile, bird, cat, deer, dog, frog, horse, ship, truck
CIFAR10_VEHICLE = (1, 1, 0, 0, 0, 0, 0, 0, 1, 1)  # super-class: 0 animal, 1 vehicle


@dataclasses.dataclass(frozen=True)
class MultiHead:
    """An objective for `train_step` / `eval_step`: logits f32[B, sum(head_sizes)] split into
    heads; head h's labels are `label_maps[h][label]` (None: the label itself). The loss is
    the `weights`-weighted sum of the heads' cross-entropies; hits are head 0's."""

    head_sizes: tuple[int, ...]
    label_maps: tuple[tuple[int, ...] | None, ...]
    weights: tuple[float, ...]

    def __post_init__(self):
        if not len(self.head_sizes) == len(self.label_maps) == len(self.weights):
            raise ConfigError(
                f"{len(self.head_sizes)} heads need as many label maps and weights, got "
                f"{len(self.label_maps)} and {len(self.weights)}."
            )
        for size, mapping in zip(self.head_sizes, self.label_maps, strict=True):
            if mapping is not None and not 0 <= min(mapping) <= max(mapping) < size:
                raise ConfigError(f"label map {mapping} points outside a head of {size} classes.")

    @property
    def outputs(self) -> int:
        return sum(self.head_sizes)

    def split(self, logits: jax.Array) -> list[jax.Array]:
        """f32[B, sum(head_sizes)] -> one f32[B, size] per head."""
        return jnp.split(logits, np.cumsum(self.head_sizes)[:-1].tolist(), axis=-1)

    def head_labels(self, labels: jax.Array) -> list[jax.Array]:
        return [
            labels if mapping is None else jnp.asarray(mapping, jnp.int32)[labels]
            for mapping in self.label_maps
        ]

    def __call__(self, logits, labels, label_smoothing: float = 0.0):
        heads, targets = self.split(logits), self.head_labels(labels)
        losses = sum(
            weight * softmax_cross_entropy(head, target, label_smoothing)
            for weight, head, target in zip(self.weights, heads, targets, strict=True)
        )
        return losses, (jnp.argmax(heads[0], -1) == targets[0]).astype(jnp.float32)


def head_accuracies(
    state: TrainState,
    data: DeviceDataset,
    preprocess: Preprocess,
    objective: MultiHead,
    batch_size: int = 1000,
) -> list[float]:
    """Each head's accuracy over every example of `data`."""

    @jax.jit
    def hits(state, batch):
        heads = objective.split(predict(state, batch["image"]))
        targets = objective.head_labels(batch["label"])
        return [
            jnp.sum((jnp.argmax(head, -1) == target) * batch["mask"])
            for head, target in zip(heads, targets, strict=True)
        ]

    totals = np.sum(
        [jax.device_get(hits(state, b)) for b in eval_batches(data, batch_size, preprocess)],
        axis=0,
    )
    return [float(t) / len(data) for t in totals]


def single_head(size: int, label_map: Sequence[int] | None = None) -> MultiHead:
    """The one-task objective for a head of `size` classes read through `label_map`."""
    return MultiHead((size,), (None if label_map is None else tuple(label_map),), (1.0,))


@dataclasses.dataclass(frozen=True)
class MultiHeadTask(Classification):
    """Classification with the `heads` objective: validation and test accuracy are head 0's
    (the one model selection follows); the test figures add every head's accuracy, named by
    `names`."""

    heads: MultiHead = dataclasses.field(default_factory=lambda: single_head(10))
    names: tuple[str, ...] = ("classes",)
    # a head's probabilities are not the dataset's classes: no saved predictions
    unsupported = frozenset({"save_predictions"})

    def __post_init__(self):
        if len(self.names) != len(self.heads.head_sizes):
            raise ConfigError(
                f"{len(self.heads.head_sizes)} heads need as many names, got {self.names}."
            )

    @property
    def objective(self) -> MultiHead:
        return self.heads

    def options(self) -> dict[str, Any]:
        return {"heads": dataclasses.asdict(self.heads), "head_names": list(self.names)}

    def num_outputs(self, train) -> int:
        return self.heads.outputs

    def test(self, run: Run, state: Any, test_data: DeviceDataset) -> dict[str, Any]:
        results = super().test(run, state, test_data)
        local = run.runner.local_state(state)
        accuracies = head_accuracies(
            local, test_data, run.preprocess, self.heads, run.config.eval_batch_size
        )
        return results | {"test_head_accuracies": dict(zip(self.names, accuracies, strict=True))}

    def report(self, results: dict[str, Any]) -> None:
        for name, accuracy in results["test_head_accuracies"].items():
            log(f"test accuracy of head {name!r}: {100 * accuracy:.2f} %")

    def outputs(self, run: Run, state: Any, test_data: DeviceDataset, history) -> None:
        if run.config.plots:
            save_curves(run.rundir.plots, history)
