"""TensorBoard: every run's events, read back with TensorBoard's own reader, hold each number
of `metrics.jsonl` at its step, the train metrics every 20 steps (and on each epoch's last)
and the run's plots."""

import dataclasses
import json
import os

import numpy as np
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from jaxdl.rundir import event_tag
from jaxdl.train import train_and_evaluate
from tests.test_reliability import TINY


def test_events_hold_the_metrics_and_the_plots(tmp_path, data_dir):
    workdir = str(tmp_path / "run")
    train_and_evaluate(dataclasses.replace(TINY, workdir=workdir, plots=True))
    events = EventAccumulator(workdir, size_guidance={"scalars": 0, "images": 0})
    events.Reload()
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        records = [json.loads(line) for line in f]
    assert len(records) == 2
    scalars = set(events.Tags()["scalars"])
    for record in records:
        for key, value in record.items():
            if key in ("epoch", "step"):
                continue
            tag = event_tag(key)
            assert tag in scalars, (tag, sorted(scalars))
            (logged,) = [e.value for e in events.Scalars(tag) if e.step == record["step"]]
            np.testing.assert_allclose(logged, value, rtol=1e-6)  # stored as float32
    for tag in ("train/loss", "val/accuracy", "learning_rate", "images_per_second"):
        assert tag in scalars
    steps = [e.step for e in events.Scalars("train_step/loss")]
    assert steps == [9, 18]  # every 20 steps and each epoch's last: 2 epochs of 9 steps
    plots = sorted(os.path.splitext(name)[0] for name in os.listdir(f"{workdir}/plots"))
    assert plots and sorted(events.Tags()["images"]) == [f"plots/{name}" for name in plots]
