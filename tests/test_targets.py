"""Targets, loss masks, augmentation and crop sampling."""

from __future__ import annotations

import cc3d
import dask.array as da
import numpy as np
import pytest
import torch
from scipy import ndimage as ndi

from napari_anatomics.train.augment import Augmenter, paste_object
from napari_anatomics.train.losses import instance_loss
from napari_anatomics.train.sampler import CropSampler, prepare_data, reduce_image, reduce_labels
from napari_anatomics.train.targets import (
    annotated_slices,
    contact_band,
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
    # normalized by each object's own maximum: 1 up to float32 rounding (approx's
    # rel=1e-6 is ~8 ulps); background is set to 0, exactly
    assert dist.max() == pytest.approx(1.0)
    assert dist.min() >= 0
    assert (dist[labels == 0] == 0).all()
    # Each object reaches 1 at its own core.
    assert dist[labels == 7].max() == pytest.approx(1.0)
    assert dist[labels == 9].max() == pytest.approx(1.0)


def test_contact_band_marks_where_objects_touch_and_weights_the_loss():
    labels = touching_pair()
    band = contact_band(labels)
    # Both sides of the shared edge (x = 14/15), nothing on the free edges.
    assert band[:, 5:15, 14:16].all()
    assert band.sum() == band[:, 4:16, 13:17].sum()
    assert not band[:, 10, 5].any() and not band[:, 4, 10].any()
    wide = contact_band(labels, width=2)
    assert wide[:, 8, 13:17].all() and not wide[:, 8, 12].any() and (wide >= band).all()
    assert not contact_band(np.where(labels == 9, 0, labels)).any()

    data = prepare_data(da.from_array(np.zeros(labels.shape, np.uint8)), da.from_array(labels))
    rng = np.random.default_rng(0)
    plain = CropSampler(data, (3, 20, 30), "instance", rng)
    _, target, mask = plain.crop((0, 0, 0), augment=False)
    assert mask.dtype == bool and mask.all()
    weighted = CropSampler(data, (3, 20, 30), "instance", rng, contact_weight=5.0)
    _, target_w, weights = weighted.crop((0, 0, 0), augment=False)
    np.testing.assert_array_equal(target_w, target)  # exact: the same 0/1 targets
    assert weights.dtype == np.float32
    # exact by design: the weights are the constants 5 and 1, assigned
    assert set(np.unique(weights[band])) == {5.0} and set(np.unique(weights[~band])) == {1.0}

    # The weights scale the loss where they sit: a wrong contact costs 5x more.
    logits = torch.from_numpy(np.where(target > 0.5, 4.0, -4.0).astype(np.float32))[None]
    wrong = logits.clone()
    wrong[0, 1][torch.from_numpy(band)] = -4.0  # contact boundary missed
    base = instance_loss(wrong, torch.from_numpy(target)[None], torch.from_numpy(mask)[None])
    heavy = instance_loss(wrong, torch.from_numpy(target)[None], torch.from_numpy(weights)[None])
    assert heavy > base


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
        # exact by design: flips and rotations only move values
        np.testing.assert_array_equal(image, lab)
        np.testing.assert_array_equal(mask, lab % 2 == 0)
    image, lab, _ = Augmenter(elastic=2.0)(rng, labels.astype(np.float32), labels, labels > 0)
    assert image.shape == lab.shape == labels.shape
    assert set(np.unique(lab)) <= set(np.unique(labels))


def test_brightness_and_contrast_stay_in_their_ranges():
    rng = np.random.default_rng(5)
    image = np.linspace(-2, 2, 2 * 8 * 8, dtype=np.float32).reshape(2, 8, 8)
    aug = Augmenter(flips=False, rotations=False, brightness=0.5, contrast=0.5)
    gains, shifts = [], []
    for _ in range(200):
        out, _, _ = aug(rng, image, np.zeros(image.shape, np.uint8), np.ones(image.shape, bool))
        gain, shift = np.polyfit(image.ravel(), out.ravel(), 1)  # out = gain * image + shift
        gains.append(gain)
        shifts.append(shift)
    assert 0.5 - 1e-4 <= min(gains) < 0.6 and 1.4 < max(gains) <= 1.5 + 1e-4
    assert -0.5 - 1e-4 <= min(shifts) < -0.4 and 0.4 < max(shifts) <= 0.5 + 1e-4


def test_paste_object_lands_on_painted_background_only():
    rng = np.random.default_rng(0)
    image = np.zeros((2, 12, 12), np.float32)
    labels = np.zeros((2, 12, 12), np.uint8)
    labels[:, :6] = 3  # an object over the top half
    mask = np.ones((2, 12, 12), bool)
    mask[1] = False  # slice 1 unpainted
    source = np.full((2, 5, 5), 7.0, np.float32)
    obj = np.zeros((2, 5, 5), bool)
    obj[:, 1:4, 1:4] = True  # a 3x3 square in both slices
    seen = set()
    for _ in range(30):
        out, lab = paste_object(rng, image, labels, mask, source, obj)
        pasted = lab == 4  # a new id, one above the crop's largest
        assert pasted[0].sum() <= 9 and not pasted[1].any()  # not on unpainted voxels
        assert not (pasted & (labels == 3)).any()  # not over the object already there
        # exact by design: pasting copies values
        np.testing.assert_array_equal(out[pasted], 7.0)
        np.testing.assert_array_equal(out[~pasted], 0.0)
        assert (lab[labels == 3] == 3).all()
        seen.add(int(pasted.sum()))
    assert 9 in seen and 0 in seen  # all of it on free ground, or all over the object
    assert (image == 0).all() and labels.max() == 3  # inputs untouched
    _, lab = paste_object(rng, image, labels, mask, source, obj, value=1)
    assert set(np.unique(lab)) <= {0, 1, 3}
    with pytest.raises(ValueError, match="z extent"):
        paste_object(rng, image, labels, mask, source[:1], obj[:1])


def test_reduce_image_and_labels():
    data = da.from_array(np.arange(2 * 4 * 4, dtype=np.uint8).reshape(2, 4, 4), chunks=2)
    mean = reduce_image(data, (1, 2, 2)).compute()
    assert mean.shape == (2, 2, 2)
    assert mean[0, 0, 0] == pytest.approx(np.mean([0, 1, 4, 5]))  # a float32 mean: ulps
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
        # float32 crop vs a float64 reference of values |x| < 4: ulps (< 1e-6) apart
        np.testing.assert_allclose(img[0], expect, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("balance", [True, False])
def test_sampler_draws_small_objects_as_often_as_large_ones(balance):
    # One 96 x 96 object and one 16 x 16 object (1/36 of the painted area).
    labels = np.zeros((2, 256, 256), np.uint16)
    labels[:, 16:112, 16:112] = 1
    labels[:, 192:208, 192:208] = 2  # one 16 x 16 sampling cell
    data = prepare_data(da.from_array(np.zeros_like(labels, np.uint8)), da.from_array(labels))
    rng = np.random.default_rng(1)
    sampler = CropSampler(data, (1, 32, 32), "instance", rng, fg_fraction=1.0, balance=balance)
    small = sum(sampler._foreground_voxel()[1] >= 192 for _ in range(2000)) / 2000
    if balance:
        assert 0.45 < small < 0.55
    else:
        assert small < 0.05


def _one_bright_square(shape: tuple[int, int, int]):
    """Training data with one bright 12 x 12 object in a large dark painted background, and
    an augmenter that leaves crops as they are (so pasted objects are whole squares)."""
    labels = np.zeros(shape, np.uint16)
    labels[:, 10:22, 10:22] = 1
    image = np.where(labels > 0, 200, 50).astype(np.uint8)
    data = prepare_data(da.from_array(image), da.from_array(labels))
    return data, Augmenter(flips=False, rotations=False, brightness=0, contrast=0)


def test_sampler_pastes_painted_objects_into_crops():
    data, aug = _one_bright_square((2, 96, 96))
    rng = np.random.default_rng(2)
    sampler = CropSampler(data, (1, 32, 32), "instance", rng, augmenter=aug, paste=1.0)
    bright = 0
    for _ in range(20):
        img, target, _ = sampler.crop((0, 60, 60))  # a box without the object
        fg = target[0, 0] > 0
        # The pasted object is the bright voxels, and its foreground target.
        np.testing.assert_array_equal(fg, img[0, 0] > img[0, 0].min())
        bright += int(fg.sum())
    assert bright == 20 * 144  # the whole 12 x 12 object, every time
    plain = CropSampler(data, (1, 32, 32), "instance", rng, augmenter=aug)
    assert plain.crop((0, 60, 60))[1][0].max() == 0


@pytest.mark.parametrize("paste", [0.5, 1.0, 2.0, 2.5])
def test_copy_paste_is_the_mean_number_of_objects_pasted_per_crop(paste):
    # Crops of 64 x 64 far from the object, on dark painted background.
    data, aug = _one_bright_square((1, 160, 160))
    rng = np.random.default_rng(3)
    sampler = CropSampler(data, (1, 64, 64), "instance", rng, augmenter=aug, paste=paste)
    counts = []
    for _ in range(60):
        fg = sampler.crop((0, 90, 90))[1][0, 0] > 0  # the foreground target
        # Objects pasted apart are whole 12 x 12 squares: count them as connected pieces.
        pieces = cc3d.connected_components(fg.astype(np.uint8), connectivity=4)
        sizes = np.bincount(pieces.ravel())[1:]
        counts.append(len(sizes) if (sizes == 144).all() else None)
    apart = [c for c in counts if c is not None]
    whole = int(paste)
    assert set(apart) <= {whole, whole + 1}  # never fewer than the whole part, one more at most
    if paste == whole:
        assert set(apart) == {whole}
    else:
        share = np.mean([c == whole + 1 for c in apart])
        assert 0.3 < share < 0.7, share  # one more in about half the crops
    assert len(apart) > 30  # most placements do not touch


def test_zoomed_crops_show_real_data_at_window_size():
    labels = np.zeros((4, 128, 128), np.uint16)
    labels[:, 40:88, 40:88] = 5  # a 48 x 48 square in the middle
    image = (labels * 40).astype(np.uint8)
    data = prepare_data(da.from_array(image), da.from_array(labels))
    rng = np.random.default_rng(0)
    aug = Augmenter(flips=False, rotations=False, brightness=0, contrast=0, scale=1.0)
    sampler = CropSampler(data, (2, 32, 32), "instance", rng, augmenter=aug)
    zooms = []
    for _ in range(20):
        state = rng.bit_generator.state
        zoom = aug.zoom(rng)
        rng.bit_generator.state = state  # the sampler draws the same zoom
        img, target, mask = sampler.crop((1, 48, 48))
        zooms.append(zoom)
        assert img.shape == (1, 2, 32, 32) and target.shape == (2, 2, 32, 32) and mask.all()
        # Same centre: the object's area grows with the zoom (x0.5 to x2 here).
        area = target[0, 0].sum()
        expected = min(48 * zoom, 32) ** 2
        assert abs(area - expected) <= 4 * 32 * 1.5, (zoom, area, expected)
        # Labels are never blended: the image is 0 or 200 exactly where they say.
        assert set(np.unique(target[0])) <= {0.0, 1.0}
    assert min(zooms) < 0.8 and max(zooms) > 1.25


def test_resample_crop_keeps_ids():
    from napari_anatomics.train.augment import resample_crop

    labels = np.zeros((1, 40, 40), np.uint16)
    labels[0, :20] = 3
    labels[0, 20:] = 9
    image, out, mask = resample_crop(labels.astype(np.float32), labels, labels > 0, (20, 20))
    assert out.shape == (1, 20, 20) and set(np.unique(out)) == {3, 9}
    assert (out[0, :10] == 3).all() and (out[0, 10:] == 9).all() and mask.all()
    # linear interpolation of a constant, in float64 then stored as float32: 3.0 to the
    # last float32 bit; allclose's rtol=1e-7 is below one float32 ulp
    np.testing.assert_allclose(image[0, 0], 3.0)
