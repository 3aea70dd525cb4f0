"""The option vocabulary every experiment shares, and the error handling of every command.

Experiments build their parser with `parser(description, defaults, exclude)`, so the same option
means the same thing everywhere (--dataset, --data_dir, --model, --epochs, --batch_size, --lr,
--optimizer, --schedule, --weight_decay, --seed, --workdir, ...); an experiment leaves out
(`exclude`) every option it cannot honour, so each option it offers acts. `--help` prints every
default.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shlex
import sys
import time
import traceback
from collections.abc import Callable, Collection

from jaxdl.config import DTYPES, TrainConfig, config_from_values
from jaxdl.distributed.setup import exit_process, in_multiprocess_run, initialize_from_env
from jaxdl.errors import ConfigError
from jaxdl.loop import log
from jaxdl.nn.conv import LAYER_IMPLS
from jaxdl.optim import OPTIMIZERS, SCHEDULES, WEIGHT_DECAY_MODES
from jaxdl.parallel import MODES
from jaxdl.preemption import Preempted
from jaxdl.rundir import PREDICTIONS, RunDir

_HELP = {
    "dataset": "TFDS dataset name",
    "data_dir": "folder with TFDS's prepared data (default: $TFDS_DATA_DIR)",
    "model": "model name from jaxdl.models.names()",
    "epochs": "training epochs (with --time_budget_minutes: the most epochs)",
    "time_budget_minutes": "fit the number of epochs to this much training time on this "
    "machine, from a few timed steps before training (0: off, train --epochs)",
    "batch_size": "training batch size (global, across devices)",
    "eval_batch_size": "evaluation batch size",
    "lr": "peak learning rate",
    "optimizer": "optimizer",
    "schedule": "learning-rate schedule",
    "warmup_epochs": "linear warm-up length for warmup_cosine",
    "lr_decay": "exponential: the final learning rate as a fraction of --lr; plateau: the "
    "factor of each reduction",
    "plateau_patience": "plateau: epochs without a better validation loss before a reduction",
    "init_from": "start from this run directory's trained weights (every layer of the same "
    "name and shape; the rest, such as a head for other classes, starts fresh)",
    "freeze": "a regular expression over parameter paths (e.g. 'BasicBlock|ConvBN'): the "
    "parameters it matches are not trained",
    "momentum": "momentum for momentum / nesterov",
    "weight_decay": "weight decay coefficient (kernels only)",
    "weight_decay_mode": "l2 (in the loss) or decoupled (AdamW-style) (default: decoupled for "
    "adamw, l2 otherwise)",
    "label_smoothing": "label smoothing for the cross-entropy",
    "clip_grad_norm": "rescale each step's gradients to at most this global L2 norm (0: off)",
    "val_size": "validation examples carved from the training split",
    "crop_padding": "random-crop padding in pixels (0: no crop)",
    "flip": "random horizontal flips",
    "early_stopping_patience": "stop after this many epochs without validation improvement",
    "max_bad_steps": "stop after this many consecutive steps with a non-finite loss or "
    "gradient (each such step is skipped: parameters unchanged)",
    "flip_tta": "also report test accuracy with flip test-time augmentation",
    "plots": "write plots to the run directory's plots/",
    "parallel": "single: one device (jax.jit); pmap: jax.pmap over the local devices; sharded: "
    "jax.jit on a device mesh, the batch split over it. Default single: on CPU, devices share "
    "the same cores, so splitting only adds overhead",
    "dtype": "computation dtype",
    "layers": "convolution / BatchNorm implementation (jaxdl.nn.conv): onednn runs the "
    "convolutions on oneDNN's kernels, fast is written for XLA:CPU, plain is flax's; auto: "
    "onednn on CPU for float32 when its library loaded (else fast), plain elsewhere (default: "
    "$JAXDL_LAYERS, else auto)",
    "seed": "random seed (initialisation, split, shuffling, augmentation, dropout)",
    "workdir": "run directory for config, metrics, checkpoints and results; an existing one "
    "is resumed from its latest checkpoint",
    "restart": "delete the run directory's checkpoints and start over",
    "checkpoint_every_steps": "also checkpoint every N steps (0: at epoch ends only)",
    "checkpoint_every_minutes": "also checkpoint every M minutes of wall time (0: off)",
    "keep_checkpoints": "how many latest checkpoints to keep (the best one is kept apart)",
    "train_limit": "use only the first N training examples (quick runs)",
    "test_limit": "use only the first N test examples (quick runs)",
    "save_predictions": f"write the test split's class probabilities to {PREDICTIONS}",
    "quiet": "no progress bar; one line per epoch",
}
_CHOICES = {
    "optimizer": OPTIMIZERS,
    "schedule": SCHEDULES,
    "weight_decay_mode": WEIGHT_DECAY_MODES,
    "dtype": tuple(DTYPES),
    "parallel": MODES,
    "layers": LAYER_IMPLS,
}


class Parser(argparse.ArgumentParser):
    """An argument parser with `--config RUN_DIR` (or `RUN_DIR/config.json`): the options'
    defaults become that run's values, so a new run repeats it exactly, and any option given
    beside it overrides it. The saved values are kept as `args.saved_config`; a new run
    directory (`<that run's workdir>-rerun` unless --workdir says) keeps the old run intact."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.add_argument(
            "--config",
            default=None,
            help="repeat the run of this run directory (or its config.json); options given "
            "beside it override its values",
        )

    def parse_known_args(self, args=None, namespace=None):
        argv = sys.argv[1:] if args is None else list(args)
        probe = argparse.ArgumentParser(add_help=False)
        probe.add_argument("--config", default=None)
        path = probe.parse_known_args(argv)[0].config
        if not path:
            return super().parse_known_args(argv, namespace)
        saved = read_saved_config(path)
        dests = {action.dest for action in self._actions}
        defaults = {k: from_json(v) for k, v in saved.items() if k in dests and k != "config"}
        defaults["workdir"] = f"{saved.get('workdir', 'runs/default').rstrip('/')}-rerun"
        self.set_defaults(**defaults, saved_config=saved)
        return super().parse_known_args(argv, namespace)


