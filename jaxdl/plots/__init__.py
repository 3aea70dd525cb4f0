"""All of jaxdl's drawing: matplotlib on the Agg backend (no display needed), every figure written
as one PNG by `save_figure`.

    curves      training curves and the learning-rate schedule
    images      confusion matrix, predictions, segmentation masks, filters, feature maps, saliency
    basics      the course's first topics: loss versus iteration, decision boundaries
    run         what a finished run's plots are (`save_run_plots`); `python -m jaxdl.plots RUN_DIR`
"""

from __future__ import annotations

import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

__all__ = ["plt", "save_figure"]

DPI = 110


def save_figure(fig, path: str) -> str:
    """Writes `fig` to `path` (creating its folder), closes it and returns `path`."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    return path
