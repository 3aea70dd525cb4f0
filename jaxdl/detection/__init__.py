"""Object detection: CenterNet's targets, loss and decoding (`centernet`), `detect` for a
trained state, and COCO's average precision (`evaluation`)."""

from jaxdl.detection.centernet import decode, detect, objective
from jaxdl.detection.evaluation import average_precisions, iou_matrix, summary, to_coco

__all__ = [
    "average_precisions",
    "decode",
    "detect",
    "iou_matrix",
    "objective",
    "summary",
    "to_coco",
]
