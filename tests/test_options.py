"""Every option an experiment offers acts.

Two halves, so that no option needs a long run of every experiment:

1. For every experiment and every option in its `--help`, running the experiment with the
   option changed hands its training something different: the configurations and tasks given
   to the one training path (`train_and_evaluate`, replaced here by a recorder that writes a
   run directory as the real one does), the recipe runs of the speedrun, or, for the full-batch
   regression topics, which run for real, their results and files. An option whose value goes
   nowhere fails here.
2. For every field of the shared configuration, a tiny real run through the one training path
   shows an observable effect of changing it: a different model, optimizer state, learning
   rate, data pipeline output, saved file, metric or refusal (`test_config_field_acts`).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import importlib
import io
import json
import os
import pkgutil

import jax
import numpy as np
import pytest

import experiments
from jaxdl import cli
from jaxdl.build import create_model
from jaxdl.config import TrainConfig
from jaxdl.errors import ConfigError, NonFiniteError
from jaxdl.rundir import RunDir

EXPERIMENTS = sorted(module.name for module in pkgutil.iter_modules(experiments.__path__))

# Quick settings each experiment is run with (option changes come on top).
BASE_ARGV = {
    "activations": ["--activations", "relu", "--depth", "2", "--width", "8", "--epochs", "1"],
    "backprop": ["--epochs", "1", "--train_limit", "1000"],
    "cifar_resnet": ["--train_limit", "500", "--test_limit", "100"],
    "cifar_speedrun": [
        *("--seeds", "1", "--train_limit", "2048", "--batch_size", "512", "--test_limit", "50")
    ],
    "cifar_zoo": ["--models", "resnet20"],
    "ensemble": ["--members", "2", "--test_limit", "50"],
    "gan": ["--judge", "a_judge_run"],  # no LeNet-5 is trained for the trace
    "linear_regression": ["--steps", "30", "--sweep", "0.01,0.1"],
    "logistic_regression": ["--steps", "30"],
    "regularization": ["--settings", "none,dropout"],
}
# Values for options whose type alone does not give a valid other value.
PROBES = {
    "activations": "tanh",
    "compare": "no_such_run",  # refused: a run directory to compare must hold a finished run
    "judge": "another_judge_run",
    "init_from": "a_trained_run",
    "freeze": "Dense",
    "prompt": "class ",
    "run_dir": "a_trained_run",
    "patch_layer": "BasicBlock_4",
    "channels": "7,8",
    "second_run_dir": "another_trained_run",
    "text_root": "other_sources",
    "models": "resnet32",
    "optimizers": "adam",
    "settings": "weight decay",
    "shift_zoom": "none",
    "sweep": "0.02,0.1",
    "widths": "32,16",
}


def probe(action: argparse.Action, tmp_path) -> list[str]:
    """Command-line words that set `action`'s option to a valid value other than its default."""
    name, flag = action.dest, action.option_strings[-1]
    if isinstance(action, argparse.BooleanOptionalAction):
        return [f"--no-{name}" if action.default else f"--{name}"]
    if isinstance(action, argparse._StoreTrueAction):
        return [flag]
    if action.choices:  # the last other choice (the first is often the effective default)
        return [flag, next(str(c) for c in reversed(action.choices) if c != action.default)]
    if name == "dataset":
        return [flag, "mnist" if action.default == "cifar10" else "cifar10"]
    if name == "model":
        other = {
            "resnet20": "resnet32",
            "airbench_resnet": "airbench94",
            "mlp": "softmax_regression",
            "softmax_regression": "mlp",
            "centernet": "fcn",
            "vgg_small": "lenet5",
        }
        return [flag, other[action.default]]
    if name == "data_dir":
        return [flag, str(tmp_path / "empty_tfds")]
    if name == "workdir":
        return [flag, str(tmp_path / "other_workdir")]
    if name == "config":  # a saved run that differs from the defaults in its seed
        saved = tmp_path / "saved_run"
        os.makedirs(saved, exist_ok=True)
        with open(saved / "config.json", "w") as f:
            json.dump({"seed": 12345, "workdir": str(saved)}, f)
        return [flag, str(saved)]
    if name in PROBES:
        return [flag, PROBES[name]]
    if action.type is float:
        return [flag, str(action.default + 0.05 if action.default else 0.5)]
    if action.type is int:
        return [flag, str(action.default + 1 if action.default is not None else 2)]
    raise AssertionError(f"no probe value for --{name} ({action.type}); add one to PROBES")


