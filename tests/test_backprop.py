"""Backpropagation by hand (`jaxdl.course.backprop`): every hand-written gradient equals
`jax.grad` in float64, the course's logistic neuron, an MNIST MLP trained with it."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdl.course import backprop as bp

TOLERANCE = 1e-10


def close(got, want):
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=TOLERANCE, atol=TOLERANCE)


@pytest.mark.parametrize("layer, fn", [
    (bp.ReLU, jax.nn.relu), (bp.Sigmoid, jax.nn.sigmoid), (bp.Tanh, jnp.tanh),
])  # fmt: skip
def test_activation_gradients_equal_autodiff(layer, fn):
    with jax.enable_x64(True):
        x = jax.random.normal(jax.random.PRNGKey(0), (7, 5), jnp.float64)
        weights = jax.random.normal(jax.random.PRNGKey(1), (7, 5), jnp.float64)
        node = layer()
        close(node.forward(x), fn(x))
        close(node.backward(weights), jax.grad(lambda x: jnp.sum(weights * fn(x)))(x))


def test_linear_gradients_equal_autodiff():
    with jax.enable_x64(True):
        x = jax.random.normal(jax.random.PRNGKey(0), (6, 4), jnp.float64)
        upstream = jax.random.normal(jax.random.PRNGKey(1), (6, 3), jnp.float64)
        node = bp.Linear(4, 3, jax.random.PRNGKey(2), jnp.float64)
        node.params["b"] = jnp.arange(3.0)
        loss = lambda p, x: jnp.sum(upstream * (x @ p["w"] + p["b"]))
        close(node.forward(x), x @ node.params["w"] + node.params["b"])
        grad_x = node.backward(upstream)
        want_params, want_x = jax.grad(loss, (0, 1))(node.params, x)
        close(grad_x, want_x)
        close(node.grads["w"], want_params["w"])
        close(node.grads["b"], want_params["b"])


def test_loss_gradients_equal_autodiff():
    with jax.enable_x64(True):
        logits = 10 * jax.random.normal(jax.random.PRNGKey(0), (8, 5), jnp.float64)
        labels = jnp.arange(8) % 5
        ce = bp.SoftmaxCrossEntropy()
        reference = lambda z: jnp.mean(-jax.nn.log_softmax(z)[jnp.arange(8), labels])
        close(ce.forward(logits, labels), reference(logits))
        close(ce.backward(), jax.grad(reference)(logits))
        target = jax.random.normal(jax.random.PRNGKey(1), (8, 5), jnp.float64)
        mse = bp.MeanSquaredError()
        reference = lambda p: jnp.mean((p - target) ** 2)
        close(mse.forward(logits, target), reference(logits))
        close(mse.backward(), jax.grad(reference)(logits))


def test_a_whole_network_backpropagates_what_autodiff_computes():
    with jax.enable_x64(True):
        net = bp.Sequential([
            bp.Linear(6, 8, jax.random.PRNGKey(0), jnp.float64), bp.Tanh(),
            bp.Linear(8, 8, jax.random.PRNGKey(1), jnp.float64), bp.Sigmoid(),
            bp.Linear(8, 8, jax.random.PRNGKey(2), jnp.float64), bp.ReLU(),
            bp.Linear(8, 4, jax.random.PRNGKey(3), jnp.float64),
        ])  # fmt: skip
        x = jax.random.normal(jax.random.PRNGKey(4), (5, 6), jnp.float64)
        labels = jnp.array([0, 1, 2, 3, 1])
        linears = [layer for layer in net.layers if isinstance(layer, bp.Linear)]
        params = [dict(layer.params) for layer in linears]

        def reference(params, x):
            acts = [jnp.tanh, jax.nn.sigmoid, jax.nn.relu, lambda y: y]
            for p, act in zip(params, acts, strict=True):
                x = act(x @ p["w"] + p["b"])
            return jnp.mean(-jax.nn.log_softmax(x)[jnp.arange(5), labels])

        loss = bp.SoftmaxCrossEntropy()
        close(loss.forward(net.forward(x), labels), reference(params, x))
        grad_x = net.backward(loss.backward())
        want_params, want_x = jax.grad(reference, (0, 1))(params, x)
        close(grad_x, want_x)
        for layer, want in zip(linears, want_params, strict=True):
            close(layer.grads["w"], want["w"])
            close(layer.grads["b"], want["b"])
        net.update(0.5)
        close(linears[0].params["w"], params[0]["w"] - 0.5 * want_params[0]["w"])


def test_the_courses_logistic_neuron():
    """y = sigmoid(w0 x0 + w1 x1 + b) at w = (2, -3), b = -3, x = (-1, -2)."""
    with jax.enable_x64(True):
        neuron = bp.Linear(2, 1, jax.random.PRNGKey(0), jnp.float64)
        neuron.params = {"w": jnp.array([[2.0], [-3.0]]), "b": jnp.array([-3.0])}
        gate = bp.Sigmoid()
        y = gate.forward(neuron.forward(jnp.array([[-1.0, -2.0]])))
        dy_dx = neuron.backward(gate.backward(jnp.ones((1, 1))))
        assert round(float(y[0, 0]), 3) == 0.731
        np.testing.assert_array_equal(np.round(neuron.grads["w"][:, 0], 3), [-0.197, -0.393])
        np.testing.assert_array_equal(np.round(dy_dx[0], 3), [0.393, -0.590])


@pytest.mark.slow
def test_an_mnist_mlp_trained_by_hand_reaches_97_5_percent(data_dir, tmp_path):
    from experiments import backprop

    results = backprop.main(["--data_dir", data_dir, "--workdir", str(tmp_path)])
    assert results["test_accuracy"] >= 0.975
