"""Builds jaxdl's CPU kernels (`conv.cc`: oneDNN's convolutions; `conv_gemm.cc`: the weight
gradient as im2col + sgemm; `batch_norm.cc`: BatchNorm fused with its residual add and ReLU)
into one shared library; `make install` runs this.

    python -m jaxdl.ops.onednn.build [--force]

oneDNN comes from the `onednn-cpu-gomp` / `onednn-devel-cpu-gomp` wheels (pinned in
pyproject.toml for Linux x86-64), which put `libdnnl.so.3` in `<prefix>/lib` and the headers
in `<prefix>/include/oneapi/dnnl`; XLA's FFI headers come with jaxlib (`jax.ffi.include_dir()`).
The library records oneDNN's directory as its rpath, so nothing needs `LD_LIBRARY_PATH`.

A build is skipped when a stamp beside the library matches the source, the compiler, the
flags and the jaxlib and oneDNN it was built against. Any failure (no wheel, no compiler, a
compile error) prints one line and exits 0: jaxdl then runs on XLA's convolutions.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

SOURCES = tuple(
    Path(__file__).with_name(name) for name in ("conv.cc", "conv_gemm.cc", "batch_norm.cc")
)
HEADERS = (Path(__file__).with_name("thread_buffer.h"),)
BUILD_DIR = Path(__file__).with_name("_build")
LIBRARY = BUILD_DIR / "libjaxdl_onednn.so"
STAMP = BUILD_DIR / "build.stamp"
# -O3 for the loop vectoriser (batch_norm.cc); OpenMP is the GNU runtime oneDNN's wheel uses.
FLAGS = ("-O3", "-std=c++17", "-fPIC", "-shared", "-fopenmp", "-w")


class BuildError(Exception):
    """Why the kernels cannot be built here, in one sentence."""


def supported_platform() -> bool:
    """The oneDNN wheels exist for Linux x86-64 only."""
    return sys.platform == "linux" and platform.machine() in ("x86_64", "AMD64")


def onednn_prefix() -> Path:
    """The installation prefix holding oneDNN's headers and `libdnnl.so.3`."""
    for prefix in dict.fromkeys((sys.prefix, sys.base_prefix)):
        root = Path(prefix)
        if (root / "include/oneapi/dnnl/dnnl.hpp").exists() and (
            root / "lib/libdnnl.so.3"
        ).exists():
            return root
    raise BuildError(
        f"oneDNN's headers or libdnnl.so.3 are not under {sys.prefix}; install "
        "onednn-cpu-gomp==2023.2.0 and onednn-devel-cpu-gomp==2023.2.0 (make install does)"
    )


def compiler() -> str:
    """The C++ compiler: `$CXX`, else g++."""
    name = os.environ.get("CXX", "g++")
    if shutil.which(name) is None:
        raise BuildError(f"no C++ compiler {name!r} on PATH; install g++ or set CXX")
    return name


def command(output: Path) -> list[str]:
    """The compile-and-link command line."""
    import jax

    prefix = onednn_prefix()
    return [
        compiler(),
        *FLAGS,
        f"-I{jax.ffi.include_dir()}",
        f"-I{prefix / 'include'}",
        *(str(source) for source in SOURCES),
        "-o",
        str(output),
        f"-L{prefix / 'lib'}",
        "-l:libdnnl.so.3",
        f"-Wl,-rpath,{prefix / 'lib'}",
    ]


def fingerprint(cmd: list[str]) -> str:
    """What the library depends on: the sources and headers, the command, the compiler's and
    jaxlib's versions and oneDNN's library file."""
    import jaxlib

    digest = hashlib.sha256()
    for source in SOURCES + HEADERS:
        digest.update(source.read_bytes())
    digest.update("\0".join(cmd).encode())
    version = subprocess.run([cmd[0], "--version"], capture_output=True, text=True).stdout
    digest.update(version.encode())
    digest.update(jaxlib.__version__.encode())
    library = onednn_prefix() / "lib/libdnnl.so.3"
    stat = library.resolve().stat()
    digest.update(f"{library.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return digest.hexdigest()


def build(force: bool = False) -> tuple[bool, str]:
    """Builds `LIBRARY` unless its stamp is current. Returns (built now, one line saying what
    happened); raises `BuildError` with the reason if it cannot be built."""
    if not supported_platform():
        raise BuildError(f"oneDNN wheels exist for Linux x86-64 only, not {sys.platform} "
                         f"{platform.machine()}")  # fmt: skip
    cmd = command(LIBRARY)
    stamp = fingerprint(cmd)
    if not force and LIBRARY.exists() and STAMP.exists() and STAMP.read_text() == stamp:
        return False, f"jaxdl: oneDNN kernels up to date ({LIBRARY})"
    BUILD_DIR.mkdir(exist_ok=True)
    # Build beside the target and rename, so a process loading the old library never sees a
    # half-written file.
    with tempfile.TemporaryDirectory(dir=BUILD_DIR) as tmp:
        partial = Path(tmp) / LIBRARY.name
        result = subprocess.run(command(partial), capture_output=True, text=True)
        if result.returncode != 0:
            first = (result.stderr.strip().splitlines() or ["(no output)"])[0]
            names = " and ".join(source.name for source in SOURCES)
            raise BuildError(f"compiling {names} failed: {first}")
        os.replace(partial, LIBRARY)
    STAMP.write_text(stamp)
    return True, f"jaxdl: built oneDNN kernels {LIBRARY}"


def main(argv: list[str] | None = None) -> int:
    args = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    args.add_argument("--force", action="store_true", help="rebuild even if up to date")
    options = args.parse_args(argv)
    try:
        _, line = build(force=options.force)
    except BuildError as error:
        line = f"jaxdl: oneDNN kernels not built ({error}); convolutions run on XLA"
    print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
