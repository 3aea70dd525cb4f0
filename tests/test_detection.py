"""Object detection: composed canvases and their boxes, boxes moved by augmentation, COCO's
average precision against pycocotools, CenterNet's targets, loss and decoding, the detector
and the localiser end to end."""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdl import models
from jaxdl.data.augment import Augmentation
from jaxdl.data.boxes import iou_matrix, pack, random_zoom_shift, unpack
from jaxdl.data.compose import compose_detection, tight_box
from jaxdl.data.device import Preprocess
from jaxdl.detection import centernet, evaluation
from jaxdl.errors import ConfigError
from jaxdl.state import count_params
from jaxdl.tasks.detection import Detection, box_overlap, localisation_objective


def fake_digits(count: int = 40, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Digit-like 28x28 images: a bright blob of random extent (so tight boxes vary)."""
    rng = np.random.default_rng(seed)
    images = np.zeros((count, 28, 28, 1), np.uint8)
    for image in images:
        y0, x0 = rng.integers(2, 8, 2)
        y1, x1 = rng.integers(18, 26, 2)
        image[y0:y1, x0:x1, 0] = rng.integers(60, 256, (y1 - y0, x1 - x0))
    return images, rng.integers(0, 10, count).astype(np.int32)


# ---- canvases ---------------------------------------------------------------------------------


def test_canvases_hold_tight_non_overlapping_boxes_of_the_asked_sizes():
    digits, classes = fake_digits()
    images, labels = compose_detection(digits, classes, 60, canvas=96, seed=3)
    assert images.shape == (60, 96, 96, 1) and labels.shape == (60, 4, 6)
    counts = labels[..., 5].sum(1)
    assert counts.min() >= 1 and counts.max() <= 4 and len(set(counts)) > 2
    for image, (boxes, _) in zip(images, unpack(labels), strict=True):
        covered = np.zeros(image.shape[:2], bool)
        for box in boxes.astype(int):
            y0, x0, y1, x1 = box
            assert 20 <= max(y1 - y0, x1 - x0) <= 44
            assert tight_box(image[y0:y1, x0:x1, 0]) == (0, 0, y1 - y0, x1 - x0)
            covered[y0:y1, x0:x1] = True
        assert not image[~covered].any()  # nothing drawn outside the boxes
        for i in range(len(boxes)):
            assert iou_matrix(boxes[i], np.delete(boxes, i, 0)).max(initial=0) <= 0.3


def test_canvases_are_seeded_and_stable():
    digits, classes = fake_digits()
    first = compose_detection(digits, classes, 10, seed=1)
    again = compose_detection(digits, classes, 10, seed=1)
    other = compose_detection(digits, classes, 10, seed=2)
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    assert not np.array_equal(first[0], other[0])


def test_canvas_options_are_checked():
    digits, classes = fake_digits()
    with pytest.raises(ConfigError, match="digit sizes"):
        compose_detection(digits, classes, 1, canvas=32, sizes=(20, 44))
    with pytest.raises(ConfigError, match="digits per canvas"):
        compose_detection(digits, classes, 1, digits=(3, 2))
    with pytest.raises(ConfigError, match="shift_zoom"):
        Detection(shift_zoom=1.5)


def test_shift_and_zoom_move_the_boxes_with_the_pixels():
    digits, classes = fake_digits()
    images, labels = compose_detection(digits, classes, 16, canvas=64, digits=(1, 1), seed=0)
    moved, moved_labels = random_zoom_shift(
        jax.random.PRNGKey(0), jnp.asarray(images, jnp.float32), jnp.asarray(labels), 0.3
    )
    moved, moved_labels = np.asarray(moved), np.asarray(moved_labels)
    assert not np.allclose(moved_labels[:, 0, :4], labels[:, 0, :4])  # they did move
    factors = (moved_labels[:, 0, 2] - moved_labels[:, 0, 0]) / (labels[:, 0, 2] - labels[:, 0, 0])
    assert factors.min() < 0.95 and factors.max() > 1.05  # and were scaled both ways
    for image, box in zip(moved, moved_labels[:, 0, :4], strict=True):
        assert box.min() >= 0 and box.max() <= 64  # whole on the canvas
        # the bright pixels lie where the box now says (bilinear blur: within 1.5 pixels)
        assert np.abs(np.array(tight_box(image[..., 0] > 30)) - box).max() <= 1.5
    np.testing.assert_array_equal(moved_labels[..., 4:], labels[..., 4:])  # classes stay


def test_training_batches_of_box_labels_move_them_and_padding_stays_zero():
    digits, classes = fake_digits()
    images, labels = compose_detection(digits, classes, 8, canvas=64, seed=0)
    preprocess = Preprocess((0.1,), (0.3,), Augmentation(shift_zoom=0.2))
    stored, boxes = jnp.asarray(images), jnp.asarray(labels)
    inputs, moved = preprocess.examples(stored, boxes, jax.random.PRNGKey(1))
    assert inputs.shape == (8, 64, 64, 1)
    padding = labels[..., 5] == 0
    assert np.all(np.asarray(moved)[padding] == 0)
    unchanged_inputs, unchanged = preprocess.examples(stored, boxes)  # no key: evaluation
    np.testing.assert_array_equal(np.asarray(unchanged), labels)
    np.testing.assert_allclose(unchanged_inputs, preprocess.inputs(stored))


# ---- average precision ------------------------------------------------------------------------


def random_case(seed: int, num_classes: int = 3):
    """Images with 0-4 true boxes, detections that are jittered copies (some duplicated, some
    of the wrong class), false alarms, and scores rounded to one decimal (ties)."""
    rng = np.random.default_rng(seed)
    detections, truths = [], []
    for _ in range(rng.integers(1, 7)):
        m = rng.integers(0, 5)
        corner = rng.uniform(0, 60, (m, 2))
        true_boxes = np.concatenate([corner, corner + rng.uniform(5, 30, (m, 2))], 1)
        true_classes = rng.integers(0, num_classes, m)
        boxes, classes = [], []
        for box, cls in zip(true_boxes, true_classes, strict=True):
            for _ in range(rng.integers(0, 3)):
                boxes.append(box + rng.normal(0, 3, 4))
                classes.append(cls if rng.random() < 0.85 else rng.integers(0, num_classes))
        for _ in range(rng.integers(0, 3)):
            corner = rng.uniform(0, 60, 2)
            boxes.append(np.concatenate([corner, corner + rng.uniform(5, 30, 2)]))
            classes.append(rng.integers(0, num_classes))
        boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
        boxes[:, 2:] = np.maximum(boxes[:, 2:], boxes[:, :2] + 0.5)
        scores = np.round(rng.random(len(boxes)), 1)
        detections.append((boxes, np.asarray(classes, np.int64), scores))
        truths.append((true_boxes, true_classes))
    return detections, truths


def coco_precisions(detections, truths, num_classes: int = 3) -> np.ndarray:
    """pycocotools' AP f64[10, K] (NaN for absent classes) of the same images."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    dataset, results = evaluation.to_coco(detections, truths, [str(k) for k in range(num_classes)])
    with contextlib.redirect_stdout(io.StringIO()):
        truth = COCO()
        truth.dataset = dataset
        truth.createIndex()
        found = truth.loadRes(results)
        coco = COCOeval(truth, found, "bbox")
        coco.evaluate()
        coco.accumulate()
    precision = coco.eval["precision"][:, :, :, 0, 2]  # [T, R, K], all areas, 100 detections
    ap = precision.mean(1)
    ap[(precision < 0).any(1)] = np.nan
    return ap


def test_average_precision_equals_pycocotools():
    compared = 0
    for seed in range(40):
        detections, truths = random_case(seed)
        if not sum(len(d[0]) for d in detections):
            continue  # pycocotools cannot load an empty results list
        ours = evaluation.average_precisions(detections, truths, 3)
        reference = coco_precisions(detections, truths)
        np.testing.assert_array_equal(np.isnan(ours), np.isnan(reference))
        np.testing.assert_allclose(ours, reference, atol=1e-6, err_msg=f"case {seed}")
        compared += 1
    assert compared >= 20
    cases = [random_case(seed) for seed in range(40)]
    assert any(len(t[0]) == 0 for _, truths in cases for t in truths)  # images without objects
    assert any(len(set(d[2])) < len(d[2]) for detections, _ in cases for d in detections)  # ties


def test_perfect_and_half_shifted_detectors():
    detections, truths = random_case(5)
    perfect = [(boxes, classes, np.ones(len(boxes))) for boxes, classes in truths]
    ap = evaluation.average_precisions(perfect, truths, 3)
    assert np.nanmin(ap) == 1.0 and evaluation.summary(ap, "abc")["map50_95"] == 1.0
    shifted = []
    for boxes, classes in truths:
        width = boxes[:, 3] - boxes[:, 1]
        moved = boxes + np.stack([0 * width, width / 2, 0 * width, width / 2], 1)
        shifted.append((moved, classes, np.ones(len(boxes))))
    assert np.nanmax(evaluation.average_precisions(shifted, truths, 3, thresholds=(0.5,))) == 0


def test_duplicates_count_as_false_positives():
    truth_boxes = np.array([[0, 0, 10, 10], [20, 20, 30, 30]], float)
    truths = [(truth_boxes, np.array([0, 0]))]
    found = np.array([[0, 0, 10, 10], [0, 0, 10, 10], [20, 20, 30, 30]], float)
    detections = [(found, np.array([0, 0, 0]), np.array([0.9, 0.8, 0.7]))]
    hits = evaluation.match(evaluation.iou_matrix(found, truth_boxes), 0.5)
    np.testing.assert_array_equal(hits, [True, False, True])
    # ranks: precision 1, 1/2, 2/3 at recall 1/2, 1/2, 1 -> 51 recall points at 1, 50 at 2/3
    ap = evaluation.average_precisions(detections, truths, 1, thresholds=(0.5,))
    assert ap[0, 0] == pytest.approx((51 * 1 + 50 * 2 / 3) / 101, abs=1e-12)


# ---- CenterNet ---------------------------------------------------------------------------------


def perfect_outputs(labels: np.ndarray, grid: int, num_classes: int = 10) -> np.ndarray:
    """The outputs f32[B, grid, grid, K + 4] a perfect detector would give for labels."""
    targets = np.clip(
        np.asarray(centernet.heatmap_targets(labels, (grid, grid), num_classes)), 1e-6, 1 - 1e-6
    )
    outputs = np.zeros((len(labels), grid, grid, num_classes + 4), np.float32)
    outputs[..., :num_classes] = np.log(targets / (1 - targets))
    cell, offset, size = map(np.asarray, centernet.centres(jnp.asarray(labels)))
    for b, m in zip(*np.nonzero(labels[..., 5]), strict=True):
        outputs[b, cell[b, m, 0], cell[b, m, 1], num_classes:] = [*size[b, m], *offset[b, m]]
    return outputs


def test_heatmap_targets_peak_at_each_centre_and_the_loss_is_zero_on_boxes():
    digits, classes = fake_digits()
    _, labels = compose_detection(digits, classes, 12, canvas=96, seed=0)
    targets = np.asarray(centernet.heatmap_targets(jnp.asarray(labels), (24, 24), 10))
    assert targets.shape == (12, 24, 24, 10) and targets.max() == 1.0
    assert (targets == 1.0).sum() == labels[..., 5].sum()  # one peak per object
    outputs = perfect_outputs(labels, 24)
    loss, parts = centernet.objective(jnp.asarray(outputs), jnp.asarray(labels))
    assert loss.shape == (12,)
    np.testing.assert_allclose(parts["size"], 0, atol=1e-6)
    np.testing.assert_allclose(parts["offset"], 0, atol=1e-6)
    assert float(parts["heatmap"].max()) < 0.1  # the focal loss of near-perfect heatmaps


def test_decoding_a_perfect_output_gives_back_the_boxes_with_and_without_jit():
    digits, classes = fake_digits()
    _, labels = compose_detection(digits, classes, 12, canvas=96, seed=4)
    outputs = jnp.asarray(perfect_outputs(labels, 24))
    found = centernet.decode(outputs, 10)
    with jax.disable_jit():
        eager = centernet.decode(outputs, 10)
    for key in found:
        np.testing.assert_array_equal(found[key], eager[key])
    detections = [
        (b[s > 0.5], c[s > 0.5], s[s > 0.5])
        for b, c, s in zip(
            *(np.asarray(found[k]) for k in ("boxes", "classes", "scores")), strict=True
        )
    ]
    truths = unpack(labels)
    for (boxes, found_classes, _), (true_boxes, true_classes) in zip(
        detections, truths, strict=True
    ):
        order = np.lexsort(true_boxes.T[::-1])
        mine = np.lexsort(boxes.T[::-1])
        np.testing.assert_allclose(boxes[mine], true_boxes[order], atol=1e-4)
        np.testing.assert_array_equal(found_classes[mine], true_classes[order])
    assert (
        evaluation.summary(evaluation.average_precisions(detections, truths, 10), "0123456789")[
            "map50_95"
        ]
        == 1.0
    )


def test_centernet_shapes_parameters_and_input_check():
    model = models.create("centernet", num_classes=10)
    variables = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 96, 96, 1)))
    assert count_params(variables["params"]) == 747_646
    assert model.apply(variables, jnp.zeros((2, 96, 96, 1))).shape == (2, 24, 24, 14)
    with pytest.raises(ConfigError, match="divisible by 16"):
        model.init(jax.random.PRNGKey(0), jnp.zeros((1, 90, 90, 1)))


