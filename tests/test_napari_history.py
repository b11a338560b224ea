"""Edits on a zarr-backed Labels layer redraw only what changed (no re-slice); undo, redo."""

from __future__ import annotations

import numpy as np
import pytest
from napari.components import Dims
from napari.layers import Labels

from napari_anatomics.napari.history import apply_edit

zarr = pytest.importorskip("zarr")


@pytest.fixture
def zarr_layer(monkeypatch):
    data = np.zeros((8, 64, 64), np.uint32)
    data[2:6, 5:20, 5:20] = 3
    data[2:6, 30:50, 30:50] = 7
    array = zarr.create_array(zarr.storage.MemoryStore(), shape=data.shape, chunks=(4, 32, 32),
                              dtype="uint32", fill_value=0)  # fmt: skip
    array[:] = data
    layer = Labels(array)
    dims = Dims(ndim=3, range=tuple((0, s, 1) for s in data.shape))
    dims.current_step = (3, 0, 0)
    layer._slice_dims(dims)  # the view: plane z = 3 (what a viewer does)
    slices = []
    monkeypatch.setattr(layer, "set_view_slice", lambda: slices.append(1))
    return layer, data, slices


def test_edits_redraw_the_changed_part_without_reading_the_slice_again(zarr_layer):
    layer, data, slices = zarr_layer
    shown = layer._slice.image.raw  # what napari shows of plane 3 (test-only peek)
    assert shown[10, 10] == 3
    edit = apply_edit(layer, "delete", [3])
    assert edit.ids == (3,) and not (layer.data[:] == 3).any()
    assert shown[10, 10] == 0 and shown[40, 40] == 7  # the view shows the deletion
    apply_edit(layer, "merge", [7, 9], into=9)
    assert (layer.data[2:6, 30:50, 30:50] == 9).all() and shown[40, 40] == 9
    assert slices == []  # the whole slice was never read again
    layer.undo()
    layer.undo()
    np.testing.assert_array_equal(layer.data[:], data)
    layer.redo()
    assert not (layer.data[:] == 3).any()