def options_of(name: str) -> list[argparse.Action]:
    module = importlib.import_module(f"experiments.{name}")
    return [action for action in module.parser()._actions if action.dest != "help"]


def test_every_experiment_builds_its_parser_without_side_effects():
    for name in EXPERIMENTS:
        assert options_of(name), name


class Recorder:
    """Stands in for `train_and_evaluate`: records what it was given and writes the run
    directory an experiment reads back (config, one metrics record, results, predictions)."""

    def __init__(self):
        self.calls = []

    def __call__(self, config: TrainConfig, task=None) -> dict:
        options = task.options() if task is not None else {}
        self.calls.append((dataclasses.asdict(config), type(task).__name__, options))
        rundir = RunDir(config.workdir)
        rundir.prepare()
        rundir.write_config(dataclasses.asdict(config))
        record = {"epoch": 1, "train_loss": 1.0, "train_accuracy": 0.5, "val_accuracy": 0.5}
        with contextlib.closing(rundir.metrics_writer([record])):
            pass
        if config.save_predictions:
            rundir.save_predictions(np.full((config.test_limit or 10000, 10), 0.1))
        heads = options.get("head_names", ["classes"])
        return {
            "test_accuracy": 0.5,
            "train_seconds": 1.0,
            "compile_seconds": 1.0,
            "epochs_run": 1,
            "best_epoch": 1,
            "images_per_second": 1.0,
            "test_head_accuracies": dict.fromkeys(heads, 0.5),
        }


def fake_speedrun_seed(calls):
    def run_seed(seed, model, counters, train, test, recipe, workdir, quiet):
        calls.append((seed, len(train), len(test), recipe, workdir, quiet))
        return {
            "seed": seed,
            "test_accuracy": 0.5,
            "test_accuracy_tta": 0.5,
            "train_seconds": 1.0,
            "compile_seconds": 1.0,
        }

    return run_seed


def trace(name: str, argv: list[str], root, monkeypatch) -> tuple:
    """What experiment `name` run with `argv` hands its training, what it returns and the files
    it writes below `root` (its paths written relative to `root`)."""
    module = importlib.import_module(f"experiments.{name}")
    argv = [*BASE_ARGV.get(name, []), *argv]
    if "--workdir" not in argv:
        argv += ["--workdir", str(root / "runs")]
    recorder, speedrun_calls = Recorder(), []
    with monkeypatch.context() as patch:
        if hasattr(module, "train_and_evaluate"):
            patch.setattr(module, "train_and_evaluate", recorder)
        if hasattr(module, "run_seed"):
            patch.setattr(module, "run_seed", fake_speedrun_seed(speedrun_calls))
        if hasattr(module, "analyse"):  # what follows training: its arguments are the trace
            patch.setattr(module, "analyse", lambda *a: recorder.calls.append(("analyse", a)) or {})
        if hasattr(module, "cost"):  # the zoo's FLOP count compiles each model: not tested here
            patch.setattr(module.cost, "forward_flops", lambda model, shape: 1e9)
            patch.setattr(module.cost, "param_count", lambda model, shape: 1)
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                outcome = _without_timings(module.main(argv))
        except (ConfigError, NonFiniteError) as error:
            outcome = ("refused", str(error))
    files = sorted(
        (os.path.relpath(os.path.join(folder, f), root), _digest(os.path.join(folder, f)))
        for folder, _, names in os.walk(root)
        for f in names
        if f not in ("results.json", "config.json")
    )
    return repr((recorder.calls, speedrun_calls, outcome, files)).replace(str(root), "<root>")


def _digest(path: str) -> str:
    if path.endswith(".jsonl"):
        return ""  # epoch records carry timings
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()[:12]


def _without_timings(value):
    if isinstance(value, dict):
        return {k: _without_timings(v) for k, v in value.items() if "seconds" not in k}
    if isinstance(value, (list, tuple)):
        return [_without_timings(v) for v in value]
    return value


CASES = [(name, action.dest) for name in EXPERIMENTS for action in options_of(name)]
_BASE_TRACES: dict[str, str] = {}


