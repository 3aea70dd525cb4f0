"""A few training steps of a tiny conv net with BatchNorm, for tests/test_multiprocess.py.

    python -m tests.multiprocess_worker OUT.npz [--parallel single|sharded] [--steps 3]
    python -m jaxdl.distributed.launch --processes 2 --cpu_devices 2 -- \
        python -m tests.multiprocess_worker OUT.npz

Every process builds the same initial state and the same global batches (seeded NumPy), so a
run as one process and a run as several must end with the same parameters; process 0 writes
them, with BatchNorm statistics and the per-step losses, to OUT.npz.
"""

from __future__ import annotations

import argparse

from jaxdl.distributed.setup import initialize_from_env, is_main_process


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("--parallel", default="sharded")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--batch_size", type=int, default=16)
    args = parser.parse_args()
    initialize_from_env(timeout_seconds=30)

    import flax.linen as nn
    import jax
    import numpy as np
    import optax
    from flax import traverse_util

    from jaxdl import parallel
    from jaxdl.nn import ConvBN
    from jaxdl.state import create_train_state

    class TinyNet(nn.Module):
        @nn.compact
        def __call__(self, x, train: bool = False):
            x = ConvBN(8, strides=2)(x, train)
            x = ConvBN(16, strides=2)(x, train)
            return nn.Dense(10)(x.mean(axis=(1, 2)))

    runner = parallel.create_runner(args.parallel, l2_weight=5e-4)
    tx = optax.sgd(0.1, momentum=0.9, nesterov=True)
    state = runner.put_state(
        create_train_state(TinyNet(), tx, jax.random.PRNGKey(0), (1, 16, 16, 3))
    )
    rng = np.random.default_rng(0)
    losses = []
    for _ in range(args.steps):
        batch = {
            "image": rng.normal(size=(args.batch_size, 16, 16, 3)).astype(np.float32),
            "label": rng.integers(0, 10, size=args.batch_size).astype(np.int32),
        }
        state, metrics = runner.train(state, batch)
        losses.append(float(metrics["loss"]))
    local = jax.device_get(runner.local_state(state))
    if is_main_process():
        flat = traverse_util.flatten_dict(
            {"params": local.params, "batch_stats": local.batch_stats}, sep="/"
        )
        np.savez(
            args.out,
            losses=np.asarray(losses),
            devices=jax.device_count(),
            processes=jax.process_count(),
            **flat,
        )


if __name__ == "__main__":
    main()
