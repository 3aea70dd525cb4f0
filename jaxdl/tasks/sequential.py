"""Images read as sequences (MNIST row by row: 28 steps of 28 pixels), classified by the
sequence models, with the vanishing-gradient measurement: the norm of the loss gradient with
respect to each input step, at initialisation and after training
(`jaxdl.course.diagnostics.input_gradient_norms`).

Everything else is image classification's: data, splits, step, evaluation and plots.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

import jax
import numpy as np

from jaxdl.course.diagnostics import input_gradient_norms
from jaxdl.data.device import DeviceDataset, eval_batches
from jaxdl.loop import log
from jaxdl.plots.curves import plot_input_gradients
from jaxdl.state import model_variables
from jaxdl.tasks.classification import Classification

if TYPE_CHECKING:
    from jaxdl.build import Run


@dataclasses.dataclass(frozen=True)
class RowByRow(Classification):
    """Classification of images as sequences of rows; `gradient_examples` test images (the
    first ones) measure the input gradient per step."""

    gradient_examples: int = 1000
    # flips and crops would reorder or shift the steps; the sequence models have no conv layers
    unsupported = frozenset({"dataset", "crop_padding", "flip", "flip_tta", "layers"})

    def options(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def gradient_norms(self, run: Run, state: Any, test_data: DeviceDataset) -> list[float]:
        """The input-gradient norm per row of the first `gradient_examples` test images."""
        count = min(self.gradient_examples, len(test_data))
        batch = next(eval_batches(test_data, count, run.preprocess))
        variables = model_variables(state)
        measure = jax.jit(lambda v, x, y: input_gradient_norms(state.apply_fn, v, x, y))
        norms = measure(variables, batch["image"], batch["label"])
        return [float(n) for n in np.asarray(norms)]

    def test(self, run: Run, state: Any, test_data: DeviceDataset) -> dict[str, Any]:
        results = super().test(run, state, test_data)
        # the initial state again, from the seed (the loop's steps donated `run.state`)
        initial = self.gradient_norms(run, run.with_epochs(run.config.epochs).state, test_data)
        trained = self.gradient_norms(run, run.runner.local_state(state), test_data)
        results["input_gradient_norms_initial"] = initial
        results["input_gradient_norms_trained"] = trained
        results["input_gradient_ratio_initial"] = initial[0] / initial[-1]
        results["input_gradient_ratio_trained"] = trained[0] / trained[-1]
        return results

    def report(self, results: dict[str, Any]) -> None:
        steps = len(results["input_gradient_norms_initial"])
        for when in ("initial", "trained"):
            log(
                f"input gradient norm, step 1 / step {steps}, {when}: "
                f"{results[f'input_gradient_ratio_{when}']:.3e}"
            )
        super().report(results)

    def outputs(self, run: Run, state, test_data: DeviceDataset, history) -> None:
        super().outputs(run, state, test_data, history)
        if run.config.plots:
            results = run.rundir.read_results()
            name = run.config.model
            plot_input_gradients(
                {
                    f"{name}, initial": results["input_gradient_norms_initial"],
                    f"{name}, trained": results["input_gradient_norms_trained"],
                },
                f"{run.rundir.plots}/input_gradients.png",
            )
