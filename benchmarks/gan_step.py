"""What the sub-pixel transposed convolution is worth in a GAN's training step: the DCGAN step
(`jaxdl.adversarial.gan_train_step`) with `jaxdl.nn.ConvTranspose` in the sub-pixel form and
in the dilated form (the stride-1 convolution of the input dilated by the stride, as
`lax.conv_transpose` computes it), timed alternately in one process.

    python -m benchmarks.gan_step --rounds 5

The model is `experiments.gan`'s at `--depth 0` (28x28x1, latent 64, widths 64; `--depth`
sets it), batch 128, the default layers, random images. Each round warms both up (2 steps)
and times `--steps` steps of each; prints the median (min-max) ms per step and images a
second of both.
"""

from __future__ import annotations

import argparse


def dilated_conv_transpose(x, kernel, strides, pads, conv):
    """The transposed convolution as a convolution of the zero-dilated input (the baseline)."""
    return conv(
        x, kernel, (1, 1), pads, lhs_dilation=strides, dimension_numbers=("NHWC", "HWIO", "NHWC")
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch_size", type=int, default=128)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--depth", type=int, default=0)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=10)
    args = parser.parse_args()

    import jax
    import optax

    import jaxdl  # noqa: F401  (jaxdl's XLA flags and allocator, before JAX starts)
    import jaxdl.nn.conv as conv
    from benchmarks.alternate import report, time_alternately
    from jaxdl import models
    from jaxdl.adversarial import create_gan_state, gan_train_step

    model = models.create(
        "dcgan",
        num_classes=1,
        image_size=28,
        latent=64,
        width=args.width,
        discriminator_width=64,
        depth=args.depth,
    )
    tx = optax.adam(2e-3, b1=0.5)
    state = create_gan_state(model, tx, tx, jax.random.PRNGKey(0), (28, 28, 1), 0.999)
    images = jax.random.uniform(jax.random.PRNGKey(1), (args.batch_size, 28, 28, 1)) * 2 - 1
    batch = {"image": images}
    subpixel = conv.subpixel_conv_transpose
    steps = {}
    for name, form in (("sub-pixel", subpixel), ("dilated input", dilated_conv_transpose)):
        conv.subpixel_conv_transpose = form  # read by ConvTranspose while the step is traced
        try:
            # a fresh function per form: jax.jit caches traces per function, not per form
            step = jax.jit(lambda state, batch: gan_train_step(state, batch))  # noqa: B023
            steps[name] = (step.lower(state, batch).compile(), state)
        finally:
            conv.subpixel_conv_transpose = subpixel
    times = time_alternately(
        {
            name: (lambda carry, compiled=compiled: compiled(carry[0], batch), (start, None))
            for name, (compiled, start) in steps.items()
        },
        args.rounds,
        args.steps,
    )
    print(f"DCGAN train step (28x28, generator width {args.width}), batch {args.batch_size}; "
          f"{args.rounds} rounds x {args.steps} steps")  # fmt: skip
    report(times, args.batch_size, "img")


if __name__ == "__main__":
    main()
