"""Proofreading operations: what they change, their records, exact undo and redo."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
import zarr

from napari_anatomics.analyze import proofread as pr
from napari_anatomics.analyze.measure import bounding_boxes, measure
from napari_anatomics.io.samples import synthetic_sbfsem

VOXEL = (40.0, 10.0, 10.0)


@pytest.fixture(scope="module")
def synth():
    return synthetic_sbfsem((20, 96, 96), 12, voxel_size=VOXEL, seed=2)


def _as(kind: str, labels: np.ndarray):
    if kind == "numpy":
        return labels.copy()
    z = zarr.create_array(store={}, shape=labels.shape, chunks=(8, 40, 40), dtype=labels.dtype)
    z[:] = labels
    return z


def _check_round_trip(arr, before: np.ndarray, edit: pr.Edit) -> np.ndarray:
    """Changes stay inside the edit's box; undo restores exactly; redo re-applies."""
    after = np.asarray(arr[:]).copy()
    changed = after != before
    assert changed.sum() == edit.n_voxels
    if edit.bbox is not None:
        outside = changed.copy()
        outside[edit.bbox] = False
        assert not outside.any()
    pr.undo(arr, edit)
    np.testing.assert_array_equal(np.asarray(arr[:]), before)
    pr.redo(arr, edit)
    np.testing.assert_array_equal(np.asarray(arr[:]), after)
    pr.undo(arr, edit)
    return after


@pytest.mark.parametrize("kind", ["numpy", "zarr"])
def test_delete(synth, kind):
    arr = _as(kind, synth.labels)
    edit = pr.delete(arr, [3, 5])
    assert edit.operation == "delete" and edit.ids == (3, 5) and edit.new_value == 0
    after = _check_round_trip(arr, synth.labels, edit)
    assert not np.isin(after, [3, 5]).any()
    assert edit.n_voxels == np.isin(synth.labels, [3, 5]).sum()
    # Each region is the object's own box, not the whole stack.
    for region in edit.regions:
        assert region.mask.size < synth.labels.size
        assert (region.previous > 0).all()


def test_delete_with_table_matches_scan(synth):
    table = measure(synth.labels, VOXEL)
    a, b = synth.labels.copy(), synth.labels.copy()
    pr.delete(a, 4, index=table)
    pr.delete(b, 4, index={4: bounding_boxes(table)[4]})
    expected = np.where(synth.labels == 4, 0, synth.labels)
    np.testing.assert_array_equal(a, expected)
    np.testing.assert_array_equal(b, expected)
    with pytest.raises(ValueError, match="positive"):
        pr.delete(a, [0])


@pytest.mark.parametrize("kind", ["numpy", "zarr"])
def test_merge(synth, kind):
    arr = _as(kind, synth.labels)
    edit = pr.merge(arr, [7, 2, 9])
    assert edit.new_value == 2 and edit.ids == (7, 9)
    after = _check_round_trip(arr, synth.labels, edit)
    np.testing.assert_array_equal(after == 2, np.isin(synth.labels, [2, 7, 9]))
    pr.merge(arr, [4, 6], into=6)
    assert np.asarray(arr[:])[synth.labels == 4].tolist() == [6] * int((synth.labels == 4).sum())
    with pytest.raises(ValueError, match="two different"):
        pr.merge(arr, [3])


@pytest.mark.parametrize("kind", ["numpy", "zarr"])
def test_remove_small(synth, kind):
    ids, counts = np.unique(synth.labels[synth.labels > 0], return_counts=True)
    cut = int(np.median(counts))
    arr = _as(kind, synth.labels)
    edit = pr.remove_small(arr, cut)
    assert set(edit.ids) == set(ids[counts < cut].tolist())
    after = _check_round_trip(arr, synth.labels, edit)
    left, left_counts = np.unique(after[after > 0], return_counts=True)
    np.testing.assert_array_equal(left, ids[counts >= cut])
    assert left_counts.min() >= cut
    # The same cut in µm³, with a measured table.
    um3 = cut * 40 * 10 * 10 * 1e-9
    table = measure(synth.labels, VOXEL)
    edit2 = pr.remove_small(arr, um3 * (1 - 1e-9), unit="um3", voxel_size=VOXEL, index=table)
    assert edit2.ids == edit.ids
    with pytest.raises(ValueError, match="voxel_size"):
        pr.remove_small(arr, 1.0, unit="um3")


def test_remove_border(synth):
    arr = synth.labels.copy()
    table = measure(synth.labels, VOXEL)
    edit = pr.remove_border(arr)
    assert set(edit.ids) == set(table.loc[table["touches_border"], "id"])
    after = _check_round_trip(arr, synth.labels, edit)
    for face in (after[0], after[-1], after[:, 0], after[:, -1], after[:, :, 0], after[:, :, -1]):
        assert not face.any()
    edit_xy = pr.remove_border(arr, axes="yx", index=table)
    assert set(edit_xy.ids) == set(table.loc[table["touches_border_xy"], "id"])
    assert set(edit_xy.ids) < set(edit.ids)


@pytest.mark.parametrize("kind", ["numpy", "zarr"])
def test_relabel_sequential(kind):
    a = np.zeros((4, 6, 8), np.uint32)
    a[0, :2] = 100
    a[1, 3:] = 7
    a[3, :, :3] = 42
    arr = _as(kind, a)
    edit = pr.relabel_sequential(arr)
    assert edit.mapping == {7: 1, 42: 2, 100: 3}
    out = np.asarray(arr[:])
    np.testing.assert_array_equal(out, np.select([a == 7, a == 42, a == 100], [1, 2, 3], 0))
    pr.undo(arr, edit)
    np.testing.assert_array_equal(np.asarray(arr[:]), a)
    pr.redo(arr, edit)
    np.testing.assert_array_equal(np.asarray(arr[:]), out)


def test_dask_is_refused(synth):
    with pytest.raises(TypeError, match="read-only dask"):
        pr.delete(da.from_array(synth.labels), [1])


def test_2d_numpy_layer_data():
    a = np.zeros((6, 9), np.uint8)
    a[1:3, 1:4] = 4
    a[4:, 5:] = 8
    before = a.copy()
    edit = pr.merge(a, [4, 8])
    assert (a[before > 0] == 4).all() and edit.bbox == (slice(0, 1), slice(4, 6), slice(5, 9))
    pr.undo(a, edit)
    np.testing.assert_array_equal(a, before)
    edit = pr.relabel_sequential(a)
    np.testing.assert_array_equal(a, np.select([before == 4, before == 8], [1, 2], 0))
    pr.undo(a, edit)
    np.testing.assert_array_equal(a, before)
