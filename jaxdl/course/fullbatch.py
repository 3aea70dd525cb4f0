"""Full-batch gradient descent for problems small enough to see all data at every step (the
regression topics), and the closed-form least-squares solution to check it against.

The whole run is one `lax.scan` under `jax.jit`: no Python per iteration, and the loss of every
iteration comes back for the loss-versus-iteration plots.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax


@functools.partial(jax.jit, static_argnames=("loss_fn", "optimizer", "steps"))
def gradient_descent(
    loss_fn: Callable[[Any, Any], jax.Array],
    params: Any,
    data: Any,
    optimizer: optax.GradientTransformation,
    steps: int,
) -> tuple[Any, jax.Array]:
    """`steps` updates of `params` by `optimizer` on `loss_fn(params, data)`; returns the final
    parameters and f32[steps + 1]: the loss before each update and after the last. A diverging
    run keeps going (its losses become inf / nan): that is what the learning-rate sweep shows."""
    value_and_grad = jax.value_and_grad(loss_fn)

    def update(carry, _):
        params, opt_state = carry
        loss, grads = value_and_grad(params, data)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), loss

    (params, _), losses = jax.lax.scan(update, (params, optimizer.init(params)), length=steps)
    return params, jnp.append(losses, loss_fn(params, data))


def least_squares(features: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, float]:
    """The weights w f64[D] and bias b minimising mean((features @ w + b - targets)^2), solved
    in float64 with the bias as a column of ones (np.linalg.lstsq: SVD, fine when singular)."""
    design = np.concatenate([np.asarray(features, np.float64), np.ones((len(features), 1))], axis=1)
    solution, *_ = np.linalg.lstsq(design, np.asarray(targets, np.float64), rcond=None)
    return solution[:-1], float(solution[-1])


def polynomial_features(x: jax.Array, degree: int) -> jax.Array:
    """f32[N, 2] -> f32[N, K]: every monomial x1^i x2^j with 1 <= i + j <= `degree` (degree 2:
    x1, x2, x1^2, x1 x2, x2^2), so a linear model in them draws conics in the plane."""
    if x.shape[-1] != 2:
        raise ValueError(f"polynomial_features takes 2 input features, got {x.shape[-1]}.")
    columns = [
        x[:, 0] ** (total - j) * x[:, 1] ** j
        for total in range(1, degree + 1)
        for j in range(total + 1)
    ]
    return jnp.stack(columns, axis=1)