@pytest.mark.slow
@pytest.mark.parametrize("name, option", CASES, ids=[f"{n}--{o}" for n, o in CASES])
def test_option_changes_what_the_experiment_trains(
    name, option, tmp_path, tmp_path_factory, monkeypatch, data_dir
):
    action = next(a for a in options_of(name) if a.dest == option)
    if name not in _BASE_TRACES:
        _BASE_TRACES[name] = trace(name, [], tmp_path_factory.mktemp(name), monkeypatch)
    changed = trace(name, probe(action, tmp_path / "probe"), tmp_path, monkeypatch)
    assert changed != _BASE_TRACES[name], f"experiments.{name} --{option} changed nothing"


# ---- 2. each configuration field acts in a tiny real run --------------------------------------

TINY = TrainConfig(
    dataset="mnist",
    model="mlp",
    model_options={"widths": (16,)},
    epochs=1,
    batch_size=32,
    eval_batch_size=40,
    lr=3e-3,
    train_limit=320,
    test_limit=80,
    quiet=True,
    plots=False,
)


@dataclasses.dataclass
class Observation:
    results: dict | None
    history: list
    files: set
    stdout: str
    stderr: str
    error: str | None
    eval_batch_sizes: list


def observe(config: TrainConfig, capsys, monkeypatch) -> Observation:
    from jaxdl.tasks import classification
    from jaxdl.train import train_and_evaluate

    sizes = []
    original = classification.eval_batches

    def eval_batches(data, batch_size, preprocess):
        sizes.append(batch_size)
        return original(data, batch_size, preprocess)

    monkeypatch.setattr(classification, "eval_batches", eval_batches)
    results, error = None, None
    try:
        results = train_and_evaluate(config)
    except (ConfigError, NonFiniteError) as caught:
        error = type(caught).__name__
    captured = capsys.readouterr()
    files = {
        os.path.relpath(os.path.join(folder, f), config.workdir)
        for folder, _, names in os.walk(config.workdir)
        for f in names
    }
    rundir = RunDir(config.workdir)
    return Observation(
        results, rundir.read_metrics(), files, captured.out, captured.err, error, sizes
    )


def _loss(o: Observation):
    return [r["train_loss"] for r in o.history]


def _model_program(config: TrainConfig) -> str:
    model = create_model(config, 10)
    x = jax.numpy.zeros((2, 28, 28, 1))
    variables = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), x))
    return str(
        jax.make_jaxpr(lambda v: model.apply(v, x, train=True, mutable=["batch_stats"]))(variables)
    )


def _checkpoints(o: Observation) -> int:
    return len({f.split(os.sep)[2] for f in o.files if f.startswith("checkpoints/latest/")})


