"""Average precision as detection papers measure it: COCO's rules (`pycocotools.cocoeval`,
checked against it in the tests), written as small pure NumPy functions.

Per class and IoU threshold t: every image's detections of that class, by descending score
(ties keep their order), are matched greedily to that image's still unmatched true boxes of
the class: a detection takes the unmatched box it overlaps most if that IoU is at least t,
and is a true positive; otherwise (a duplicate, a miss) a false positive. All images'
detections are then ranked by score together; precision and recall along that ranking give
the precision-recall curve, made non-increasing from the right, and AP is its mean over the
101 recall points 0, 0.01, ..., 1 (COCO's interpolation). A class with no true box has no AP
(NaN) and is left out of the mean. mAP@0.5 is the mean AP at t = 0.5; mAP@[.5:.95] averages
over t = 0.50, 0.55, ..., 0.95 too. At most `max_detections` detections of a class count per
image (COCO: 100).

Boxes are (y0, x0, y1, x1) in pixels (`jaxdl.data.boxes`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from jaxdl.data.boxes import iou_matrix

IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)
RECALL_POINTS = np.linspace(0.0, 1.0, 101)
Detections = tuple[np.ndarray, np.ndarray, np.ndarray]  # boxes f[n, 4], classes i[n], scores f[n]
Truths = tuple[np.ndarray, np.ndarray]  # boxes f[m, 4], classes i[m]


def by_score(scores: np.ndarray) -> np.ndarray:
    """Indices ordering `scores` from highest to lowest, ties in their given order."""
    return np.argsort(-np.asarray(scores, np.float64), kind="stable")


def match(ious: np.ndarray, threshold: float) -> np.ndarray:
    """bool[n]: which of n detections (rows of ious f[n, m], already ordered by descending
    score) are true positives against m true boxes, matching greedily as COCO does: each takes
    the unmatched true box of highest IoU >= `threshold` (the last such on equal IoU)."""
    n, m = ious.shape
    taken = np.zeros(m, bool)
    hits = np.zeros(n, bool)
    for d in range(n):
        best, chosen = min(threshold, 1 - 1e-10), -1
        for g in range(m):
            if taken[g] or ious[d, g] < best:
                continue
            best, chosen = ious[d, g], g
        if chosen >= 0:
            taken[chosen] = hits[d] = True
    return hits


def precision_recall(
    scores: np.ndarray, hits: np.ndarray, num_true: int
) -> tuple[np.ndarray, np.ndarray]:
    """The precision-recall curve f64[n], f64[n] of detections (scores f[n], true-positive
    flags bool[n], any order) against `num_true` true boxes: ranked by descending score (ties
    in their given order), precision made non-increasing from the right."""
    order = by_score(scores)
    hits = np.asarray(hits, bool)[order]
    true_pos = np.cumsum(hits).astype(np.float64)
    false_pos = np.cumsum(~hits).astype(np.float64)
    recall = true_pos / num_true
    precision = true_pos / (true_pos + false_pos + np.spacing(1))
    return np.maximum.accumulate(precision[::-1])[::-1], recall


def average_precision(precision: np.ndarray, recall: np.ndarray) -> float:
    """COCO's 101-point interpolated AP of a curve from `precision_recall`: the mean, over
    recall points r = 0, 0.01, ..., 1, of the precision at the first rank whose recall
    reaches r (0 where none does)."""
    ranks = np.searchsorted(recall, RECALL_POINTS, side="left")
    reached = ranks < len(precision)
    values = np.zeros(len(RECALL_POINTS))
    values[reached] = np.asarray(precision)[ranks[reached]]
    return float(values.mean())


def class_matches(
    detections: Sequence[Detections], truths: Sequence[Truths], k: int, max_detections: int
) -> tuple[np.ndarray, list[np.ndarray], int]:
    """Class `k`'s detections over all images: their scores f64[n] (image by image, each by
    descending score, at most `max_detections` per image), each image's IoU matrix with its
    true boxes of the class, and the number of those true boxes."""
    if len(detections) != len(truths):
        raise ValueError(
            f"{len(detections)} images of detections but {len(truths)} of true boxes; give one "
            f"entry per image to both."
        )
    scores, ious, num_true = [], [], 0
    for (boxes, classes, image_scores), (true_boxes, true_classes) in zip(
        detections, truths, strict=True
    ):
        mine = np.flatnonzero(np.asarray(classes) == k)
        mine = mine[by_score(np.asarray(image_scores)[mine])][:max_detections]
        ours = np.asarray(true_classes) == k
        scores.append(np.asarray(image_scores, np.float64)[mine])
        ious.append(iou_matrix(np.asarray(boxes)[mine], np.asarray(true_boxes)[ours]))
        num_true += int(ours.sum())
    return np.concatenate(scores), ious, num_true


def average_precisions(
    detections: Sequence[Detections],
    truths: Sequence[Truths],
    num_classes: int,
    thresholds: Sequence[float] = tuple(IOU_THRESHOLDS),
    max_detections: int = 100,
) -> np.ndarray:
    """f64[T, K]: AP per IoU threshold and class over all images (one `detections` and one
    `truths` entry per image); NaN for a class without true boxes."""
    result = np.full((len(thresholds), num_classes), np.nan)
    for k in range(num_classes):
        scores, ious, num_true = class_matches(detections, truths, k, max_detections)
        if num_true == 0:
            continue
        for t, threshold in enumerate(thresholds):
            hits = np.concatenate([match(image, threshold) for image in ious])
            result[t, k] = average_precision(*precision_recall(scores, hits, num_true))
    return result


def precision_recall_curves(
    detections: Sequence[Detections],
    truths: Sequence[Truths],
    class_names: Sequence[str],
    threshold: float = 0.5,
    max_detections: int = 100,
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Each present class's precision-recall curve at IoU `threshold`: name -> (precision,
    recall), both f64[n] along the ranking."""
    curves = {}
    for k, name in enumerate(class_names):
        scores, ious, num_true = class_matches(detections, truths, k, max_detections)
        if num_true:
            hits = np.concatenate([match(image, threshold) for image in ious])
            curves[name] = precision_recall(scores, hits, num_true)
    return curves


