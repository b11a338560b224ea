"""Metrics on hand-made cases with known answers, and agreement with scikit-image."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
from skimage.metrics import adapted_rand_error, variation_of_information

from napari_anatomics.analyze.evaluate import (
    contingency,
    evaluate,
    foreground_dice,
    format_evaluation,
    instance_scores,
)

# Scores are float64 ratios and entropies of voxel counts: pytest.approx's default
# (rel 1e-6, abs 1e-12) is far above their rounding (~1e-16 relative). Ratios that
# are exact in binary (n/n = 1.0, 3/4) are compared with ==.


def _h2(p: float) -> float:
    return -(p * np.log2(p) + (1 - p) * np.log2(1 - p))


@pytest.fixture
def gt() -> np.ndarray:
    """Four 80-voxel boxes in an 800-voxel stack."""
    a = np.zeros((2, 10, 40), np.uint16)
    a[:, 0:4, 0:10] = 1
    a[:, 0:4, 15:25] = 2
    a[:, 6:10, 0:10] = 3
    a[:, 6:10, 20:30] = 4
    return a


def test_perfect(gt):
    pred = (gt * 10).astype(np.uint32)  # other ids, same objects
    ev = evaluate(pred, gt, (40.0, 10.0, 10.0))
    assert ev.foreground_iou == 1.0 and ev.foreground_dice == 1.0
    for s in ev.instances.values():
        assert (s.tp, s.fp, s.fn) == (4, 0, 0)
        assert s.precision == s.recall == s.f1 == s.ap == s.mean_matched_iou == 1.0
    assert ev.adapted_rand_error == pytest.approx(0.0)
    assert ev.vi_split == pytest.approx(0.0) and ev.vi_merge == pytest.approx(0.0)
    assert (ev.n_pred, ev.n_gt, ev.pred_voxels, ev.gt_voxels) == (4, 4, 320, 320)
    assert ev.gt_volume_um3 == pytest.approx(320 * 4e-6)


def test_one_split(gt):
    pred = gt.copy()
    pred[:, 0:4, 7:10] = 9  # object 1 split 70 % / 30 %
    ev = evaluate(pred, gt)
    s5, s75 = ev.instances["0.5"], ev.instances["0.75"]
    assert (s5.tp, s5.fp, s5.fn) == (4, 1, 0)
    assert s5.precision == pytest.approx(0.8) and s5.recall == 1.0
    assert s5.f1 == pytest.approx(8 / 9) and s5.ap == pytest.approx(0.8)
    assert (s75.tp, s75.fp, s75.fn) == (3, 2, 1) and s75.ap == pytest.approx(0.5)
    assert ev.vi_split == pytest.approx(80 / 800 * _h2(0.7))
    assert ev.vi_merge == pytest.approx(0.0)
    assert ev.rand_precision == pytest.approx(1.0) and ev.rand_recall < 1.0
    assert ev.foreground_dice == 1.0 and ev.n_pred == 5
    # Below 0.5 the Hungarian matching still pairs each object once.
    s3 = instance_scores(pred, gt, iou=0.25)
    assert (s3.tp, s3.fp, s3.fn) == (4, 1, 0)


def test_one_merge(gt):
    pred = gt.copy()
    pred[:, 6:10, 10:30] = 3  # objects 3 and 4 and the gap between them -> one
    pred[:, 6:10, 10:20] = 0
    pred[pred == 4] = 3
    ev = evaluate(pred, gt)
    s5, s75 = ev.instances["0.5"], ev.instances["0.75"]
    assert (s5.tp, s5.fp, s5.fn) == (3, 0, 1)  # IoU exactly 0.5 with one of the two
    assert (s75.tp, s75.fp, s75.fn) == (2, 1, 2)
    assert ev.vi_merge == pytest.approx(160 / 800 * 1.0)
    assert ev.vi_split == pytest.approx(0.0)
    assert ev.rand_recall == pytest.approx(1.0) and ev.rand_precision < 1.0


def test_one_missed(gt):
    pred = np.where(gt == 4, 0, gt)
    ev = evaluate(pred, gt)
    s = ev.instances["0.5"]
    assert (s.tp, s.fp, s.fn) == (3, 0, 1)
    assert s.precision == 1.0 and s.recall == 0.75 and s.ap == 0.75
    assert ev.foreground_dice == pytest.approx(2 * 240 / 560)
    assert foreground_dice(pred, gt) == pytest.approx(2 * 240 / 560)
    assert ev.foreground_iou == pytest.approx(240 / 320)
    assert (ev.n_pred, ev.n_gt) == (3, 4)
    text = format_evaluation(ev)
    assert "predicted 3, true 4" in text and "0.75" in text


def test_rand_and_vi_agree_with_skimage():
    rng = np.random.default_rng(0)
    gt = rng.integers(0, 5, (6, 20, 20)).astype(np.uint16)
    pred = np.where(rng.random(gt.shape) < 0.8, gt, rng.integers(0, 7, gt.shape))
    ev = evaluate(pred, gt)
    are, prec, rec = adapted_rand_error(gt, pred)
    assert ev.adapted_rand_error == pytest.approx(are)
    # scikit-image names them the other way round (see the module notes).
    assert (ev.rand_precision, ev.rand_recall) == pytest.approx((rec, prec))
    split, merge = variation_of_information(gt, pred)
    assert (ev.vi_split, ev.vi_merge) == pytest.approx((split, merge))


def test_semantic_and_per_class(gt):
    classes = np.array([0, 1, 1, 2, 2])  # id -> class
    sem_gt = classes[gt]
    sem_pred = sem_gt.copy()
    sem_pred[:, 0:4, 0:10] = 2  # 80 voxels of class 1 called class 2
    ev = evaluate(sem_pred, sem_gt, semantic=True, class_names=["chl", "mito"])
    assert ev.classes["chl"]["iou"] == pytest.approx(80 / 160)
    assert ev.classes["mito"]["iou"] == pytest.approx(160 / 240)
    assert ev.classes["mito"]["dice"] == pytest.approx(2 * 160 / 400)
    inst = evaluate(gt, gt, pred_classes=classes, gt_classes={1: "a", 2: "a", 3: "b", 4: "b"})
    assert inst.classes == {"1": {"iou": 1.0, "dice": 1.0}, "2": {"iou": 1.0, "dice": 1.0}}


def test_blockwise_matches_and_shape_errors(gt):
    pred = gt.copy()
    pred[:, 0:4, 7:10] = 9
    whole = evaluate(pred, gt).to_dict()
    chunked = evaluate(da.from_array(pred, chunks=(1, 3, 7)), da.from_array(gt, chunks=(2, 4, 9)))
    assert chunked.to_dict() == whole
    table = contingency(pred, gt)
    assert table.count.sum() == gt.size
    with pytest.raises(ValueError, match="differs from ground truth"):
        evaluate(pred[:1], gt)


def test_large_ids_give_the_same_numbers(gt):
    pred = gt.copy()
    pred[:, 0:4, 7:10] = 9
    small = evaluate(pred, gt).to_dict()
    big = evaluate(pred.astype(np.uint32) * 70_001, gt.astype(np.uint32) * 100_003).to_dict()
    assert big == small