def test_localiser_count_by_the_arithmetic_and_its_two_branches():
    model = models.create("localiser", num_classes=14)  # 10 digits + 4 box numbers
    variables = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 64, 64, 1)))
    stem = 3 * 3 * 1 * 32 + 2 * 32  # conv (no bias) + BatchNorm scale and bias
    stage1 = 2 * (3 * 3 * 32 * 32 + 2 * 32)
    stage2 = 3 * 3 * 32 * 64 + 3 * 3 * 64 * 64 + 2 * 2 * 64 + 32 * 64 + 2 * 64  # + projection
    stage3 = 3 * 3 * 64 * 128 + 3 * 3 * 128 * 128 + 2 * 2 * 128 + 64 * 128 + 2 * 128
    classes = 128 * 10 + 10  # on the globally pooled 128 features
    box = (128 * 32 + 2 * 32) + (8 * 8 * 32 * 256 + 256) + (256 * 4 + 4)  # the 8x8 grid kept
    assert stem + stage1 + stage2 + stage3 + classes + box == 837_806
    assert count_params(variables["params"]) == 837_806
    # a digit-like blob on the (zero) background, and the same blob 16 pixels further (a
    # multiple of the trunk's stride 8): the pooled class branch barely sees the move (only
    # where the trunk's wide fields meet the border), the box branch does
    blob = jax.random.uniform(jax.random.PRNGKey(1), (12, 12))
    here = jnp.zeros((64, 64)).at[10:22, 12:24].set(blob)
    there = jnp.zeros((64, 64)).at[26:38, 28:40].set(blob)
    outputs = model.apply(variables, jnp.stack([here, there])[..., None])
    assert outputs.shape == (2, 14)
    change = lambda part: float(jnp.abs(part[0] - part[1]).max() / jnp.abs(part[0]).max())
    assert change(outputs[:, :10]) < 0.05 and change(outputs[:, 10:]) > 1.0
    with pytest.raises(ConfigError, match="give it the number of classes \\+ 4"):
        models.create("localiser", num_classes=4).init(
            jax.random.PRNGKey(0), jnp.zeros((1, 64, 64, 1))
        )


