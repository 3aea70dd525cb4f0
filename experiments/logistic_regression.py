"""Logistic regression: `python -m experiments.logistic_regression`.

A sigmoid on one affine layer (jaxdl's `logistic_regression`), binary cross-entropy, full-batch
gradient descent, three times:

1. scikit-learn's bundled breast-cancer data (569 tumours, malignant / benign), all 30
   standardised features: test accuracy;
2. the same data on two features only (mean radius, mean texture), so the decision boundary
   (P = 0.5, a straight line) can be drawn over the test points;
3. two concentric circles (scikit-learn's `make_circles`, seeded): a straight boundary cannot
   separate them (about chance), the same model on degree-2 polynomial features
   (x1, x2, x1^2, x1 x2, x2^2) draws an ellipse and can.

Writes `plots/breast_cancer_boundary.png`, `plots/circles_boundaries.png` and `results.json`.
"""

from __future__ import annotations

import argparse
import functools
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxdl import cli, models
from jaxdl.course.fullbatch import gradient_descent, polynomial_features
from jaxdl.data.tabular import load_table, standardize, train_test_split
from jaxdl.losses import binary_cross_entropy_with_logits
from jaxdl.plots.basics import plot_decision_boundaries
from jaxdl.rundir import RunDir

TWO_FEATURES = ("mean radius", "mean texture")


def fit_logistic(features, labels, lr, steps, seed=0):
    """Parameters of a logistic regression fitted by gradient descent, and its loss curve."""
    model = models.create("logistic_regression", num_classes=1)

    def loss(params, data):
        x, y = data
        return binary_cross_entropy_with_logits(model.apply({"params": params}, x)[:, 0], y)

    init = model.init(jax.random.PRNGKey(seed), features[:1])["params"]
    data = (jnp.asarray(features), jnp.asarray(labels, jnp.float32))
    params, losses = gradient_descent(loss, init, data, optax.sgd(lr), steps)
    probability = jax.jit(lambda x: jax.nn.sigmoid(model.apply({"params": params}, x)[:, 0]))
    return probability, losses


def accuracy(probability, features, labels) -> float:
    return float(np.mean((np.asarray(probability(features)) > 0.5) == labels))


def parser() -> argparse.ArgumentParser:
    result = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=cli.HelpFormatter
    )
    result.add_argument("--steps", type=int, default=3000, help="gradient-descent iterations")
    result.add_argument("--lr", type=float, default=0.5, help="learning rate")
    result.add_argument("--degree", type=int, default=2, help="polynomial degree for the circles")
    result.add_argument("--seed", type=int, default=0, help="split and circles seed")
    result.add_argument("--workdir", default="runs/logistic_regression", help="run directory")
    return result


def main(argv: list[str] | None = None) -> dict:
    args = parser().parse_args(argv)
    start = time.perf_counter()
    plots = RunDir(args.workdir).plots
    fit = functools.partial(fit_logistic, lr=args.lr, steps=args.steps, seed=args.seed)
    results = {}

    # 1-2. breast cancer: all features, then two
    table = load_table("breast_cancer")
    train, test = train_test_split(table, 0.2, args.seed)
    x_train, x_test = standardize(train.features, test.features)
    probability, losses = fit(x_train, train.targets)
    results["breast_cancer_test_accuracy"] = accuracy(probability, x_test, test.targets)
    columns = [table.feature_names.index(name) for name in TWO_FEATURES]
    two_train, two_test = x_train[:, columns], x_test[:, columns]
    probability_2d, _ = fit(two_train, train.targets)
    results["breast_cancer_two_feature_test_accuracy"] = accuracy(
        probability_2d, two_test, test.targets
    )
    print(
        f"breast cancer ({len(train)} train / {len(test)} test): test accuracy "
        f"{100 * results['breast_cancer_test_accuracy']:.2f} % on all 30 features (final "
        f"training loss {float(losses[-1]):.4f}), "
        f"{100 * results['breast_cancer_two_feature_test_accuracy']:.2f} % on "
        f"{' and '.join(TWO_FEATURES)}"
    )
    plot_decision_boundaries(
        [
            (
                f"Breast cancer test set: logistic regression on 2 features "
                f"({100 * results['breast_cancer_two_feature_test_accuracy']:.1f} % correct)",
                probability_2d,
            )
        ],
        two_test,
        test.targets,
        os.path.join(plots, "breast_cancer_boundary.png"),
        axis_names=tuple(f"{name} (standardised)" for name in TWO_FEATURES),
        class_names=("malignant", "benign"),
    )

    # 3. circles: linear versus polynomial features
    from sklearn.datasets import make_circles

    points, labels = make_circles(800, noise=0.1, factor=0.5, random_state=args.seed)
    points = points.astype(np.float32)
    half = len(points) // 2
    poly = functools.partial(polynomial_features, degree=args.degree)
    linear, _ = fit(points[:half], labels[:half])
    curved, _ = fit(poly(points[:half]), labels[:half])
    curved_probability = lambda x: curved(poly(x))
    results["circles_linear_test_accuracy"] = accuracy(linear, points[half:], labels[half:])
    results["circles_polynomial_test_accuracy"] = accuracy(
        curved_probability, points[half:], labels[half:]
    )
    print(
        f"circles ({half} train / {half} test points): test accuracy "
        f"{100 * results['circles_linear_test_accuracy']:.2f} % with a linear boundary, "
        f"{100 * results['circles_polynomial_test_accuracy']:.2f} % with degree-{args.degree} "
        f"polynomial features"
    )
    plot_decision_boundaries(
        [
            (f"x1, x2: {100 * results['circles_linear_test_accuracy']:.1f} % test", linear),
            (
                f"degree-{args.degree} polynomial features: "
                f"{100 * results['circles_polynomial_test_accuracy']:.1f} % test",
                curved_probability,
            ),
        ],
        points[half:],
        labels[half:],
        os.path.join(plots, "circles_boundaries.png"),
        class_names=("outer circle", "inner circle"),
    )
    results["wall_seconds"] = time.perf_counter() - start
    RunDir(args.workdir).write_results(results)
    print(f"wall time {results['wall_seconds']:.1f} s; plots in {os.path.abspath(plots)}")
    return results


if __name__ == "__main__":
    cli.run(main)
