"""XLA flags jaxdl sets by default, each because it was measured to help here.

They are added to `XLA_FLAGS` when `jaxdl` is imported, before JAX starts its backend, and only
where the user's own `XLA_FLAGS` does not already mention the flag, so a user's setting always
wins. Set `JAXDL_NO_XLA_FLAGS=1` to add none.

* `--xla_cpu_experimental_ynn_fusion_type=` (empty: YNNPACK fusion off). jaxlib 0.10 hands
  convolutions with >= 32 channels to YNNPACK on CPU, whose weight-gradient convolutions are
  slow here: ResNet-20's train step at batch 128 ran at 326 img/s without it against 268 with
  it (median of 5 x 5 steps, one 2-core AVX-512 machine; BENCHMARKS.md). It only affects the
  CPU backend.
"""

from __future__ import annotations

import os

DEFAULT_FLAGS = {"--xla_cpu_experimental_ynn_fusion_type": ""}


def apply_default_flags() -> None:
    """Adds `DEFAULT_FLAGS` to `XLA_FLAGS` (see the module docstring); idempotent."""
    if os.environ.get("JAXDL_NO_XLA_FLAGS"):
        return
    current = os.environ.get("XLA_FLAGS", "")
    extra = [f"{flag}={value}" for flag, value in DEFAULT_FLAGS.items() if flag not in current]
    if extra:
        os.environ["XLA_FLAGS"] = " ".join([current, *extra]).strip()
