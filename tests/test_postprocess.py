"""Blockwise post-processing: exact connected components, seeded watershed, stitching."""

from __future__ import annotations

import cc3d
import numpy as np
import pytest
from scipy import ndimage as ndi
from skimage.segmentation import watershed

from napari_anatomics.core.progress import run_job
from napari_anatomics.io.probabilities import encode
from napari_anatomics.io.samples import synthetic_sbfsem
from napari_anatomics.segment.config import SEGMENT, SegmentConfig
from napari_anatomics.segment.postprocess import postprocess
from napari_anatomics.segment.stitching import neighbour_offsets


def same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    """True when two label images are equal up to renumbering of the ids."""
    if not np.array_equal(a > 0, b > 0):
        return False
    pairs = np.unique(np.stack([a.ravel(), b.ravel()]), axis=1)
    return pairs.shape[1] == len(np.unique(a)) == len(np.unique(b))


def class_maps(cls: np.ndarray, n_classes: int) -> np.ndarray:
    """uint8 probability maps (C, Z, Y, X) whose argmax is ``cls``."""
    p = np.full((n_classes, *cls.shape), 30, np.uint8)
    for c in range(n_classes):
        p[c][cls == c] = 200
    return p


def blobs(shape, seed):
    noise = ndi.gaussian_filter(np.random.default_rng(seed).normal(size=shape), 1.5)
    cls = np.zeros(shape, np.uint8)
    cls[noise > 0.08] = 1
    cls[noise < -0.1] = 2
    return cls


@pytest.mark.parametrize("connectivity", [6, 18, 26])
def test_semantic_components_equal_whole_volume(tmp_path, connectivity):
    cls = blobs((20, 60, 70), seed=connectivity)
    result = run_job(
        postprocess(
            class_maps(cls, 3),
            tmp_path / "l.zarr",
            SegmentConfig(connectivity=connectivity),
            task="semantic",
            block=(8, 16, 16),
            voxel_size=(40, 10, 10),
        )
    )
    labels = result[:]
    expected = cc3d.connected_components(cls, connectivity=connectivity)
    assert result.dtype == np.uint32
    assert result.attrs["n_objects"] == expected.max() > 50
    assert same_partition(labels, expected)
    assert np.array_equal(np.unique(labels), np.arange(expected.max() + 1))  # sequential
    assert result.attrs["voxel_size_nm"] == [40, 10, 10]
    recorded = dict(result.attrs["postprocess"])
    assert SegmentConfig(**{k: recorded[k] for k in SEGMENT}) == SegmentConfig(
        connectivity=connectivity
    )
    # each object keeps its class
    label_classes = np.asarray(result.attrs["label_classes"])
    assert np.array_equal(label_classes[labels], cls)


def test_semantic_min_size_and_thresholds(tmp_path):
    cls = np.zeros((10, 40, 40), np.uint8)
    cls[2:8, 5:30, 14:18] = 1  # 600 voxels crossing block borders
    cls[1, 1, 1] = 1  # 1 voxel
    cls[5:7, 35:38, 35:38] = 2  # 18 voxels
    maps = class_maps(cls, 3)
    big = run_job(
        postprocess(maps, tmp_path / "a.zarr", task="semantic", min_size=20, block=(4, 8, 8))
    )[:]
    assert big.max() == 1 and np.count_nonzero(big) == 600
    kept = cls == 1
    kept[1, 1, 1] = False
    assert np.array_equal(big > 0, kept)
    # per-class thresholds: class 2 needs more than it has (200/255 = 0.78)
    strict = run_job(
        postprocess(
            maps, tmp_path / "b.zarr", task="semantic", thresholds=[0.5, 0.9], block=(4, 8, 8)
        )
    )
    assert strict.attrs["n_objects"] == 2 and not np.any(strict[:][cls == 2])
    with pytest.raises(ValueError, match="one threshold per class"):
        run_job(postprocess(maps, tmp_path / "c.zarr", task="semantic", thresholds=[0.5]))
    with pytest.raises(ValueError, match="semantic' or 'instance"):
        run_job(postprocess(maps, tmp_path / "d.zarr"))


