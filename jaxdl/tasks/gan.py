"""Generating images with a GAN, judged by a classifier: the two-player task.

The state and step are `jaxdl.adversarial`'s (both networks, their optimizers and BatchNorm
statistics in one `GANState`; one pure step with the discriminator and generator updates);
everything else is the one training path's: the loop, checkpoints, resume, the run directory.

Images are scaled to [-1, 1] (the generator ends in tanh). The judge is a trained classifier
of the same images (a LeNet-5 run directory, `load_judge`), read once: after every epoch it
scores 2,000 samples of a fixed noise batch (the Inception Score under the judge, the
selection metric) and a grid of 64 of them is drawn; on the test split, 10,000 samples are
scored by the Inception Score, the Fréchet distance between the judge's penultimate features
(LeNet-5's 84 units, before their ReLU, which leaves dead units' zeros out) of the samples and
of the real test images, and the judge's class histogram of the
samples (mode collapse shows as empty classes); the same scores of real training images are
the reference.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxdl.adversarial import GANState, create_gan_state, gan_train_step, generate
from jaxdl.build import create_model, restore_trained
from jaxdl.config import TrainConfig
from jaxdl.data.augment import Augmentation
from jaxdl.data.device import DeviceDataset
from jaxdl.data.sources import ArrayDataset
from jaxdl.distributed.setup import is_main_process
from jaxdl.errors import ConfigError
from jaxdl.loop import Evaluator, Selection, log
from jaxdl.metrics import frechet_distance, inception_score
from jaxdl.optim import create_optimizer
from jaxdl.plots.curves import plot_curves
from jaxdl.plots.generative import plot_class_histogram, plot_image_grid
from jaxdl.rundir import RunDir
from jaxdl.state import TrainState, model_variables
from jaxdl.tasks.classification import Classification

if TYPE_CHECKING:
    from jaxdl.build import Run

FEATURE_LAYER = "f6"  # LeNet-5's penultimate layer, 84 units


@dataclasses.dataclass(frozen=True)
class Judge:
    """A trained classifier that scores images: its state, its input normalisation, and the
    layer whose outputs are its features."""

    state: TrainState
    mean: tuple[float, ...]
    std: tuple[float, ...]
    feature_layer: str = FEATURE_LAYER
    run_dir: str = ""

    def scores(self, images: np.ndarray, batch_size: int = 1000) -> tuple[np.ndarray, np.ndarray]:
        """Class probabilities f[N, K] and penultimate features f[N, F] of images f[N, H, W,
        C] in [-1, 1]."""
        return _judge_scores(self, np.asarray(images, np.float32), batch_size)


def _judge_scores(judge: Judge, images: np.ndarray, batch_size: int):
    variables = model_variables(judge.state)
    mean, std = jnp.asarray(judge.mean), jnp.asarray(judge.std)
    layer = judge.feature_layer

    @jax.jit
    def score(batch):
        standardised = ((batch + 1.0) / 2.0 - mean) / std
        logits, captured = judge.state.apply_fn(
            variables,
            standardised,
            train=False,
            capture_intermediates=lambda module, _: module.name == layer,
            mutable=["intermediates"],
        )
        features = captured["intermediates"][layer]["__call__"][0]
        return jax.nn.softmax(logits.astype(jnp.float32), -1), features.astype(jnp.float32)

    probabilities, features = [], []
    for start in range(0, len(images), batch_size):
        chunk = images[start : start + batch_size]
        padded = np.concatenate([chunk, np.repeat(chunk[-1:], batch_size - len(chunk), 0)])
        p, f = jax.device_get(score(jnp.asarray(padded)))
        probabilities.append(p[: len(chunk)])
        features.append(f[: len(chunk)])
    return np.concatenate(probabilities), np.concatenate(features)


def load_judge(run_dir: str) -> Judge:
    """The classifier trained in run directory `run_dir` (its config and latest checkpoint),
    as a `Judge`; one sentence if the directory holds no finished classifier."""
    rundir = RunDir(run_dir)
    if not os.path.exists(rundir.file("config.json")):
        raise ConfigError(
            f"{run_dir!r} is not a run directory (no config.json); train a judge with "
            f"`python -m experiments.lenet_mnist --workdir {run_dir}` or drop --judge."
        )
    trained = restore_trained(run_dir)
    return Judge(trained.state, trained.preprocess.mean, trained.preprocess.std, run_dir=run_dir)


def class_fractions(probabilities: np.ndarray) -> np.ndarray:
    """f[K]: the fraction of examples whose most probable class is each class."""
    classes = probabilities.shape[-1]
    return np.bincount(probabilities.argmax(-1), minlength=classes) / len(probabilities)


@dataclasses.dataclass(frozen=True)
class GenerativeAdversarial(Classification):
    """The GAN task (see the module docstring): `judge_dir` is the judge's run directory;
    `samples` generated images are scored on the test split, `epoch_samples` after each
    epoch."""

    judge_dir: str = ""
    samples: int = 10_000
    epoch_samples: int = 2_000
    average_decay: float = 0.999
    selection = Selection("val_inception_score", "max", fallback=None)
    # no classes to predict, smooth labels for or mirror; the budget would need each
    # player's optimizer re-planned: the GAN trains for --epochs; its two networks start
    # fresh and train whole (no --init_from, no --freeze)
    unsupported = frozenset(
        {
            "init_from",
            "freeze",
            "flip_tta",
            "save_predictions",
            "crop_padding",
            "flip",
            "time_budget_minutes",
            "weight_decay",
            "weight_decay_mode",
            "early_stopping_patience",
            "val_size",
        }
    )

    def options(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def normalization(self, train: ArrayDataset) -> tuple[tuple[float, ...], tuple[float, ...]]:
        channels = train.image_shape[-1]  # [0, 1] -> [-1, 1], the generator's tanh range
        return (0.5,) * channels, (0.5,) * channels

    def num_outputs(self, train: ArrayDataset) -> int:
        return train.image_shape[-1]

    def augmentation(self, config: TrainConfig) -> Augmentation:
        return Augmentation()

    def train_step(self, config: TrainConfig) -> Callable:
        return functools.partial(gan_train_step, label_smoothing=config.label_smoothing)

    def initial_state(
        self,
        config: TrainConfig,
        num_outputs: int,
        image_shape: tuple[int, ...],
        steps_per_epoch: int,
    ) -> tuple[GANState, Callable[[int], float], jax.Array]:
        """Both players with one optimizer configuration each (Adam with b1 = 0.5 where the
        config says adam, as Radford et al. train DCGANs), from `config.seed`."""
        model = create_model(config, num_outputs)
        if getattr(model, "image_size", image_shape[0]) != image_shape[0]:
            raise ConfigError(
                f"model {config.model!r} makes {model.image_size}x{model.image_size} images but "
                f"{config.dataset} has {image_shape[0]}x{image_shape[1]}; set its image_size."
            )
        optimizer = config.optimizer_config()
        if optimizer.name == "adam":
            optimizer = dataclasses.replace(optimizer, b1=0.5)
        tx, learning_rate_fn = create_optimizer(optimizer, steps_per_epoch, config.epochs)
        init_key, data_key = jax.random.split(jax.random.PRNGKey(config.seed))
        state = create_gan_state(model, tx, tx, init_key, image_shape, self.average_decay)
        return state, learning_rate_fn, data_key

    def judge(self) -> Judge:
        return _cached_judge(self.judge_dir)

    def generated(self, state: GANState, count: int, seed: int, batch_size: int = 1000):
        """`count` images f[count, H, W, C] in [-1, 1] from the noise of `seed`, by the
        averaged generator (`GANState.sampler`)."""
        run = jax.jit(lambda generator, noise: generate(generator, noise))
        noise = jax.random.normal(jax.random.PRNGKey(seed), (count, state.latent))
        chunks = [
            run(state.sampler, noise[start : start + batch_size])
            for start in range(0, count, batch_size)
        ]
        return np.concatenate(jax.device_get(chunks))

    def evaluators(self, run: Run) -> list[Evaluator]:
        seed = run.config.seed + 1_000  # a fixed noise batch, the same every epoch
        out = os.path.join(run.rundir.plots, "samples")

        def epoch_samples(state) -> dict[str, float]:
            local = run.runner.local_state(state)
            images = self.generated(local, self.epoch_samples, seed)
            epoch = int(jax.device_get(local.step)) // run.steps
            if run.config.plots and is_main_process():
                plot_image_grid(
                    (images[:64] + 1) / 2, os.path.join(out, f"epoch_{epoch:03d}.png"), 8,
                    f"epoch {epoch}: the same noise every epoch",
                )  # fmt: skip
            probabilities, _ = self.judge().scores(images)
            return {"val_inception_score": inception_score(probabilities)}

        return [epoch_samples]

    def test(self, run: Run, state: Any, test_data: DeviceDataset) -> dict[str, Any]:
        local = run.runner.local_state(state)
        judge = self.judge()
        to_range = lambda images: images.astype(np.float32) / 127.5 - 1.0  # noqa: E731
        count = min(self.samples, len(run.test))
        fake_p, fake_f = judge.scores(self.generated(local, count, run.config.seed + 2_000))
        test_p, test_f = judge.scores(to_range(run.test.images[:count]))
        train_p, train_f = judge.scores(to_range(run.train.images[:count]))
        fractions = class_fractions(fake_p)
        return {
            "inception_score": inception_score(fake_p),
            "inception_score_real_train": inception_score(train_p),
            "inception_score_real_test": inception_score(test_p),
            "frechet_distance": frechet_distance(fake_f, test_f),
            "frechet_distance_real_train": frechet_distance(train_f, test_f),
            "generated_class_fractions": fractions.tolist(),
            "judge_test_accuracy": float(np.mean(test_p.argmax(-1) == run.test.labels[:count])),
            "judge": judge.run_dir,
            "samples": count,
        }

    def report(self, results: dict[str, Any]) -> None:
        fractions = results["generated_class_fractions"]
        spread = ", ".join(f"{digit}: {100 * f:.1f} %" for digit, f in enumerate(fractions))
        log(f"judge's classes of the generated images: {spread}")
        log(
            f"judge (LeNet-5, {results['judge']}) test accuracy: "
            f"{100 * results['judge_test_accuracy']:.2f} %"
        )
        log(
            f"Fréchet distance, LeNet features, real train vs real test: "
            f"{results['frechet_distance_real_train']:.3f}"
        )
        log(
            f"Fréchet distance, LeNet features, generated vs real test: "
            f"{results['frechet_distance']:.3f}"
        )
        for split in ("test", "train"):
            log(
                f"Inception Score (LeNet judge), real {split} images: "
                f"{results[f'inception_score_real_{split}']:.2f}"
            )
        log(f"Inception Score (LeNet judge): {results['inception_score']:.2f}")

    def outputs(self, run: Run, state: GANState, test_data: DeviceDataset, history) -> None:
        if not run.config.plots:
            return
        out = run.rundir.plots
        if history:
            plot_curves({"run": history}, os.path.join(out, "curves.png"))
        images = self.generated(state, 100, run.config.seed + 2_000)
        plot_image_grid((images + 1) / 2, os.path.join(out, "samples.png"), 10, "generated")
        results = run.rundir.read_results()
        plot_class_histogram(
            np.asarray(results["generated_class_fractions"]),
            run.train.class_names,
            os.path.join(out, "class_histogram.png"),
        )


@functools.lru_cache(maxsize=2)
def _cached_judge(run_dir: str) -> Judge:
    if not run_dir:
        raise ConfigError("the GAN task needs a judge: a classifier's run directory.")
    return load_judge(run_dir)
