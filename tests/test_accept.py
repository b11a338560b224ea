"""Accepting a preview into the labels: only unpainted voxels, new ids, one undoable edit."""

from __future__ import annotations

import numpy as np
import pytest
import zarr

from napari_anatomics.analyze.accept import accept
from napari_anatomics.analyze.proofread import redo, undo


def _user_and_preview():
    labels = np.zeros((3, 8, 10), np.uint16)
    labels[1, 0:3, 0:3] = 7  # painted by the user on slice 1
    preview = np.zeros((8, 10), np.uint32)
    preview[1:4, 1:4] = 5  # overlaps the user's object
    preview[5:7, 5:9] = 9
    return labels, preview


def test_whole_slice_fills_only_unpainted_voxels_with_new_ids():
    labels, preview = _user_and_preview()
    before = labels.copy()
    edit = accept(labels, preview, (slice(1, 2), slice(None), slice(None)))
    assert edit.ids == (8, 9)  # above the labels' largest id, one per previewed object
    assert (labels[1, 0:3, 0:3] == 7).all()  # the user's paint is kept
    assert (labels[1][(preview == 5) & (before[1] == 0)] == 8).all()
    assert (labels[1][preview == 9] == 9).all()
    assert edit.n_voxels == 9 - 4 + 8
    assert (labels[[0, 2]] == 0).all()
    undo(labels, edit)
    np.testing.assert_array_equal(labels, before)
    redo(labels, edit)
    assert (labels[1][preview == 9] == 9).all()


def test_one_object_and_semantic_classes():
    labels, preview = _user_and_preview()
    edit = accept(labels, preview, (slice(2, 3), slice(None), slice(None)), object_id=9,
                  next_id=20)
    assert edit.ids == (20,)
    assert np.count_nonzero(labels[2]) == 8 and set(np.unique(labels[2])) == {0, 20}
    with pytest.raises(ValueError, match="object 4 is not in the preview"):
        accept(labels, preview, (slice(2, 3), slice(None), slice(None)), object_id=4)
    classes = np.where(preview > 0, 2, 0).astype(np.uint8)
    edit = accept(labels, classes, (slice(0, 1), slice(None), slice(None)), task="semantic")
    assert edit.ids == (2,) and (labels[0][classes > 0] == 2).all()


def test_zarr_labels_box_and_checks(tmp_path):
    labels, preview = _user_and_preview()
    store = zarr.open_array(str(tmp_path / "l.zarr"), mode="w", shape=labels.shape,
                            chunks=(1, 4, 4), dtype=labels.dtype)
    store[:] = labels
    box = np.zeros((2, 4, 5), np.uint32)
    box[:, 1:3, 1:4] = 3
    edit = accept(store, box, (slice(1, 3), slice(4, 8), slice(5, 10)))
    assert edit.ids == (8,) and np.count_nonzero(store[1:3, 4:8, 5:10] == 8) == 12
    with pytest.raises(ValueError, match="does not cover the region"):
        accept(store, preview, (slice(1, 3), slice(None), slice(None)))
    small = np.zeros((1, 2, 2), np.uint8)
    small[0, 0, 0] = 255
    with pytest.raises(ValueError, match="do not fit"):
        accept(small, np.ones((2, 2), np.uint8), (slice(0, 1), slice(None), slice(None)))
    # everything already painted: nothing changes
    full = np.ones((1, 2, 2), np.uint8)
    assert accept(full, np.ones((2, 2)), (slice(0, 1), slice(None), slice(None))).regions == []
