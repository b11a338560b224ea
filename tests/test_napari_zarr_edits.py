"""Proofreading labels on disk (zarr, as Auto-label writes them): edits in a worker, the
table measured again only where they changed, napari's undo and redo, the file in step."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import zarr

from napari_anatomics.analyze.measure import measure
from napari_anatomics.core.chunkcache import CachedArray
from napari_anatomics.napari.panels.proofread import ProofreadWidget

HANG_MS = 120_000
VOXEL = (40.0, 40.0, 40.0)


def _scene(shape=(16, 64, 96)) -> np.ndarray:
    z, y, x = np.indices(shape)
    labels = np.zeros(shape, np.uint32)
    labels[((z - 8) ** 2 + (y - 30) ** 2 + (x - 22) ** 2 <= 64)
           | ((z - 8) ** 2 + (y - 30) ** 2 + (x - 37) ** 2 <= 64)] = 5  # fmt: skip
    labels[1:4, 2:6, 62:68] = 9
    labels[3:12, 45:60, 60:90] = 11
    labels[10:16, 2:20, 70:95] = 12
    return labels


@pytest.fixture
def on_disk(make_napari_viewer, qtbot, tmp_path):
    labels = _scene()
    store = zarr.create_array(tmp_path / "labels.zarr", shape=labels.shape, chunks=(8, 32, 32),
                              dtype=labels.dtype)  # fmt: skip
    store[:] = labels
    viewer = make_napari_viewer()
    layer = viewer.add_labels(CachedArray(store), name="labels", scale=VOXEL)
    widget = ProofreadWidget(viewer)
    qtbot.addWidget(widget)
    qtbot.waitUntil(lambda: len(widget.frame) == 4, timeout=HANG_MS)
    return viewer, widget, layer, store


def in_step(widget, layer) -> bool:
    """The table and the layer's features are those of measuring the whole array now."""
    if widget.busy or widget.edits.busy or widget._timer.isActive():
        return False
    full = measure(np.asarray(layer.data), VOXEL)
    table = widget.frame[full.columns]
    same = table.shape == full.shape and np.allclose(
        table.to_numpy(float), full.to_numpy(float)
    )  # fmt: skip
    return same and sorted(layer.features["label"]) == full["id"].tolist()


def _edit(qtbot, widget, action):
    """Run a panel action on labels on disk: it returns at once, ``edited`` follows."""
    with qtbot.waitSignal(widget.edited, timeout=HANG_MS) as signal:
        assert action() is None  # computed in a worker
    return signal.args[0]


def test_delete_merge_split_undo_redo_on_disk(on_disk, qtbot):
    viewer, widget, layer, store = on_disk
    original = np.asarray(layer.data).copy()
    edit = _edit(qtbot, widget, lambda: widget.delete_ids([9]))
    assert edit.operation == "delete" and edit.ids == (9,)
    assert 9 not in set(widget.frame["id"])  # its row left at once
    qtbot.waitUntil(lambda: in_step(widget, layer), timeout=HANG_MS)
    assert widget.description.startswith("Measuring the changes")  # not the whole array
    edit = _edit(qtbot, widget, lambda: widget.merge_ids([11, 12]))
    assert edit.ids == (12,)
    qtbot.waitUntil(lambda: in_step(widget, layer), timeout=HANG_MS)
    assert widget.frame.set_index("id").loc[11, "voxels"] == (
        (original == 11) | (original == 12)).sum()  # fmt: skip
    seeds = {1: np.array([[8, 30, 20]]), 2: np.array([[8, 30, 39]])}
    edits = next(w for w in widget.children() if type(w).__name__ == "EditTools")
    edit = _edit(qtbot, widget, lambda: edits.split(seeds))
    assert edit.operation == "split"
    assert int(np.asarray(layer.data).max()) == 12  # the id merged away is free again
    qtbot.waitUntil(lambda: in_step(widget, layer), timeout=HANG_MS)
    assert sorted(widget.frame["id"]) == [5, 11, 12]
    after = np.asarray(layer.data).copy()
    for _ in range(3):
        widget.undo()
    np.testing.assert_array_equal(np.asarray(layer.data), original)
    np.testing.assert_array_equal(layer._slice.image.raw, original[viewer.dims.current_step[0]])
    qtbot.waitUntil(lambda: in_step(widget, layer), timeout=HANG_MS)
    for _ in range(3):
        widget.redo()
    np.testing.assert_array_equal(np.asarray(layer.data), after)
    qtbot.waitUntil(lambda: in_step(widget, layer), timeout=HANG_MS)
    assert layer.data.flush(timeout=60)
    np.testing.assert_array_equal(store[:], after)


def test_edits_queue_in_order(on_disk, qtbot):
    _, widget, layer, store = on_disk
    widget.delete_ids([9])
    widget.merge_ids([5, 11])  # asked while the delete runs: waits for it
    widget.delete_ids([5])  # the merged object, found by the box the merge widened
    qtbot.waitUntil(lambda: not widget.edits.busy, timeout=HANG_MS)
    assert set(np.unique(np.asarray(layer.data))) == {0, 12}
    qtbot.waitUntil(lambda: in_step(widget, layer), timeout=HANG_MS)
    assert widget.frame["id"].tolist() == [12]
    assert layer.data.flush(timeout=60)
    assert set(np.unique(store[:])) == {0, 12}


def test_a_refused_edit_says_so(on_disk, qtbot):
    _, widget, layer, _ = on_disk
    before = np.asarray(layer.data).copy()
    widget.merge_ids([5, 5])  # one id: merge refuses
    qtbot.waitUntil(lambda: not widget.edits.busy, timeout=HANG_MS)
    assert widget.status.text() and isinstance(widget.frame, pd.DataFrame)
    np.testing.assert_array_equal(np.asarray(layer.data), before)
