"""Backpropagation by hand: the classic layer interface of the course, every gradient written
out with `jax.numpy`, no automatic differentiation anywhere.

    y = layer.forward(x)            # keeps what backward needs
    grad_x = layer.backward(grad_y) # returns dLoss/dx, stores dLoss/dparameter in layer.grads
    layer.update(lr)                # parameter -= lr * gradient

A loss layer's `forward(prediction, target)` returns the mean loss over the batch and its
`backward()` starts the chain with dLoss/dprediction. This is the one stateful corner of
jaxdl on purpose: it is how the course draws a computational graph, node by node (each layer
a gate with a local gradient, chained backwards); the rest of the framework gets the same
gradients from `jax.grad` of pure functions, and the tests hold every gradient here to it.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp


class Layer:
    """A node of the graph: `params` and their `grads` by name (empty for an activation)."""

    def __init__(self):
        self.params: dict[str, jax.Array] = {}
        self.grads: dict[str, jax.Array] = {}

    def forward(self, x: jax.Array) -> jax.Array:
        raise NotImplementedError

    def backward(self, grad_out: jax.Array) -> jax.Array:
        raise NotImplementedError

    def update(self, lr: float) -> None:
        """One plain gradient-descent step on this layer's parameters."""
        for name, grad in self.grads.items():
            self.params[name] = self.params[name] - lr * grad


class Linear(Layer):
    """y = x W + b: f[B, fan_in] -> f[B, fan_out]; W He-normal (ReLU nets), b zero."""

    def __init__(self, fan_in: int, fan_out: int, key: jax.Array, dtype=jnp.float32):
        super().__init__()
        scale = math.sqrt(2.0 / fan_in)
        self.params = {
            "w": scale * jax.random.normal(key, (fan_in, fan_out), dtype),
            "b": jnp.zeros((fan_out,), dtype),
        }

    def forward(self, x):
        self.x = x
        return x @ self.params["w"] + self.params["b"]

    def backward(self, grad_out):
        # y_bj = sum_i x_bi w_ij + b_j: dL/dw_ij = sum_b x_bi g_bj, dL/db_j = sum_b g_bj,
        # dL/dx_bi = sum_j g_bj w_ij
        self.grads = {"w": self.x.T @ grad_out, "b": grad_out.sum(0)}
        return grad_out @ self.params["w"].T


class ReLU(Layer):
    """max(0, x): the gradient passes where x > 0 and stops elsewhere."""

    def forward(self, x):
        self.positive = x > 0
        return jnp.where(self.positive, x, 0)

    def backward(self, grad_out):
        return jnp.where(self.positive, grad_out, 0)


class Sigmoid(Layer):
    """s = 1 / (1 + e^-x); ds/dx = s (1 - s), from the output alone."""

    def forward(self, x):
        self.out = 1 / (1 + jnp.exp(-x))
        return self.out

    def backward(self, grad_out):
        return grad_out * self.out * (1 - self.out)


class Tanh(Layer):
    """t = tanh x; dt/dx = 1 - t^2."""

    def forward(self, x):
        self.out = jnp.tanh(x)
        return self.out

    def backward(self, grad_out):
        return grad_out * (1 - self.out**2)


class SoftmaxCrossEntropy:
    """Mean over the batch of -log softmax(logits)[label], logits f[B, K], labels i[B]. Its
    gradient with respect to the logits is (softmax - one_hot(label)) / B."""

    def forward(self, logits, labels):
        shifted = logits - logits.max(-1, keepdims=True)  # e^x overflows; the shift cancels
        log_probs = shifted - jnp.log(jnp.exp(shifted).sum(-1, keepdims=True))
        self.probs = jnp.exp(log_probs)
        self.one_hot = jax.nn.one_hot(labels, logits.shape[-1], dtype=logits.dtype)
        return -(log_probs * self.one_hot).sum(-1).mean()

    def backward(self):
        return (self.probs - self.one_hot) / self.probs.shape[0]


class MeanSquaredError:
    """Mean over every entry of (prediction - target)^2; gradient 2 (prediction - target) / N."""

    def forward(self, prediction, target):
        self.difference = prediction - target
        return (self.difference**2).mean()

    def backward(self):
        return 2 * self.difference / self.difference.size


class Sequential(Layer):
    """Layers applied in order; backward runs them in reverse, each passing its input gradient
    to the layer before it."""

    def __init__(self, layers: list[Layer]):
        super().__init__()
        self.layers = layers

    def forward(self, x):
        for layer in self.layers:
            x = layer.forward(x)
        return x

    def backward(self, grad_out):
        for layer in reversed(self.layers):
            grad_out = layer.backward(grad_out)
        return grad_out

    def update(self, lr):
        for layer in self.layers:
            layer.update(lr)


def mlp(sizes: list[int], key: jax.Array, activation=ReLU, dtype=jnp.float32) -> Sequential:
    """Linear layers of `sizes` (input first, classes last) with `activation` between them."""
    layers: list[Layer] = []
    keys = jax.random.split(key, len(sizes) - 1)
    for index, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        layers.append(Linear(fan_in, fan_out, keys[index], dtype))
        if index < len(sizes) - 2:
            layers.append(activation())
    return Sequential(layers)
