"""Per-instance statistics: exact numbers on hand-made and synthetic volumes."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pandas as pd
import pytest
import zarr

from napari_anatomics.analyze.measure import (
    COLUMNS,
    bounding_boxes,
    index_instances,
    measure,
    measure_job,
    read_csv,
    summarize,
    write_csv,
)
from napari_anatomics.core.progress import Cancelled, CancelToken, Progress
from napari_anatomics.core.volume import Volume
from napari_anatomics.io.samples import synthetic_sbfsem

VOXEL = (40.0, 10.0, 10.0)  # z, y, x nm: anisotropic like SBFSEM
VOXEL_UM3 = 40 * 10 * 10 * 1e-9


@pytest.fixture
def boxes() -> np.ndarray:
    """Three boxes with known sizes; id 9 touches the x border only, id 5 the z border."""
    a = np.zeros((10, 20, 30), np.uint16)
    a[2:5, 3:9, 4:14] = 1  # 3 x 6 x 10 = 180 voxels, inside
    a[0:4, 10:12, 20:23] = 5  # 4 x 2 x 3 = 24 voxels, touches z = 0
    a[6:8, 14:19, 25:30] = 9  # 2 x 5 x 5 = 50 voxels, touches x end
    return a


def test_boxes_exact(boxes):
    t = measure(boxes, VOXEL)
    assert list(t.columns) == [c for c in COLUMNS if c not in ("class", "mean_intensity")]
    assert t["id"].tolist() == [1, 5, 9]
    assert t["voxels"].tolist() == [180, 24, 50]
    # Float columns are float64 products and ratios of exact counts: a few ulps
    # (~1e-16 relative) from the reference, far inside allclose's rtol=1e-7.
    np.testing.assert_allclose(t["volume_um3"], np.array([180, 24, 50]) * VOXEL_UM3)
    bbox = t[["bbox_z0", "bbox_y0", "bbox_x0", "bbox_z1", "bbox_y1", "bbox_x1"]].to_numpy()
    np.testing.assert_array_equal(
        bbox, [[2, 3, 4, 5, 9, 14], [0, 10, 20, 4, 12, 23], [6, 14, 25, 8, 19, 30]]
    )
    np.testing.assert_allclose(t.loc[0, ["centroid_z", "centroid_y", "centroid_x"]], [3, 5.5, 8.5])
    np.testing.assert_allclose(
        t.loc[0, ["centroid_z_um", "centroid_y_um", "centroid_x_um"]], [0.12, 0.055, 0.085]
    )
    assert t["touches_border"].tolist() == [False, True, True]
    assert t["touches_border_xy"].tolist() == [False, False, True]
    np.testing.assert_allclose(t["eq_diameter_um"], np.cbrt(6 * t["volume_um3"] / np.pi))
    # A box's faces are exact: 2/3 of its true area.
    area = 2 * (6 * 10 * 100 + 3 * 10 * 400 + 3 * 6 * 400) * 1e-6
    assert t.loc[0, "surface_um2"] == pytest.approx(area * 2 / 3)


def test_surface_of_a_sphere_in_anisotropic_voxels():
    r_nm = 400.0  # the bounds below are the voxelization's error, not rounding
    z, y, x = np.ogrid[-12:13, -45:46, -45:46]
    ball = ((z * 40.0) ** 2 + (y * 10.0) ** 2 + (x * 10.0) ** 2 <= r_nm**2).astype(np.uint8)
    t = measure(ball, VOXEL)
    assert t.loc[0, "voxels"] == np.count_nonzero(ball)
    assert t.loc[0, "volume_um3"] == pytest.approx(4 / 3 * np.pi * 0.4**3, rel=0.03)
    assert t.loc[0, "surface_um2"] == pytest.approx(4 * np.pi * 0.4**2, rel=0.05)
    assert not t.loc[0, "touches_border"]


def test_synthetic_counts_classes_and_intensity():
    s = synthetic_sbfsem((24, 96, 96), 10, voxel_size=VOXEL, n_classes=2, seed=3)
    t = measure(s.labels, s.voxel_size, image=s.image, classes=s.semantic)
    ids, counts = np.unique(s.labels[s.labels > 0], return_counts=True)
    np.testing.assert_array_equal(t["id"], ids)
    np.testing.assert_array_equal(t["voxels"], counts)
    np.testing.assert_allclose(t["volume_um3"], counts * VOXEL_UM3)
    np.testing.assert_array_equal(t["class"], s.classes[ids])
    means = [s.image[s.labels == i].mean() for i in ids]
    np.testing.assert_allclose(t["mean_intensity"], means)
    named = measure(s.labels, s.voxel_size, classes=s.classes, class_names=["chl", "mito"])
    assert named["class"].tolist() == [["chl", "mito"][c - 1] for c in s.classes[ids]]
    mapped = measure(s.labels, s.voxel_size, classes={int(ids[0]): "first"})
    assert mapped["class"].tolist() == ["first"] + ["unknown"] * (len(ids) - 1)


def test_blockwise_equals_in_memory(monkeypatch):
    s = synthetic_sbfsem((20, 64, 80), 12, voxel_size=VOXEL, n_classes=2, seed=5)
    whole = measure(s.labels, s.voxel_size, image=s.image, classes=s.semantic)
    monkeypatch.setattr("napari_anatomics.analyze.blockstats.SLAB_VOXELS", 1)  # a block per chunk
    chunked = measure(
        da.from_array(s.labels, chunks=(7, 23, 31)),
        s.voxel_size,
        image=da.from_array(s.image, chunks=(5, 64, 40)),
        classes=da.from_array(s.semantic, chunks=(20, 10, 80)),
    )
    # Exact by design: every partial sum is an integer or a float64 sum of integer grey
    # values (see napari_anatomics.analyze.blockstats), so any blocking gives the same bits.
    pd.testing.assert_frame_equal(whole, chunked, check_exact=True)
    store = zarr.create_array(store={}, shape=s.labels.shape, chunks=(4, 64, 80), dtype="u4")
    store[:] = s.labels
    monkeypatch.setattr("napari_anatomics.analyze.blockstats.SLAB_VOXELS", 4 * 64 * 80)
    slabs = measure(store, s.voxel_size, image=s.image, classes=s.semantic)
    pd.testing.assert_frame_equal(whole, slabs, check_exact=True)


def test_large_ids_and_volume_input():
    a = np.zeros((4, 5, 6), np.uint64)
    a[1, 1:3, 1:4] = 2**40
    a[3, 4, 5] = 7
    t = measure(Volume(a, (1000.0, 1000.0, 1000.0)))
    assert t["id"].tolist() == [7, 2**40]
    assert t["voxels"].tolist() == [1, 6]
    assert t["volume_um3"].tolist() == [1.0, 6.0]  # 1 µm³ voxels: whole numbers, exact
    assert index_instances(a)["voxels"].tolist() == [1, 6]
    assert bounding_boxes(t)[7] == (slice(3, 4), slice(4, 5), slice(5, 6))


def test_empty_and_invalid_inputs(boxes):
    assert len(measure(np.zeros((3, 4, 5), np.uint8), VOXEL)) == 0
    with pytest.raises(ValueError, match="voxel size"):
        measure(boxes)
    with pytest.raises(TypeError, match="integers"):
        measure(boxes.astype(float), VOXEL)
    with pytest.raises(ValueError, match="does not match"):
        measure(boxes, VOXEL, image=np.zeros((2, 2, 2)))


def test_job_progress_and_cancel(boxes, monkeypatch):
    monkeypatch.setattr("napari_anatomics.analyze.blockstats.SLAB_VOXELS", 20 * 30 * 3)
    events = []
    job = measure_job(boxes, VOXEL)
    while True:
        try:
            events.append(next(job))
        except StopIteration as stop:
            table = stop.value
            break
    assert all(isinstance(e, Progress) for e in events)
    assert [e.step for e in events] == [1, 2, 3, 4] and events[-1].total == 4
    pd.testing.assert_frame_equal(table, measure(boxes, VOXEL), check_exact=True)
    token = CancelToken()
    job = measure_job(boxes, VOXEL, cancel=token)
    next(job)
    token.cancel()
    with pytest.raises(Cancelled):
        next(job)


def test_summarize(boxes):
    t = measure(boxes, VOXEL, classes={1: "chl", 5: "chl", 9: "mito"})
    s = summarize(t, boxes.shape, VOXEL)
    assert s.index.tolist() == ["chl", "mito", "all"]
    assert s.loc["all", "count"] == 3 and s.loc["chl", "count"] == 2
    vols = np.array([180, 24, 50]) * VOXEL_UM3
    # float64 sums and statistics of three values: approx's default rel=1e-6 is ample
    assert s.loc["all", "sum_volume_um3"] == pytest.approx(vols.sum())
    assert s.loc["all", "median_volume_um3"] == pytest.approx(50 * VOXEL_UM3)
    assert s.loc["all", "std_volume_um3"] == pytest.approx(vols.std())
    assert s.loc["all", "stack_volume_um3"] == pytest.approx(boxes.size * VOXEL_UM3)
    assert s.loc["chl", "volume_fraction"] == pytest.approx(204 / boxes.size)
    assert s.loc["mito", "max_volume_um3"] == pytest.approx(50 * VOXEL_UM3)


def test_write_csv_atomic_with_provenance(boxes, tmp_path):
    t = measure(boxes, VOXEL)
    out = tmp_path / "stats.csv"
    out.write_text("old")
    write_csv(t, out, VOXEL, "labels.tif")
    text = out.read_text().splitlines()
    assert "# voxel_size_nm_xyz: 10,10,40" in text and "# source: labels.tif" in text
    back = read_csv(out)
    # CSV text: the shortest repr of each float, parsed back by pandas' default
    # ("high") converter, which may be an ulp off: 1e-12 relative
    pd.testing.assert_frame_equal(back, t, check_exact=False, rtol=1e-12, atol=0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["stats.csv"]
    with pytest.raises(FileNotFoundError, match="does not exist"):
        write_csv(t, tmp_path / "missing" / "x.csv", VOXEL)


def test_real_labels(real_data_dir):
    import tifffile

    labels = tifffile.imread(real_data_dir / "labels.tif")
    t = measure(labels, (40.0, 10.0, 10.0))
    ids, counts = np.unique(labels[labels > 0], return_counts=True)
    np.testing.assert_array_equal(t["id"], ids)
    np.testing.assert_array_equal(t["voxels"], counts)
    assert len(t) == 61
    assert t["touches_border_xy"].any() and not t["touches_border_xy"].all()


@pytest.mark.parametrize("chunks", [None, (5, 33, 40)])
def test_both_strategies_agree(monkeypatch, chunks):
    s = synthetic_sbfsem((20, 64, 80), 12, voxel_size=VOXEL, n_classes=2, seed=7)
    labels = s.labels if chunks is None else da.from_array(s.labels, chunks=chunks)
    monkeypatch.setattr("napari_anatomics.analyze.blockstats.SLAB_VOXELS", 5 * 33 * 40)
    tables = []
    # Force "voxels", then "objects", then a mix (blocks with only low ids by object).
    for per_object in (10**9, 0, 1000):
        monkeypatch.setattr("napari_anatomics.analyze.blockstats.VOXELS_PER_OBJECT", per_object)
        tables.append(measure(labels, VOXEL, image=s.image, classes=s.semantic))
    # Exact by design: both strategies give the same integer partial sums.
    pd.testing.assert_frame_equal(tables[0], tables[1], check_exact=True)
    pd.testing.assert_frame_equal(tables[0], tables[2], check_exact=True)
    quick = measure(labels, VOXEL, image=s.image, classes=s.semantic, surface=False)
    pd.testing.assert_frame_equal(quick, tables[0].drop(columns="surface_um2"), check_exact=True)


def test_csv_has_normal_permissions(boxes, tmp_path):
    import os

    mask = os.umask(0o022)
    os.umask(mask)
    out = write_csv(measure(boxes, VOXEL), tmp_path / "p.csv", VOXEL)
    assert out.stat().st_mode & 0o777 == 0o666 & ~mask
