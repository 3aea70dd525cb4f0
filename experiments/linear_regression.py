"""Linear regression by gradient descent on real data: `python -m experiments.linear_regression`.

scikit-learn's bundled diabetes data (442 patients, 10 features in their natural units, a
disease-progression score), split 80 / 20 with a seed. The model is jaxdl's
`linear_regression` (one affine layer) trained by full-batch gradient descent on the mean
squared error, three ways:

1. on standardised features (training mean / std), checked against the closed-form
   least-squares solution: the largest coefficient difference is printed (≤ 1e-3 passes);
2. on the raw features, where the feature scales differ by orders of magnitude: the largest
   stable learning rate is set by the largest-scale direction, so the small ones barely move;
3. a learning-rate sweep on standardised features: too small (slow), good, too large
   (diverging), on one plot of loss versus iteration.

Writes `plots/normalization.png`, `plots/lr_sweep.png` and `results.json` to the run directory.
"""

from __future__ import annotations

import argparse
import os
import time

import jax
import numpy as np
import optax

from jaxdl import cli, models
from jaxdl.course.fullbatch import gradient_descent, least_squares
from jaxdl.data.tabular import load_table, standardize, train_test_split
from jaxdl.losses import mean_squared_error
from jaxdl.plots.basics import plot_loss_versus_iteration
from jaxdl.rundir import RunDir


def mse_loss(model):
    """loss(params, (features, targets)) for a one-output model."""

    def loss(params, data):
        features, targets = data
        return mean_squared_error(model.apply({"params": params}, features)[:, 0], targets)

    return loss


def r_squared(predictions: np.ndarray, targets: np.ndarray) -> float:
    return float(1 - np.sum((predictions - targets) ** 2) / np.sum((targets - targets.mean()) ** 2))


def largest_stable_lr(features: np.ndarray) -> float:
    """Gradient descent on the MSE diverges above 2 / (largest Hessian eigenvalue); with the
    bias as a column of ones the Hessian is 2/N [X 1]^T [X 1]."""
    design = np.concatenate([features, np.ones((len(features), 1))], axis=1).astype(np.float64)
    return float(2 / np.linalg.eigvalsh(2 * design.T @ design / len(design)).max())


def parser() -> argparse.ArgumentParser:
    result = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=cli.HelpFormatter
    )
    result.add_argument("--steps", type=int, default=20000, help="gradient-descent iterations")
    result.add_argument(
        "--lr", type=float, default=0.2, help="learning rate, standardised features"
    )
    result.add_argument(
        "--sweep",
        default="0.005,0.2,0.3",
        help="learning rates for the sweep on standardised features (comma-separated)",
    )
    result.add_argument("--seed", type=int, default=0, help="train / test split seed")
    result.add_argument("--workdir", default="runs/linear_regression", help="run directory")
    return result


def main(argv: list[str] | None = None) -> dict:
    args = parser().parse_args(argv)
    start = time.perf_counter()

    train, test = train_test_split(load_table("diabetes"), 0.2, args.seed)
    x_train, x_test = standardize(train.features, test.features)
    y_train, y_test = train.targets, test.targets
    model = models.create("linear_regression", num_classes=1)
    loss = mse_loss(model)
    init = model.init(jax.random.PRNGKey(args.seed), x_train[:1])["params"]

    def descend(features, lr, steps=args.steps):
        return gradient_descent(loss, init, (features, y_train), optax.sgd(lr), steps)

    # 1. standardised features against the closed form
    params, normalized_losses = descend(x_train, args.lr)
    weights, bias = least_squares(x_train, y_train)
    learned_w = np.asarray(params["Dense_0"]["kernel"][:, 0], np.float64)
    learned_b = float(params["Dense_0"]["bias"][0])
    difference = max(np.abs(learned_w - weights).max(), abs(learned_b - bias))
    test_pred = np.asarray(model.apply({"params": params}, x_test)[:, 0])
    closed_test_mse = float(np.mean((x_test @ weights + bias - y_test) ** 2))
    print(f"diabetes: {len(train)} train / {len(test)} test rows, {x_train.shape[1]} features")
    print(f"{'feature':>8} {'gradient descent':>17} {'closed form':>12}")
    for name, w, w_star in zip(train.feature_names, learned_w, weights, strict=True):
        print(f"{name:>8} {w:17.4f} {w_star:12.4f}")
    print(f"{'bias':>8} {learned_b:17.4f} {bias:12.4f}")
    print(f"largest coefficient difference, gradient descent vs closed form: {difference:.2e}")
    test_mse = float(np.mean((test_pred - y_test) ** 2))
    print(
        f"test MSE {test_mse:.1f} (closed form {closed_test_mse:.1f}), "
        f"R^2 {r_squared(test_pred, y_test):.3f}"
    )

    # 2. raw features: the largest stable learning rate, set by the largest-scale direction
    raw_lr = 0.9 * largest_stable_lr(train.features)
    _, raw_losses = descend(train.features, raw_lr)
    print(
        f"raw features: largest stable lr {raw_lr / 0.9:.2e} (used {raw_lr:.2e}); after "
        f"{args.steps} steps training MSE {float(raw_losses[-1]):.1f} vs "
        f"{float(normalized_losses[-1]):.1f} standardised"
    )

    # 3. learning-rate sweep on standardised features
    rates = [float(r) for r in args.sweep.split(",")]
    stable = largest_stable_lr(x_train)
    finals = {}
    for lr in rates:
        _, losses = descend(x_train, lr, min(args.steps, 300))
        finals[lr] = np.asarray(losses)
    best = min(float(c[-1]) for c in finals.values() if np.isfinite(c[-1]))
    sweep = {}
    for lr, losses in finals.items():
        if not np.isfinite(losses[-1]) or losses[-1] > losses[0]:
            verdict = "diverges"
        else:
            verdict = "slow" if losses[-1] > 1.01 * best else "good"
        sweep[f"lr {lr:g} ({verdict})"] = losses
        print(
            f"lr {lr:g}: training MSE after {len(losses) - 1} steps {float(losses[-1]):.4g} "
            f"({verdict}; gradient descent is stable below lr {stable:.3f})"
        )

    plots = RunDir(args.workdir).plots
    plot_loss_versus_iteration(
        {
            f"standardised features, lr {args.lr:g}": np.asarray(normalized_losses),
            f"raw features, lr {raw_lr:.1e} (largest stable)": np.asarray(raw_losses),
        },
        os.path.join(plots, "normalization.png"),
        "Diabetes: gradient descent with and without feature standardisation",
        "training MSE",
        log_x=True,
    )
    plot_loss_versus_iteration(
        sweep,
        os.path.join(plots, "lr_sweep.png"),
        "Diabetes, standardised features: learning-rate sweep",
        "training MSE",
    )
    results = {
        "max_coefficient_difference": float(difference),
        "test_mse": test_mse,
        "closed_form_test_mse": closed_test_mse,
        "test_r2": r_squared(test_pred, y_test),
        "raw_features_final_train_mse": float(raw_losses[-1]),
        "standardized_final_train_mse": float(normalized_losses[-1]),
        "sweep_final_train_mse": {k: float(v[-1]) for k, v in sweep.items()},
        "wall_seconds": time.perf_counter() - start,
    }
    RunDir(args.workdir).write_results(results)
    print(f"wall time {results['wall_seconds']:.1f} s; plots in {os.path.abspath(plots)}")
    return results


if __name__ == "__main__":
    cli.run(main)
