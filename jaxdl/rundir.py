"""Every file of a run directory, written and read here only (checkpoints: `jaxdl.checkpoint`).

    RUN_DIR/
      config.json              the run's configuration (+ the data's channel statistics)
      metrics.jsonl            one JSON record per epoch: train / validation metrics, timings
      events.out.tfevents.*    the same figures for TensorBoard (`tensorboard --logdir runs/`):
                               each record's numbers per epoch at its step, the train metrics
                               every 20 steps and on each epoch's last ("train_step/..."), the
                               plots as images
      results.json             the final figures (test metrics, times, parameter count)
      test_probabilities.npy   f32[test examples, classes], with --save_predictions
      test_detections.json     a detector's held-out detections, COCO's results format, and
      test_ground_truth.json   the true boxes as a COCO dataset (`jaxdl.detection.to_coco`)
      conv_choices.json        the convolution kernels each shape ran on (oneDNN or XLA), so a
                               resumed run takes the same ones (`jaxdl.ops.onednn.tuning`)
      plots/                   PNG figures (`jaxdl.plots`)
      checkpoints/             latest/ and best/ (`jaxdl.checkpoint`)

In a multi-process run every process holds the same values; process 0 alone writes.
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np
from tensorboardX import SummaryWriter

from jaxdl.distributed.setup import is_main_process
from jaxdl.errors import ConfigError

CONFIG = "config.json"
METRICS = "metrics.jsonl"
RESULTS = "results.json"
PREDICTIONS = "test_probabilities.npy"
DETECTIONS = "test_detections.json"
GROUND_TRUTH = "test_ground_truth.json"
CONV_CHOICES = "conv_choices.json"
PLOTS = "plots"
CHECKPOINTS = "checkpoints"


class RunDir:
    """One run directory (see the module docstring for its files)."""

    def __init__(self, path: str):
        self.path = path
        self.writer = is_main_process()

    def file(self, name: str) -> str:
        return os.path.join(self.path, name)

    @property
    def plots(self) -> str:
        return self.file(PLOTS)

    @property
    def checkpoints(self) -> str:
        return self.file(CHECKPOINTS)

    def prepare(self) -> None:
        """Creates the directory, or says in one sentence why it cannot."""
        try:
            os.makedirs(self.path, exist_ok=True)
            probe = self.file(f".write_test.{os.getpid()}")
            with open(probe, "w"):
                pass
            os.remove(probe)
        except OSError as error:
            raise ConfigError(
                f"cannot write to the run directory {self.path!r} ({error.strerror}); "
                f"choose another --workdir."
            ) from None

    def has_checkpoint(self) -> bool:
        """Whether a resumable run is here: a config and at least one latest checkpoint."""
        latest = os.path.join(self.checkpoints, "latest")
        return (
            os.path.exists(self.file(CONFIG)) and os.path.isdir(latest) and any(os.scandir(latest))
        )

    def write_config(self, values: dict[str, Any]) -> None:
        self._write_json(CONFIG, values)

    def read_config(self) -> dict[str, Any]:
        path = self.file(CONFIG)
        if not os.path.exists(path):
            raise ConfigError(f"{self.path!r} has no {CONFIG}; pass a run directory jaxdl wrote.")
        with open(path) as f:
            return json.load(f)

    def write_results(self, results: dict[str, Any]) -> None:
        self._write_json(RESULTS, results)

    def read_results(self) -> dict[str, Any]:
        with open(self.file(RESULTS)) as f:
            return json.load(f)

    def write_conv_choices(self, choices: dict[str, dict[str, str]]) -> None:
        self._write_json(CONV_CHOICES, choices)

    def read_conv_choices(self) -> dict[str, dict[str, str]]:
        """The convolution choices a run wrote, or {} if it wrote none."""
        path = self.file(CONV_CHOICES)
        if not os.path.exists(path):
            return {}
        try:
            with open(path) as f:
                choices = json.load(f)
        except ValueError:
            choices = None
        if not isinstance(choices, dict):
            raise ConfigError(
                f"{path} is not a JSON object of convolution choices; delete it (the run then "
                f"times its convolutions again) or restore it."
            )
        return choices

    def save_predictions(self, probabilities: np.ndarray) -> None:
        if self.writer:
            os.makedirs(self.path, exist_ok=True)
            np.save(self.file(PREDICTIONS), np.asarray(probabilities, np.float32))

    def save_detections(self, ground_truth: dict[str, Any], detections: list[dict]) -> None:
        """A detector's test detections and the true boxes, in COCO's JSON formats."""
        self._write_json(GROUND_TRUTH, ground_truth)
        if self.writer:
            with open(self.file(DETECTIONS), "w") as f:
                json.dump(detections, f)

    def load_predictions(self) -> np.ndarray:
        path = self.file(PREDICTIONS)
        if not os.path.exists(path):
            raise ConfigError(f"{path} is missing; run with --save_predictions.")
        return np.load(path)

    def read_metrics(self, before_epoch: int | None = None) -> list[dict[str, Any]]:
        """The metrics records (of epochs before `before_epoch`, when given), oldest first."""
        path = self.file(METRICS)
        if not os.path.exists(path):
            return []
        with open(path) as f:
            records = [json.loads(line) for line in f if line.strip()]
        if before_epoch is None:
            return records
        return [r for r in records if r["epoch"] < before_epoch]

    def read_step_metrics(self, name: str = "loss") -> list[tuple[int, float, float]]:
        """The training metric `name` as the run logged it every 20 steps (TensorBoard's
        `train_step/<name>`): (step, seconds since the first logged step, value), by step."""
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

        events = EventAccumulator(self.path, size_guidance={"scalars": 0})
        events.Reload()
        tag = f"train_step/{name}"
        if tag not in events.Tags()["scalars"]:
            return []
        scalars = sorted(events.Scalars(tag), key=lambda e: e.step)
        start = scalars[0].wall_time
        return [(e.step, e.wall_time - start, float(e.value)) for e in scalars]

    def metrics_writer(self, history: list[dict[str, Any]], step: int = 0) -> MetricsWriter:
        """A writer that starts `metrics.jsonl` over with `history` (the records a resumed run
        keeps) and appends one record per call, each also to TensorBoard's events; `step` is
        the global step the run starts from (TensorBoard drops what an earlier try of this run
        logged from there on)."""
        if not self.writer:
            return MetricsWriter(os.devnull, history, None)
        events = SummaryWriter(self.path, purge_step=step or None, flush_secs=30)
        return MetricsWriter(self.file(METRICS), history, events)

    def write_plots_to_events(self) -> None:
        """Adds every PNG under plots/ to TensorBoard's events as an image named by its file."""
        if not self.writer or not os.path.isdir(self.plots):
            return
        from PIL import Image

        with SummaryWriter(self.path) as events:
            for name in sorted(os.listdir(self.plots)):
                if name.endswith(".png"):
                    with Image.open(os.path.join(self.plots, name)) as image:
                        pixels = np.asarray(image.convert("RGB"))
                    events.add_image(f"plots/{name[:-4]}", pixels, dataformats="HWC")

    def _write_json(self, name: str, values: dict[str, Any]) -> None:
        if self.writer:
            os.makedirs(self.path, exist_ok=True)
            with open(self.file(name), "w") as f:
                json.dump(values, f, indent=2, default=str)


