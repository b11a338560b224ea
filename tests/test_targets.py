"""Targets, loss masks, augmentation and crop sampling."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
from scipy import ndimage as ndi

from napari_anatomics.augment import Augmenter
from napari_anatomics.sampling import CropSampler, prepare_data, reduce_image, reduce_labels
from napari_anatomics.targets import (
    annotated_slices,
    instance_targets,
    loss_mask,
    semantic_targets,
)


def touching_pair() -> np.ndarray:
    labels = np.zeros((3, 20, 30), np.uint16)
    labels[:, 5:15, 5:15] = 7
    labels[:, 5:15, 15:25] = 9  # touches object 7 along x = 14/15
    return labels


def test_instance_boundary_keeps_touching_objects_apart():
    labels = touching_pair()
    fg, bd = instance_targets(labels)
    assert fg.sum() == (labels > 0).sum()
    # The shared edge is boundary on both sides, the far edges too.
    assert bd[:, 8, 14].all() and bd[:, 8, 15].all()
    assert not bd[:, 10, 10].any()
    seeds, n = ndi.label((fg > 0) & (bd == 0))
    assert n == 2
    assert set(np.unique(labels[seeds > 0])) == {7, 9}


def test_boundary_width_and_distance():
    labels = touching_pair()
    narrow = instance_targets(labels, boundary_width=1)[1].sum()
    wide = instance_targets(labels, boundary_width=2)[1].sum()
    assert wide > narrow
    maps = instance_targets(labels, distance=True)
    assert maps.shape == (3, 3, 20, 30)
    dist = maps[2]
    assert dist.max() == pytest.approx(1.0)
    assert dist.min() >= 0
    assert (dist[labels == 0] == 0).all()
    # Each object reaches 1 at its own core.
    assert dist[labels == 7].max() == pytest.approx(1.0)
    assert dist[labels == 9].max() == pytest.approx(1.0)


def test_semantic_targets_map_values_and_flag_unknown():
    labels = np.array([[[0, 3, 5, 4, 255]]])
    classes, known = semantic_targets(labels, [5, 3], ignore_value=255)
    assert classes.tolist() == [[[0, 2, 1, 0, 0]]]
    assert known.tolist() == [[[True, True, True, False, True]]]


def test_annotated_slices_and_mask():
    labels = np.zeros((4, 5, 5), np.uint8)
    labels[1, 0, 0] = 1
    labels[3, 2, 2] = 255
    annotated = annotated_slices(labels)
    assert annotated.tolist() == [False, True, False, True]
    mask = loss_mask(labels, annotated, ignore_value=255)
    assert mask.sum() == 2 * 25 - 1
    assert not mask[0].any() and not mask[3, 2, 2]
    with pytest.raises(ValueError, match="one annotated flag per slice"):
        loss_mask(labels, [True])


def test_augmenter_moves_image_labels_and_mask_together():
    rng = np.random.default_rng(3)
    labels = np.arange(2 * 6 * 6).reshape(2, 6, 6)
    aug = Augmenter(brightness=0, contrast=0, elastic=0)
    for _ in range(10):
        image, lab, mask = aug(rng, labels.astype(np.float32), labels, labels % 2 == 0)
        np.testing.assert_array_equal(image, lab)
        np.testing.assert_array_equal(mask, lab % 2 == 0)
    image, lab, _ = Augmenter(elastic=2.0)(rng, labels.astype(np.float32), labels, labels > 0)
    assert image.shape == lab.shape == labels.shape
    assert set(np.unique(lab)) <= set(np.unique(labels))


def test_reduce_image_and_labels():
    data = da.from_array(np.arange(2 * 4 * 4, dtype=np.uint8).reshape(2, 4, 4), chunks=2)
    mean = reduce_image(data, (1, 2, 2)).compute()
    assert mean.shape == (2, 2, 2)
    assert mean[0, 0, 0] == pytest.approx(np.mean([0, 1, 4, 5]))
    centre = reduce_labels(data, (1, 2, 2)).compute()
    assert centre[0, 0, 0] == data[0, 1, 1].compute()


@pytest.mark.parametrize("cache_mb", [1024.0, 0.0])
def test_sampler_crops_hold_annotation_and_objects(cache_mb):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (10, 64, 64)).astype(np.uint8)
    labels = np.zeros((10, 64, 64), np.uint16)
    labels[4, 40:48, 50:58] = 3  # one small object on the only painted slice
    data = prepare_data(
        da.from_array(image, chunks=(2, 32, 32)), da.from_array(labels), cache_mb=cache_mb
    )
    assert data.cached == (cache_mb > 0)
    assert data.annotated.tolist() == [z == 4 for z in range(10)]
    sampler = CropSampler(data, (4, 16, 16), "instance", rng, fg_fraction=1.0)
    for _ in range(10):
        origin = sampler.draw()
        img, target, mask = sampler.crop(origin, augment=False)
        assert img.shape == (1, 4, 16, 16) and target.shape == (2, 4, 16, 16)
        assert origin[0] <= 4 < origin[0] + 4
        assert mask.any() and target[0].any()
        z0, y0, x0 = origin
        expect = (image[z0 : z0 + 4, y0 : y0 + 16, x0 : x0 + 16] - data.normalization["mean"]) / (
            data.normalization["std"]
        )
        np.testing.assert_allclose(img[0], expect, rtol=1e-5, atol=1e-5)