def summary(ap: np.ndarray, class_names: Sequence[str]) -> dict[str, object]:
    """The headline figures of `average_precisions(..., thresholds=IOU_THRESHOLDS)` f64[10, K]:
    `{"map50", "map50_95", "ap50_per_class": {name: AP@0.5}}` (per-class NaN for absent
    classes, kept out of the means)."""
    present = ~np.isnan(ap[0])
    return {
        "map50": float(ap[0, present].mean()) if present.any() else float("nan"),
        "map50_95": float(ap[:, present].mean()) if present.any() else float("nan"),
        "ap50_per_class": dict(zip(class_names, map(float, ap[0]), strict=True)),
    }


def to_coco(
    detections: Sequence[Detections], truths: Sequence[Truths], class_names: Sequence[str]
) -> tuple[dict, list[dict]]:
    """The COCO ground-truth dataset and results list of these images (image ids 1, 2, ...;
    category id = class id + 1, as COCO counts from 1; boxes as [x, y, width, height]), the
    format `pycocotools` and most detection tools read."""

    def xywh(box) -> list[float]:
        y0, x0, y1, x1 = map(float, box)
        return [x0, y0, x1 - x0, y1 - y0]

    images, annotations, results = [], [], []
    for image_id, ((boxes, classes, scores), (true_boxes, true_classes)) in enumerate(
        zip(detections, truths, strict=True), start=1
    ):
        images.append({"id": image_id})
        for box, cls in zip(true_boxes, true_classes, strict=True):
            x, y, w, h = xywh(box)
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": int(cls) + 1,
                    "bbox": [x, y, w, h],
                    "area": w * h,
                    "iscrowd": 0,
                }
            )
        for box, cls, score in zip(boxes, classes, scores, strict=True):
            results.append(
                {
                    "image_id": image_id,
                    "category_id": int(cls) + 1,
                    "bbox": xywh(box),
                    "score": float(score),
                }
            )
    categories = [{"id": k + 1, "name": name} for k, name in enumerate(class_names)]
    dataset = {"images": images, "annotations": annotations, "categories": categories}
    return dataset, results