def instance_maps(labels: np.ndarray) -> np.ndarray:
    """Foreground and (smooth) boundary maps (float32) drawn from instance labels."""
    fg = (labels > 0).astype(np.float32)
    eroded = ndi.grey_erosion(labels, size=(3, 3, 3))
    dilated = ndi.grey_dilation(labels, size=(3, 3, 3))
    boundary = ((labels > 0) & ((eroded != labels) | (dilated != labels))).astype(np.float32)
    boundary = ndi.gaussian_filter(boundary, 1.0)  # smooth, like a network's output
    return np.stack([fg, boundary / boundary.max()])


def test_instance_watershed_counts_and_stitches(tmp_path):
    truth = synthetic_sbfsem((16, 96, 96), 14, voxel_size=(40, 20, 20), seed=5)
    result = run_job(
        postprocess(
            instance_maps(truth.labels),
            tmp_path / "i.zarr",
            task="instance",
            block=(8, 32, 32),
            halo=(4, 16, 16),
        )
    )
    labels = result[:]
    assert result.attrs["n_objects"] == truth.n_objects == labels.max()
    # identical to one whole-volume seeded watershed on the same maps
    fg, boundary = instance_maps(truth.labels)
    seeds = cc3d.connected_components((fg >= 0.8) & (boundary <= 0.3), connectivity=26)
    assert same_partition(labels, watershed(boundary, seeds, mask=fg >= 0.5))
    assert np.array_equal(labels > 0, truth.labels > 0)
    # many objects cross block borders and still have one id each
    crossing = [
        i
        for i in range(1, truth.n_objects + 1)
        if len(
            {
                tuple(np.floor_divide(np.argwhere(truth.labels == i), (8, 32, 32)).tolist()[k])
                for k in (0, -1)
            }
        )
        > 1
    ]
    assert len(crossing) >= 3


def test_touching_objects_across_borders(tmp_path):
    # two slabs touching along y = 20, both crossing the z, y and x block borders
    labels = np.zeros((12, 40, 40), np.uint32)
    labels[2:10, 6:20, 4:36] = 1
    labels[2:10, 20:34, 4:36] = 2
    labels[5, 37, 37] = 3  # a one-voxel object
    maps = instance_maps(labels)
    maps[1][labels == 3] = 0
    result = run_job(
        postprocess(
            maps,
            tmp_path / "t.zarr",
            task="instance",
            block=(6, 16, 16),
            halo=(2, 8, 8),
            connectivity=6,
        )
    )
    assert result.attrs["n_objects"] == 3
    assert same_partition(result[:], labels)
    pruned = run_job(
        postprocess(
            maps,
            tmp_path / "t.zarr",
            task="instance",
            min_size=2,
            block=(6, 16, 16),
            halo=(2, 8, 8),
            overwrite=True,
        )
    )
    assert pruned.attrs["n_objects"] == 2 and not pruned[:][5, 37, 37]
    with pytest.raises(FileExistsError):
        run_job(postprocess(maps, tmp_path / "t.zarr", task="instance"))


def test_instance_distance_channel_splits_touching_objects(tmp_path):
    labels = np.zeros((8, 30, 30), np.uint32)
    labels[1:7, 3:14, 3:27] = 1
    labels[1:7, 14:27, 3:27] = 2  # touching, and no boundary is predicted between them
    dist = np.zeros(labels.shape)
    for i in (1, 2):
        edt = ndi.distance_transform_edt(np.pad(labels == i, 1))[1:-1, 1:-1, 1:-1]
        dist += edt / edt.max()
    fg, boundary = (labels > 0).astype(np.float32), np.zeros(labels.shape, np.float32)
    maps = encode(np.stack([fg, boundary, dist]).astype(np.float32), "uint8")
    kwargs = {"task": "instance", "block": (4, 16, 16), "halo": (2, 8, 8)}
    out = run_job(
        postprocess(
            maps, tmp_path / "d.zarr", **kwargs, channels=["foreground", "boundary", "distance"]
        )
    )
    assert out.attrs["n_objects"] == 2
    assert same_partition(out[:], labels)
    merged = run_job(postprocess(maps[:2], tmp_path / "e.zarr", **kwargs))
    assert merged.attrs["n_objects"] == 1


