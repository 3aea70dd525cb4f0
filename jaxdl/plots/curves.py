"""Training curves and the learning-rate schedule."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxdl.plots import plt, save_figure


def plot_curves(histories: dict[str, list[dict[str, Any]]], path: str) -> str:
    """Loss and accuracy per epoch, train (solid) and validation (dashed), for one or several
    runs (the dict maps a run's label to its metrics records); one colour per run."""
    fig, (loss_ax, acc_ax) = plt.subplots(1, 2, figsize=(11, 4), constrained_layout=True)
    colors = plt.get_cmap("tab10").colors
    for index, (label, history) in enumerate(histories.items()):
        color = colors[index % len(colors)]
        epochs = [r["epoch"] for r in history]
        for split, style in (("train", "-"), ("val", "--")):
            if f"{split}_loss" not in history[0]:
                continue
            name = f"{label} {split}" if len(histories) == 1 else label
            show = len(histories) == 1 or split == "train"  # several runs: one entry per run
            for ax, key, scale in ((loss_ax, "loss", 1), (acc_ax, "accuracy", 100)):
                ax.plot(
                    epochs,
                    [scale * r[f"{split}_{key}"] for r in history],
                    style,
                    color=color if len(histories) > 1 else None,
                    label=name if show else None,
                )
    several = len(histories) > 1
    suffix = " (solid: train, dashed: validation)" if several else ""
    loss_ax.set(title=f"Loss{suffix}", xlabel="epoch", ylabel="cross-entropy")
    acc_ax.set(title=f"Accuracy{suffix}", xlabel="epoch", ylabel="accuracy (%)")
    for ax in (loss_ax, acc_ax):
        ax.grid(alpha=0.3)
    if several:
        acc_ax.legend(loc="center left", bbox_to_anchor=(1.02, 0.5), title="run")
    else:
        loss_ax.legend()
        acc_ax.legend()
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
    e.g. "lstm, trained"): how far back in the sequence the loss still reaches."""
    fig, ax = plt.subplots(figsize=(7, 4.5), constrained_layout=True)
    for label, values in norms.items():
        steps = np.arange(1, len(values) + 1)
        style = "--" if "initial" in label else "-"
        ax.semilogy(steps, np.maximum(np.asarray(values), 1e-30), style, label=label)
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
