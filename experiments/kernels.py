"""Classic convolution kernels on a real photograph: `python -m experiments.kernels`.

Identity, a one-pixel shift, an edge detector, the Laplacian, a Gaussian blur, the two Sobel
filters and a sharpening kernel (`jaxdl.course.kernels`), each applied by `jaxdl.nn.Conv` to
the grey version of a photograph that ships with scikit-learn (`china.jpg` or `flower.jpg`).
Writes `plots/kernels.png` to the run directory and prints each response's range.
"""

from __future__ import annotations

import argparse
import os

import numpy as np

from jaxdl import cli
from jaxdl.course.kernels import CLASSIC_KERNELS, apply_kernel
from jaxdl.data.augment import grayscale
from jaxdl.loop import log
from jaxdl.plots.images import plot_kernels
from jaxdl.rundir import RunDir


def parser() -> argparse.ArgumentParser:
    result = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=cli.HelpFormatter
    )
    result.add_argument(
        "--image", choices=("china.jpg", "flower.jpg"), default="china.jpg", help="photograph"
    )
    result.add_argument("--workdir", default="runs/kernels", help="run directory")
    return result


def main(argv: list[str] | None = None) -> dict:
    from sklearn.datasets import load_sample_image

    args = parser().parse_args(argv)
    grey = grayscale(load_sample_image(args.image)[None])[0, ..., 0].astype(np.float32)
    responses = {name: apply_kernel(grey, kernel) for name, kernel in CLASSIC_KERNELS.items()}
    for name, response in responses.items():
        log(f"{name:<28} response from {response.min():8.1f} to {response.max():8.1f}")
    path = plot_kernels(
        grey, responses, CLASSIC_KERNELS, os.path.join(RunDir(args.workdir).plots, "kernels.png")
    )
    log(f"wrote {path}")
    return {"image": args.image, "plot": path}


if __name__ == "__main__":
    cli.run(main)
