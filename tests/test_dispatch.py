"""`jaxdl.dispatch.BoundedDispatch`: the host waits for the step `depth` calls back, and no
further, so a multi-device CPU run never queues enough work to deadlock XLA:CPU's pool."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import pytest

from jaxdl.dispatch import BoundedDispatch


@jax.jit
def slow(x):
    """~0.1 s of matrix products on this machine's CPU: far longer than a dispatch."""
    return jax.lax.fori_loop(0, 30, lambda _, y: jnp.tanh(y @ y) * 0.5, x)


def test_waits_for_the_step_depth_calls_back():
    x = jnp.eye(600) * 0.1
    jax.block_until_ready(slow(x))  # compiled
    unbounded = [slow(x + i) for i in range(3)]
    assert not unbounded[0].is_ready()  # dispatch alone runs ahead: the control
    jax.block_until_ready(unbounded)
    bound = BoundedDispatch(depth=2)
    outputs = [bound(slow(x + i)) for i in range(4)]
    assert outputs[0].is_ready() and outputs[1].is_ready()  # 4 calls, depth 2
    assert not outputs[3].is_ready()  # the newest is still running: no full synchronisation
    jax.block_until_ready(outputs)


def test_depth_must_be_positive():
    with pytest.raises(ValueError, match="dispatch depth must be at least 1, got 0"):
        BoundedDispatch(0)
