"""Training curves and the learning-rate schedule."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxdl.plots import plt, save_figure

PERCENT = ("accuracy", "map50")  # fractions drawn as percentages


def plot_curves(histories: dict[str, list[dict[str, Any]]], path: str) -> str:
    """One panel per metric the records hold (loss first, then accuracy or the objective's own
    figures, such as a VAE's KL term), train (solid) and validation (dashed), for one or
    several runs (the dict maps a run's label to its metrics records); one colour per run."""
    first = next(iter(histories.values()))[0]
    names = [key[len("train_") :] for key in first if key.startswith("train_")]
    # figures measured on validation only (a detector's mAP) get a panel of their own
    names += [key[len("val_") :] for key in first if key.startswith("val_")]
    names = list(dict.fromkeys(names))
    names = sorted(names, key=lambda name: (name != "loss", name != "accuracy"))
    fig, axes = plt.subplots(
        1, len(names), figsize=(5.5 * len(names), 4), constrained_layout=True, squeeze=False
    )
    axes = dict(zip(names, axes[0], strict=True))
    colors = plt.get_cmap("tab10").colors
    several = len(histories) > 1
    for index, (label, history) in enumerate(histories.items()):
        color = colors[index % len(colors)]
        epochs = [r["epoch"] for r in history]
        for split, style in (("train", "-"), ("val", "--")):
            name = f"{label} {split}" if not several else label
            show = not several or split == "train"  # several runs: one entry per run
            for key, ax in axes.items():
                if f"{split}_{key}" not in history[0]:
                    continue
                scale = 100 if key in PERCENT else 1
                ax.plot(
                    epochs,
                    [scale * r[f"{split}_{key}"] for r in history],
                    style,
                    color=color if several else None,
                    label=name if show else None,
                )
    suffix = " (solid: train, dashed: validation)" if several else ""
    for key, ax in axes.items():
        title = {"loss": "Loss", "accuracy": "Accuracy", "map50": "mAP@0.5"}.get(
            key, key.replace("_", " ").capitalize()
        )
        ylabel = f"{key} (%)" if key in PERCENT else key.replace("_", " ")
        ax.set(title=f"{title}{suffix}", xlabel="epoch", ylabel=ylabel)
        ax.grid(alpha=0.3)
    last = axes[names[-1]]
    if several:
        last.legend(loc="center left", bbox_to_anchor=(1.02, 0.5), title="run")
    else:
        for ax in axes.values():
            ax.legend()
    return save_figure(fig, path)


def plot_learning_rate(
    learning_rate_fn: Callable[[int], float], total_steps: int, path: str
) -> str:
    """The learning rate at every step of training."""
    steps = np.arange(total_steps)
    rates = np.asarray(jax.vmap(learning_rate_fn)(jnp.asarray(steps)))
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(steps, rates)
    ax.set(title="Learning rate schedule", xlabel="step", ylabel="learning rate")
    ax.grid(alpha=0.3)
    return save_figure(fig, path)


def plot_input_gradients(norms: dict[str, Sequence[float]], path: str) -> str:
    """The input-gradient norm per step t = 1..T on a log scale, one line per entry (its label,
    e.g. "lstm, trained"; one colour per model, the part before the comma; dashed at
    initialisation): how far back in the sequence the loss still reaches. Norms that underflow
    to 0 are drawn at the plot's floor, 1e-30."""
    fig, ax = plt.subplots(figsize=(7, 4.5), constrained_layout=True)
    colors = plt.get_cmap("tab10").colors
    models: list[str] = []
    for label, values in norms.items():
        model = label.split(",")[0]
        models += [model] if model not in models else []
        steps = np.arange(1, len(values) + 1)
        style = "--" if "initial" in label else "-"
        color = colors[models.index(model) % len(colors)]
        floor = np.maximum(np.asarray(values), 1e-30)
        ax.semilogy(steps, floor, style, color=color, label=label)
    ax.set(
        title="Loss gradient with respect to the input at step t",
        xlabel="input step t (the loss is computed after the last step)",
        ylabel="‖∂L/∂x_t‖ (log scale)",
    )
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    return save_figure(fig, path)


def plot_bits_per_char(
    history: list[dict[str, Any]], baselines: dict[str, float], path: str
) -> str:
    """A language model's bits per character per epoch, train (from the loss in nats) and
    validation, with horizontal lines for `baselines` (label -> bits per character)."""
    fig, ax = plt.subplots(figsize=(7, 4.5), constrained_layout=True)
    epochs = [r["epoch"] for r in history]
    ax.plot(epochs, [r["train_loss"] / np.log(2) for r in history], "o-", label="train")
    if history and "val_bits_per_char" in history[0]:
        ax.plot(epochs, [r["val_bits_per_char"] for r in history], "o--", label="validation")
    for index, (label, value) in enumerate(baselines.items()):
        ax.axhline(value, color=f"C{index + 2}", linestyle=":", label=label)
    ax.set(title="Bits per character", xlabel="epoch", ylabel="bits per character")
    ax.grid(alpha=0.3)
    ax.legend()
    return save_figure(fig, path)