def test_the_detector_loss_gradients_match_central_differences():
    digits, classes = fake_digits()
    _, labels = compose_detection(digits, classes, 2, canvas=32, sizes=(8, 16), seed=0)
    with jax.enable_x64(True):
        x = np.asarray(jax.random.normal(jax.random.PRNGKey(0), (2, 8, 8, 14), jnp.float64))
        labels = jnp.asarray(labels, jnp.float64)
        loss = jax.jit(lambda x: centernet.objective(x, labels)[0].sum())
        grads = np.asarray(jax.grad(loss)(x))
        rng, eps = np.random.default_rng(0), 1e-6
        # every centre cell's box outputs, and heatmap cells at random
        centres = np.argwhere(np.abs(grads[..., 10:]) > 0)
        picked = [(b, i, j, 10 + c) for b, i, j, c in centres]
        picked += [tuple(rng.integers(0, n) for n in x.shape) for _ in range(40)]
        for index in picked:
            step = np.zeros_like(x)
            step[index] = eps
            numeric = (loss(x + step) - loss(x - step)) / (2 * eps)
            assert abs(grads[index] - numeric) <= 1e-6 * max(1.0, abs(numeric)), index


def test_localisation_objective_and_box_overlap():
    a = jnp.array([[0.0, 0.0, 2.0, 2.0], [0.0, 0.0, 1.0, 1.0]])
    b = jnp.array([[1.0, 1.0, 3.0, 3.0], [2.0, 2.0, 3.0, 3.0]])
    iou, giou = box_overlap(a, b)
    np.testing.assert_allclose(iou, [1 / 7, 0.0], rtol=1e-6)
    np.testing.assert_allclose(giou, [1 / 7 - 2 / 9, -7 / 9], rtol=1e-6)  # hulls 9 and 9
    labels = jnp.asarray(pack([np.array([[16.0, 16, 48, 48]])], [np.array([3])], 1))
    right = jnp.concatenate(
        [jax.nn.one_hot(jnp.array([3]), 10) * 20, jnp.zeros((1, 2)), jnp.zeros((1, 2))], -1
    )
    loss, figures = localisation_objective(right, labels, canvas=64)  # centre 0.5, size 0.5
    np.testing.assert_allclose(figures["iou"], [1.0], rtol=1e-6)
    assert float(figures["accuracy"][0]) == 1.0 and float(loss[0]) < 1e-3