# field -> (changes to TINY for both runs, the change under test, what must differ)
FIELD_EFFECTS = {
    "dataset": ({}, {"dataset": "cifar10"}, lambda o: o.results["parameters"]),
    "data_dir": ({}, {"data_dir": "/nonexistent/tfds"}, lambda o: o.error),
    "model": ({}, {"model": "softmax_regression", "model_options": {}}, lambda o: o.results["parameters"]),
    "epochs": ({}, {"epochs": 2}, lambda o: len(o.history)),
    "time_budget_minutes": ({"epochs": 3}, {"time_budget_minutes": 0.01}, lambda o: "time budget" in o.stdout),
    "batch_size": ({}, {"batch_size": 64}, lambda o: o.history[0]["step"]),
    "eval_batch_size": ({}, {"eval_batch_size": 20}, lambda o: o.eval_batch_sizes),
    "lr": ({}, {"lr": 3e-2}, _loss),
    "optimizer": ({}, {"optimizer": "sgd"}, _loss),
    "schedule": ({}, {"schedule": "constant"}, lambda o: o.history[0]["learning_rate"]),
    "warmup_epochs": ({"epochs": 2}, {"warmup_epochs": 0.5}, lambda o: o.history[0]["learning_rate"]),
    "init_from": ({}, {"init_from": "/nonexistent/run"}, lambda o: o.error),
    "freeze": ({}, {"freeze": "Dense_0"}, _loss),
    "lr_decay": ({"schedule": "exponential"}, {"lr_decay": 0.5}, lambda o: o.history[0]["learning_rate"]),
    "plateau_patience": ({"schedule": "plateau", "epochs": 3, "lr": 1e-12}, {"plateau_patience": 1}, lambda o: "reduce on plateau" in o.stdout),
    "momentum": ({"optimizer": "momentum"}, {"momentum": 0.5}, _loss),
    "weight_decay": ({}, {"weight_decay": 0.5}, _loss),
    "weight_decay_mode": ({"weight_decay": 0.5}, {"weight_decay_mode": "decoupled"}, _loss),
    "label_smoothing": ({}, {"label_smoothing": 0.3}, _loss),
    "clip_grad_norm": ({"optimizer": "sgd", "lr": 3e-2}, {"clip_grad_norm": 1e-3}, _loss),
    "lookahead_every": ({"optimizer": "sgd", "lr": 3e-2}, {"lookahead_every": 1}, _loss),
    "val_size": ({}, {"val_size": 8}, lambda o: o.history[0]["val_loss"]),
    "crop_padding": ({}, {"crop_padding": 4}, _loss),
    "flip": ({}, {"flip": True}, _loss),
    "early_stopping_patience": ({"epochs": 3, "lr": 1e-12}, {"early_stopping_patience": 1}, lambda o: len(o.history)),
    "max_bad_steps": ({"optimizer": "sgd", "lr": 1e12}, {"max_bad_steps": 2}, lambda o: o.error),
    "flip_tta": ({}, {"flip_tta": True}, lambda o: "test_accuracy_flip_tta" in o.results),
    "plots": ({}, {"plots": True}, lambda o: any(f.startswith("plots") for f in o.files)),
    "parallel": ({}, {"parallel": "pmap"}, lambda o: o.results["devices"]),
    "dtype": ({}, {"dtype": "bfloat16"}, _loss),
    "seed": ({}, {"seed": 1}, _loss),
    "save_predictions": ({}, {"save_predictions": True}, lambda o: "test_probabilities.npy" in o.files),
    "quiet": ({}, {"quiet": False}, lambda o: "epoch 1/1" in o.stderr),
    "train_limit": ({}, {"train_limit": 640}, lambda o: o.history[0]["step"]),
    "test_limit": ({}, {"test_limit": 40}, lambda o: o.results["test_count"]),
    "checkpoint_every_steps": ({"keep_checkpoints": 20}, {"checkpoint_every_steps": 3}, _checkpoints),
    "keep_checkpoints": ({"epochs": 3}, {"keep_checkpoints": 1}, _checkpoints),
    "checkpoint_every_minutes": ({"keep_checkpoints": 20}, {"checkpoint_every_minutes": 1e-9}, _checkpoints),
}  # fmt: skip
# fields shown otherwise below
SPECIAL = {"layers", "workdir", "restart", "model_options"}


def test_every_config_field_has_an_effect_check():
    fields = {field.name for field in dataclasses.fields(TrainConfig)}
    assert fields == set(FIELD_EFFECTS) | SPECIAL


@pytest.mark.slow
@pytest.mark.parametrize("field", sorted(FIELD_EFFECTS))
def test_config_field_acts(field, tmp_path, data_dir, capsys, monkeypatch):
    common, change, observable = FIELD_EFFECTS[field]
    base = dataclasses.replace(TINY, workdir=str(tmp_path / "base"), **common)
    changed = dataclasses.replace(base, workdir=str(tmp_path / "changed"), **change)
    a, b = observe(base, capsys, monkeypatch), observe(changed, capsys, monkeypatch)
    assert a.error is None or field in ("data_dir", "max_bad_steps"), a.error
    assert observable(a) != observable(b), f"--{field} {change[field]} changed nothing"


def test_layers_choose_the_models_computation():
    lenet = dataclasses.replace(TINY, model="lenet5", model_options={})
    plain = _model_program(dataclasses.replace(lenet, layers="plain"))
    fast = _model_program(dataclasses.replace(lenet, layers="fast"))
    assert plain != fast


@pytest.mark.slow
def test_workdir_and_restart_act(tmp_path, data_dir, capsys, monkeypatch):
    first = dataclasses.replace(TINY, workdir=str(tmp_path / "run"))
    observe(first, capsys, monkeypatch)
    assert os.path.exists(tmp_path / "run" / "results.json")
    resumed = observe(first, capsys, monkeypatch)
    restarted = observe(dataclasses.replace(first, restart=True), capsys, monkeypatch)
    assert "resuming from" in resumed.stdout and "resuming from" not in restarted.stdout
    with open(tmp_path / "run" / "config.json") as f:
        assert json.load(f)["restart"] is True
    assert cli.config_from_args(argparse.Namespace(workdir="x"), TINY).workdir == "x"
