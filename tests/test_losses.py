import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdl import losses


class LossTest(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    def test_mean_squared_error_by_hand(self):
        mse = self.variant(losses.mean_squared_error)
        value = mse(jnp.array([1.0, 2.0, 4.0]), jnp.array([0.0, 2.0, 1.0]))
        np.testing.assert_allclose(value, (1 + 0 + 9) / 3, rtol=1e-6)

    @chex.variants(with_jit=True, without_jit=True)
    def test_binary_cross_entropy_by_hand(self):
        bce = self.variant(losses.binary_cross_entropy_with_logits)
        logits = jnp.array([0.0, 2.0, -1.0])
        labels = jnp.array([1, 0, 0])
        expected = np.mean([np.log(2), np.log1p(np.exp(2.0)), np.log1p(np.exp(-1.0))])
        np.testing.assert_allclose(bce(logits, labels), expected, rtol=1e-6)

    @chex.variants(with_jit=True, without_jit=True)
    def test_softmax_cross_entropy_by_hand(self):
        ce = self.variant(losses.softmax_cross_entropy)
        logits = jnp.array([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])
        labels = jnp.array([2, 0])
        log_z = np.log(np.exp(1) + np.exp(2) + np.exp(3))
        np.testing.assert_allclose(ce(logits, labels), [log_z - 3, np.log(3)], rtol=1e-6)

    def test_label_smoothing_by_hand(self):
        logits = jnp.array([[1.0, 2.0, 3.0]])
        log_p = jax.nn.log_softmax(logits)[0]
        s = 0.3
        target = np.array([s / 3, s / 3, 1 - s + s / 3])
        expected = -np.sum(target * np.asarray(log_p))
        np.testing.assert_allclose(
            losses.softmax_cross_entropy(logits, jnp.array([2]), s)[0], expected, rtol=1e-6
        )

    def test_l2_penalty_counts_kernels_only(self):
        params = {
            "dense": {"kernel": jnp.full((2, 3), 2.0), "bias": jnp.ones(3)},
            "bn": {"scale": jnp.ones(3), "bias": jnp.ones(3)},
        }
        np.testing.assert_allclose(losses.l2_penalty(params), 0.5 * 6 * 4.0)


@pytest.mark.parametrize("big", [1e4, -1e4])
def test_losses_finite_at_extreme_logits(big):
    logits = jnp.array([[big, -big, 0.0], [-big, big, big]])
    labels = jnp.array([1, 0])
    assert np.all(np.isfinite(losses.softmax_cross_entropy(logits, labels)))
    assert np.all(np.isfinite(losses.softmax_cross_entropy(logits, labels, 0.1)))
    assert np.isfinite(losses.binary_cross_entropy_with_logits(logits[:, 0], labels))
    grads = jax.grad(lambda z: losses.softmax_cross_entropy(z, labels).sum())(logits)
    assert np.all(np.isfinite(grads))
    # the wrong class at +1e4 costs about 2e4 nats, exactly as the maths says
    np.testing.assert_allclose(
        losses.softmax_cross_entropy(jnp.array([[big, -big]]), jnp.array([1]))[0],
        2 * abs(big) if big > 0 else 0.0,
        atol=1e-3,
    )