# ---- end to end ------------------------------------------------------------------------------

TINY = [
    "--train_canvases", "256", "--test_canvases", "64", "--epochs", "2", "--batch_size", "32",
    "--eval_batch_size", "64", "--train_limit", "2000", "--test_limit", "500", "--quiet",
]  # fmt: skip


@pytest.mark.slow
def test_detection_experiment_end_to_end_and_resumes_exactly(tmp_path, data_dir):
    from experiments import detection

    every = ["--checkpoint_every_steps", "3", "--keep_checkpoints", "100", "--data_dir", data_dir]
    straight_dir = tmp_path / "straight"
    straight = detection.main([*TINY, *every, "--workdir", str(straight_dir)])
    assert 0 <= straight["test_map50"] <= 1 and straight["test_map50_95"] <= straight["test_map50"]
    records = [json.loads(line) for line in open(straight_dir / "metrics.jsonl")]
    assert [record["epoch"] for record in records] == [1, 2]
    assert all(0 <= record["val_map50"] <= 1 for record in records)
    for name in ("test_detections.json", "test_ground_truth.json", "plots/detections.png"):
        assert os.path.exists(straight_dir / name)
    truth = json.load(open(straight_dir / "test_ground_truth.json"))
    assert len(truth["images"]) == 64
    # lose every checkpoint after step 6 (8 steps per epoch: mid epoch 1), then resume
    resumed_dir = tmp_path / "resumed"
    shutil.copytree(straight_dir, resumed_dir)
    latest = resumed_dir / "checkpoints" / "latest"
    for step in [int(d) for d in os.listdir(latest) if d.isdigit()]:
        if step > 6:
            shutil.rmtree(latest / str(step))
    resumed = detection.main([*TINY, *every, "--workdir", str(resumed_dir)])
    assert resumed["test_map50"] == straight["test_map50"]
    assert resumed["test_map50_95"] == straight["test_map50_95"]
    assert json.load(open(resumed_dir / "test_detections.json")) == json.load(
        open(straight_dir / "test_detections.json")
    )


@pytest.mark.slow
def test_localisation_experiment_end_to_end(tmp_path, data_dir):
    from experiments import detection

    results = detection.main(
        [
            *TINY,
            "--task",
            "localise",
            "--model",
            "lenet5",
            "--workdir",
            str(tmp_path),
            "--data_dir",
            data_dir,
        ]
    )
    assert 0 <= results["test_mean_iou"] <= 1 and 0 <= results["test_accuracy"] <= 1
    assert os.path.exists(tmp_path / "plots" / "localisation.png")