def event_tag(key: str) -> str:
    """The TensorBoard tag of a record entry: `train_loss` -> `train/loss`, `val_accuracy` ->
    `val/accuracy`; the rest (learning_rate, images_per_second, ...) as they are."""
    for split in ("train", "val"):
        if key.startswith(f"{split}_") and key != "val_seconds":
            return f"{split}/{key[len(split) + 1 :]}"
    return key


class MetricsWriter:
    """Appends epoch records to `metrics.jsonl`, flushed line by line (a killed run keeps every
    finished epoch), and their numbers to TensorBoard's `events` at each record's step."""

    def __init__(self, path: str, history: list[dict[str, Any]], events: SummaryWriter | None):
        if path != os.devnull:
            os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        self._file = open(path, "w")  # noqa: SIM115 - closed by close()
        for record in history:
            self._file.write(json.dumps(record) + "\n")
        self._file.flush()
        self._events = events

    def write(self, record: dict[str, Any]) -> None:
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()
        if self._events is not None:
            for key, value in record.items():
                if key not in ("epoch", "step") and isinstance(value, (int, float)):
                    self._events.add_scalar(event_tag(key), value, record["step"])
            self._events.flush()

    def write_step(self, step: int, metrics: dict[str, float]) -> None:
        """One train step's scalar metrics, as `train_step/<name>` at `step`."""
        if self._events is not None:
            for name, value in metrics.items():
                self._events.add_scalar(f"train_step/{name}", value, step)

    def close(self) -> None:
        self._file.close()
        if self._events is not None:
            self._events.close()
