"""Keeps freed host memory in the process, so XLA:CPU does not fault in its buffers every step.

XLA:CPU allocates each execution's temporary buffer with `malloc` on one of its worker threads
and frees it when the execution ends: ResNet-20's train step at batch 128 asks for 201 MB.
glibc serves a request that large from a fresh `mmap` (a worker thread's arena cannot hold
more than 64 MB) and returns it with `munmap`, so every step touches 49,000 new pages, each
a page fault and a zeroing by the kernel: 49k faults and ~60 ms of a ~215 ms step, measured
here (`benchmarks.host_memory`; BENCHMARKS.md). PyTorch's CPU allocator hands out one
tensor at a time, small enough for glibc to recycle; XLA's one big block is not.

`keep_freed_memory()` tells glibc (`mallopt`) to use one arena for every thread, never to
`mmap` an allocation, and never to give freed heap memory back to the kernel: the next step's
temporary buffer then reuses the pages of the last one, and the faults are gone (0 a step once
the heap has settled). The price is memory: a step's block is freed after the next step has
started, so the heap holds a few such blocks in turn (ResNet-20: 386 MB of heap for 201 MB of
temporaries; a 128 MB program settles at 4-6 blocks within 25 runs; airbench94 at batch 1024,
2.07 GB of temporaries, at 8.6 GB after 5 steps) and keeps its peak size until the process
exits, as a caching allocator does.

Why never, not "only past some size": glibc trims when the free space at the top of the heap
passes the threshold, and `mallopt` takes at most 2 GiB. airbench94's 2.07 GB block, freed at
the top, passed it every few steps; the heap shrank and grew again, and each regrowth faulted
in 506,000 pages (5-7 s of kernel time on a 4.3 s step): over 40 steps 1 in 4 steps took 7-8
s. With trimming off the heap settles and every step takes 4.2-4.3 s.

`jaxdl` calls it when imported, before JAX starts its worker threads (a thread keeps the
arena it first allocated from). It does nothing off glibc (macOS, musl) and when
`JAXDL_KEEP_HOST_MEMORY=0`; `JAXDL_HEAP_TRIM_BYTES=N` gives memory back past N bytes free.
"""

from __future__ import annotations

import ctypes
import os
import platform

# glibc's <malloc.h>
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
M_ARENA_MAX = -8

# glibc's documented value for "never give freed heap memory back" (see the module docstring).
NEVER = -1


def trim_threshold() -> int:
    """`JAXDL_HEAP_TRIM_BYTES` when set (the heap gives memory back once that much is free at
    its top; mallopt takes at most 2**31 - 1), else `NEVER`."""
    value = os.environ.get("JAXDL_HEAP_TRIM_BYTES")
    if value is None:
        return NEVER
    if not value.isdigit():
        raise ValueError(
            f"JAXDL_HEAP_TRIM_BYTES is {value!r}; give a number of bytes, e.g. 2147483647."
        )
    return min(int(value), 2**31 - 1)


_state = {"line": "not set yet (import jaxdl first)"}


def keep_freed_memory() -> bool:
    """Sets glibc's allocator to recycle freed memory in-process (see the module docstring).
    Returns whether it did; idempotent."""
    if os.environ.get("JAXDL_KEEP_HOST_MEMORY", "1") == "0":
        _state["line"] = "glibc's defaults (JAXDL_KEEP_HOST_MEMORY=0)"
        return False
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        _state["line"] = f"the system allocator's defaults (not glibc: {platform.system()})"
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
        trim = trim_threshold()
        settings = ((M_ARENA_MAX, 1), (M_MMAP_MAX, 0), (M_TRIM_THRESHOLD, trim))
        done = all(libc.mallopt(option, value) == 1 for option, value in settings)
    except (OSError, AttributeError) as error:
        _state["line"] = f"glibc's defaults (mallopt failed: {error})"
        return False
    trimming = "no trimming" if trim == NEVER else f"trim past {trim:,} bytes"
    _state["line"] = (
        f"freed memory kept in-process (glibc: one arena, no mmap, {trimming})"
        if done
        else "glibc's defaults (mallopt refused a setting)"
    )
    return done


def describe() -> str:
    """One line saying how host memory is managed in this process."""
    return _state["line"]