def test_neighbour_offsets():
    assert [len(neighbour_offsets(c)) for c in (6, 18, 26)] == [3, 9, 13]
    with pytest.raises(ValueError, match="connectivity"):
        neighbour_offsets(8)


def test_bundled_sample_components_match_whole_volume(tmp_path):
    from napari_anatomics.io.samples import load_sample

    _, painted = load_sample()
    mask = np.asarray(painted.data) > 0
    maps = np.stack([~mask, mask]).astype(np.uint8) * 255
    result = run_job(
        postprocess(
            maps,
            tmp_path / "s.zarr",
            task="semantic",
            block=(4, 128, 128),
            voxel_size=painted.voxel_size,
        )
    )
    expected = cc3d.connected_components(mask, connectivity=26)
    assert result.attrs["n_objects"] == expected.max()
    assert same_partition(result[:], expected)


def test_seed_erosion_splits_a_neck_the_boundary_map_missed(tmp_path):
    # Two 20 x 20 discs joined by a 4-voxel-wide neck; the boundary map only
    # outlines the pair, so plain seeds are one object.
    labels = np.zeros((6, 40, 80), np.uint32)
    yy, xx = np.mgrid[:40, :80]
    for cx in (20, 58):
        labels[:, (yy - 20) ** 2 + (xx - cx) ** 2 <= 100] = 1
    labels[:, 18:22, 28:50] = 1
    fg = labels > 0
    edge = fg & ~ndi.binary_erosion(fg, np.ones((1, 3, 3)), border_value=1)
    maps = (np.stack([fg, edge]) * 255).astype(np.uint8)
    kw = {"task": "instance", "block": (3, 16, 16), "halo": (2, 8, 8)}
    plain = run_job(postprocess(maps, tmp_path / "p.zarr", **kw))
    assert plain.attrs["n_objects"] == 1
    split = run_job(postprocess(maps, tmp_path / "s.zarr", seed_erosion=4, **kw))
    labels = split[:]
    assert split.attrs["n_objects"] == 2
    assert labels[3, 20, 20] != labels[3, 20, 58] and np.array_equal(labels > 0, fg)
    # Blockwise seeds equal whole-volume seeds (the distance transform is cut to a
    # halo); where the two fronts meet on the flat neck is a watershed tie.
    whole = run_job(
        postprocess(maps, tmp_path / "w.zarr", seed_erosion=4, task="instance", block=(6, 40, 80))
    )
    assert whole.attrs["n_objects"] == 2
    discs = np.r_[0:30, 48:80]
    assert same_partition(labels[..., discs], whole[:][..., discs])
    assert split.attrs["postprocess"]["seed_erosion"] == 4
    with pytest.raises(ValueError, match="seed_erosion"):
        run_job(postprocess(maps, tmp_path / "x.zarr", seed_erosion=-1, **kw))


def test_min_seed_size_drops_specks_counted_over_the_whole_volume(tmp_path):
    # One disc per slice; the boundary map also rings a small patch inside it, whose
    # seed would split it off. The patch's seed crosses the z and x block borders.
    labels = np.zeros((6, 40, 40), np.uint32)
    yy, xx = np.mgrid[:40, :40]
    labels[:, (yy - 20) ** 2 + (xx - 20) ** 2 <= 225] = 1
    fg = labels > 0
    edge = fg & ~ndi.binary_erosion(fg, np.ones((1, 3, 3)), border_value=1)
    r2 = (yy - 20) ** 2 + (xx - 16) ** 2
    ring = (r2 >= 9) & (r2 <= 25)
    edge[:, ring] = True
    speck = int((r2 < 9).sum()) * 6
    maps = (np.stack([fg, edge]) * 255).astype(np.uint8)
    kw = {"task": "instance", "block": (3, 16, 16), "halo": (2, 8, 8)}
    plain = run_job(postprocess(maps, tmp_path / "p.zarr", **kw))
    assert plain.attrs["n_objects"] == 2
    kept = run_job(postprocess(maps, tmp_path / "k.zarr", min_seed_size=speck, **kw))
    assert kept.attrs["n_objects"] == 2  # the speck's pieces add up to exactly `speck`
    dropped = run_job(postprocess(maps, tmp_path / "d.zarr", min_seed_size=speck + 1, **kw))
    assert dropped.attrs["n_objects"] == 1
    assert np.array_equal(dropped[:] > 0, fg)
    assert dropped.attrs["postprocess"]["min_seed_size"] == speck + 1
    with pytest.raises(ValueError, match="min_seed_size"):
        run_job(postprocess(maps, tmp_path / "x.zarr", min_seed_size=-1, **kw))