def read_saved_config(path: str) -> dict:
    """The values of a run's `config.json`, given the run directory or the file itself."""
    directory = os.path.dirname(path) if os.path.basename(path) == "config.json" else path
    if not os.path.isdir(directory):
        raise ConfigError(
            f"--config {path}: no such run directory; pass a run directory jaxdl wrote (or its "
            f"config.json)."
        )
    return RunDir(directory).read_config()


def from_json(value):
    """A saved value as the option holds it (JSON has no tuples)."""
    return tuple(value) if isinstance(value, list) else value


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Adds "(default: X)" to an option's help unless the help already says its default."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if "(default:" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


def parser(
    description: str, defaults: TrainConfig, exclude: Collection[str] = ()
) -> argparse.ArgumentParser:
    """An argument parser with one option per `TrainConfig` field, defaulting to `defaults`,
    except the fields in `exclude` (options the experiment cannot honour: they keep
    `defaults`' value)."""
    unknown = set(exclude) - set(_HELP)
    if unknown:
        raise ValueError(f"cannot exclude unknown options {sorted(unknown)}")
    result = Parser(description=description, formatter_class=HelpFormatter)
    for field in dataclasses.fields(TrainConfig):
        if field.name not in _HELP or field.name in exclude:
            continue
        default = getattr(defaults, field.name)
        kwargs = {"default": default, "help": _HELP[field.name]}
        if field.name in _CHOICES:
            kwargs["choices"] = _CHOICES[field.name]
        if isinstance(default, bool):
            kwargs["action"] = argparse.BooleanOptionalAction
        else:
            kwargs["type"] = _type_of(field.name, default)
        result.add_argument(f"--{field.name}", **kwargs)
    return result


def _type_of(name: str, default) -> Callable:
    if name in ("data_dir", "weight_decay_mode", "layers", "init_from", "freeze"):
        return str
    if name in ("early_stopping_patience", "train_limit", "test_limit"):
        return int
    return type(default)


def config_from_args(args: argparse.Namespace, defaults: TrainConfig, **overrides) -> TrainConfig:
    """A `TrainConfig` from parsed options (fields not on the command line keep `defaults`,
    or, with `--config`, the saved run's values)."""
    saved = getattr(args, "saved_config", None)
    if saved:
        kept = (set(saved) & {f.name for f in dataclasses.fields(TrainConfig)}) - set(overrides)
        values = vars(config_from_values(saved))
        defaults = dataclasses.replace(defaults, **{k: values[k] for k in kept})
    values = {
        f.name: getattr(args, f.name)
        for f in dataclasses.fields(TrainConfig)
        if hasattr(args, f.name)
    }
    config = dataclasses.replace(defaults, **values, **overrides)
    if saved:
        log(f"configuration of {args.config}, as run now: {json.dumps(dataclasses.asdict(config))}")
    return config


def finish(workdir: str, results: dict, start: float) -> dict:
    """The end of a command that compares several runs: its `results` with the wall time since
    `start` (`time.perf_counter()`) written to `workdir`'s results.json, and one closing line."""
    results = results | {"wall_seconds": time.perf_counter() - start}
    RunDir(workdir).write_results(results)
    log(f"wall time {results['wall_seconds']:.1f} s; run directory {os.path.abspath(workdir)}")
    return results


def resume_command() -> str:
    """This process's command line as the user typed it (what resumes a stopped run)."""
    argv = getattr(sys, "orig_argv", None) or [sys.executable, *sys.argv]
    return " ".join(shlex.quote(part) for part in argv)


def run(main: Callable[[], object]) -> None:
    """Runs a command's `main`; a `ConfigError` ends it with one line on stderr and exit code 2,
    no traceback; SIGTERM / Ctrl-C during training checkpoint the run and end it with one line
    saying where it stopped and how to resume, and exit code 143 / 130. Joins a multi-process
    run first when `jaxdl.distributed.launch` started this one; there, any failure ends the
    process at once, so the launcher can stop the others."""
    try:
        initialize_from_env()
        main()
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        exit_process(2)
    except Preempted as stopped:
        where = f"; checkpoint {stopped.directory}" if stopped.directory else ""
        log(f"{stopped}{where}; run the same command again to resume: {resume_command()}")
        exit_process(stopped.exit_code)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        exit_process(130)
    except Exception:
        if not in_multiprocess_run():
            raise
        traceback.print_exc()
        exit_process(1)
