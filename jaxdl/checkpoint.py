"""Checkpoints with Orbax: the last K by step and the best by the run's selection metric, each
written atomically (Orbax writes into a temporary directory and renames it on commit, so a run
killed mid-write leaves the previous checkpoints intact).

A checkpoint holds the whole `TrainState` as arrays (step, params, batch_stats, opt_state, rng)
plus a JSON `meta` item: the data position (`epoch`, `index` of the next batch in that epoch's
shuffled order), the model name and its parameter count. Nothing is pickled: arrays go through
tensorstore, metadata through JSON.

Layout: `workdir/checkpoints/latest/<step>/` and `workdir/checkpoints/best/<step>/`.

In a multi-process run every process holds the same replicated state: process 0 alone writes,
every process reads (to resume), each through its own Orbax managers that never wait for the
others (`MultiprocessingOptions(active_processes={this process})`).
"""

from __future__ import annotations

import logging
import os
import shutil
from typing import Any

import jax
import orbax.checkpoint as ocp
from flax import serialization

from jaxdl.errors import ConfigError
from jaxdl.state import TrainState, count_params

# Orbax logs every save and restore at INFO; a training log wants one line per event.
# (never lower than another jaxdl module set it: jaxdl.data silences TFDS's warnings too)
_absl = logging.getLogger("absl")
_absl.setLevel(max(_absl.level, logging.WARNING))


def _damaged(step: int, error: Exception) -> str:
    reason = str(error).splitlines()[0][:120] if str(error) else ""
    return (
        f"checkpoint at step {step} is damaged or unreadable ({type(error).__name__}: "
        f"{reason}); trying an older one"
    )


def _state_dict(state: TrainState) -> dict[str, Any]:
    return serialization.to_state_dict(state)


class Checkpointer:
    """Saves and restores a run's checkpoints under `directory` (see the module docstring)."""

    def __init__(self, directory: str, keep: int = 3, best_mode: str = "max"):
        self.directory = os.path.abspath(directory)
        process = jax.process_index()
        self.writer = process == 0
        common = {"enable_async_checkpointing": False, "create": True}
        if jax.process_count() > 1:
            # each process's managers act alone (process 0 writes, all read); Orbax leaves
            # creating the directories to us then
            for name in ("latest", "best"):
                os.makedirs(os.path.join(self.directory, name), exist_ok=True)
            common["create"] = False
            common["multiprocessing_options"] = ocp.options.MultiprocessingOptions(
                primary_host=process, active_processes={process}
            )
        self._latest = ocp.CheckpointManager(
            os.path.join(self.directory, "latest"),
            options=ocp.CheckpointManagerOptions(max_to_keep=keep, **common),
            item_names=("state", "meta"),
        )
        self._best = ocp.CheckpointManager(
            os.path.join(self.directory, "best"),
            options=ocp.CheckpointManagerOptions(
                max_to_keep=1,
                best_fn=lambda metrics: metrics["score"],
                best_mode=best_mode,
                keep_checkpoints_without_metrics=False,
                **common,
            ),
            item_names=("state", "meta"),
        )

    def latest_path(self, step: int) -> str:
        """Where the latest/ checkpoint of `step` lives."""
        return os.path.join(self.directory, "latest", str(step))

    def save(self, state: TrainState, meta: dict[str, Any], score: float | None = None):
        """Writes `state` and `meta` at `state.step` to latest/, and to best/ when `score` (the
        run's selection metric) is given and beats the best so far, in the `best_mode`
        direction (process 0 only)."""
        if not self.writer:
            return
        step = int(jax.device_get(state.step))
        if jax.process_count() > 1:  # Orbax refuses one process's device arrays there
            state = jax.device_get(state)
        args = ocp.args.Composite(
            state=ocp.args.StandardSave(_state_dict(state)), meta=ocp.args.JsonSave(meta)
        )
        # A step can exist already after a resume: a damaged checkpoint that was skipped (replace
        # it), or a best one from before the interruption (the same state: keep it).
        if step in self._latest.all_steps():
            self._latest.delete(step)
        self._latest.save(step, args=args, force=True)
        if score is not None and step not in self._best.all_steps():
            self._best.save(step, args=args, metrics={"score": score}, force=True)

    def restore_latest(
        self, target: TrainState, model_name: str, log=print
    ) -> tuple[TrainState, dict[str, Any]] | None:
        """The newest readable checkpoint as `(state, meta)`, or None when there is none.

        A damaged checkpoint (truncated or partial files) is reported in one line and skipped
        for the one before it. A checkpoint of another model, or of the same model with other
        shapes, raises `ConfigError` naming both.
        """
        steps = sorted(self._latest.all_steps(), reverse=True)
        for step in steps:
            try:
                meta = self._latest.restore(
                    step, args=ocp.args.Composite(meta=ocp.args.JsonRestore())
                )["meta"]
            except Exception as error:  # noqa: BLE001 - any unreadable file means damaged
                log(_damaged(step, error))
                continue
            self._check_compatible(meta, target, model_name)
            try:
                restored = self._latest.restore(
                    step,
                    args=ocp.args.Composite(state=ocp.args.StandardRestore(_state_dict(target))),
                )["state"]
            except Exception as error:  # noqa: BLE001
                log(_damaged(step, error))
                continue
            return serialization.from_state_dict(target, restored), meta
        if steps:
            raise ConfigError(
                f"none of the {len(steps)} checkpoints in {self.directory} could be read; "
                f"use --restart to start over."
            )
        return None

    def restore_best(self, target: TrainState, model_name: str) -> TrainState | None:
        """The best/ checkpoint's state (the best epoch by the run's selection metric so
        far), or None when there is none; a checkpoint of another model raises as
        `restore_latest` does."""
        step = self._best.best_step()
        if step is None:
            return None
        meta = self._best.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
        self._check_compatible(meta["meta"], target, model_name)
        restored = self._best.restore(
            step, args=ocp.args.Composite(state=ocp.args.StandardRestore(_state_dict(target)))
        )["state"]
        return serialization.from_state_dict(target, restored)

    def _check_compatible(self, meta: dict, target: TrainState, model_name: str) -> None:
        expected = count_params(target.params)
        if meta.get("model") != model_name or meta.get("parameters") != expected:
            raise ConfigError(
                f"the checkpoint in {self.directory} is of model {meta.get('model')!r} with "
                f"{meta.get('parameters')} parameters, not {model_name!r} with {expected}; "
                f"use another --workdir or --restart to start over."
            )

    def close(self) -> None:
        self._latest.close()
        self._best.close()


def trained_weights(run_dir: str) -> dict[str, Any]:
    """`{"params", "batch_stats"}` (host arrays) of another run's best checkpoint, else its
    latest: the weights `--init_from` starts a run from. One sentence if there are none."""
    for kind in ("best", "latest"):
        directory = os.path.join(os.path.abspath(run_dir), "checkpoints", kind)  # Orbax: absolute
        if not os.path.isdir(directory):
            continue
        manager = ocp.CheckpointManager(directory, item_names=("state", "meta"))
        step = manager.latest_step()
        if step is not None:
            state = manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore()))
            manager.close()
            state = state["state"]
            return {"params": state["params"], "batch_stats": state.get("batch_stats") or {}}
        manager.close()
    raise ConfigError(
        f"--init_from {run_dir!r} holds no checkpoint (no checkpoints/best or checkpoints/latest "
        f"with a step); point it at the run directory of a trained run."
    )


def remove_checkpoints(directory: str) -> None:
    """Deletes a run's checkpoints (for `--restart`)."""
    shutil.rmtree(directory, ignore_errors=True)