def test_seed_depth_splits_a_neck_thin_for_its_objects_whatever_their_size(tmp_path):
    # Two pairs of discs, each pair joined by a neck a third as wide as its discs:
    # radius 8 with a 5-voxel neck, radius 24 with a 15-voxel neck. No fixed
    # erosion splits both pairs without erasing the small discs' seeds.
    labels = np.zeros((4, 60, 200), np.uint32)
    yy, xx = np.mgrid[:60, :200]
    for cx, r in ((14, 8), (38, 8), (80, 24), (150, 24)):
        labels[:, (yy - 30) ** 2 + (xx - cx) ** 2 <= r * r] = 1
    labels[:, 28:33, 14:38] = 1
    labels[:, 23:38, 80:150] = 1
    fg = labels > 0
    edge = fg & ~ndi.binary_erosion(fg, np.ones((1, 3, 3)), border_value=1)
    maps = (np.stack([fg, edge]) * 255).astype(np.uint8)
    kw = {"task": "instance", "block": (2, 32, 32), "halo": (2, 8, 8)}
    for erosion, n in ((2, 3), (8, 2)):  # big pair stays one / small discs vanish
        fixed = run_job(
            postprocess(maps, tmp_path / f"e{erosion}.zarr", seed_erosion=erosion, **kw)
        )
        assert fixed.attrs["n_objects"] == n
    depth = {"seed_depth": 0.5, "seed_depth_radius": 30}
    split = run_job(postprocess(maps, tmp_path / "d.zarr", **depth, **kw))
    labels = split[:]
    assert split.attrs["n_objects"] == 4
    assert len({labels[2, 30, cx] for cx in (14, 38, 80, 150)}) == 4
    assert np.array_equal(labels > 0, fg)
    # Blockwise seeds equal whole-volume seeds: the partitions agree off the necks.
    whole = run_job(
        postprocess(maps, tmp_path / "w.zarr", **depth, task="instance", block=(4, 60, 200))
    )
    discs = np.r_[0:20, 32:86, 144:200]
    assert same_partition(labels[..., discs], whole[:][..., discs])
    assert split.attrs["postprocess"]["seed_depth"] == 0.5
    with pytest.raises(ValueError, match="seed_depth"):
        run_job(postprocess(maps, tmp_path / "x.zarr", seed_depth=1.5, **kw))


def test_seed_depth_leaves_a_small_object_next_to_a_big_one(tmp_path):
    # A 5-voxel disc 3 voxels from a 24-voxel one: the big disc is deep, but it is
    # another seed region, so the small disc keeps its seed.
    labels = np.zeros((3, 64, 72), np.uint32)
    yy, xx = np.mgrid[:64, :72]
    labels[:, (yy - 32) ** 2 + (xx - 28) ** 2 <= 24**2] = 1
    labels[:, (yy - 32) ** 2 + (xx - 60) ** 2 <= 5**2] = 2
    fg = labels > 0
    edge = fg & ~ndi.binary_erosion(fg, np.ones((1, 3, 3)), border_value=1)
    maps = (np.stack([fg, edge]) * 255).astype(np.uint8)
    out = run_job(
        postprocess(
            maps, tmp_path / "s.zarr", task="instance", seed_depth=0.5, seed_depth_radius=30
        )
    )
    assert out.attrs["n_objects"] == 2
    assert same_partition(out[:], labels)
