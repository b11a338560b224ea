"""Merge picked objects and split one from seed points in the Proofread panel, undo/redo."""

from __future__ import annotations

import numpy as np
import pytest

from napari_anatomics.napari.edit_tools import SEEDS
from napari_anatomics.napari.panels.proofread import ProofreadWidget

HANG_MS = 120_000


def _two_balls(shape=(16, 40, 72)):
    z, y, x = np.indices(shape)
    a = (z - 8) ** 2 + (y - 20) ** 2 + (x - 22) ** 2 <= 8**2
    b = (z - 8) ** 2 + (y - 20) ** 2 + (x - 37) ** 2 <= 8**2
    labels = np.zeros(shape, np.uint32)
    labels[a | b] = 5
    labels[1:4, 2:6, 62:68] = 9
    return labels, a, b


@pytest.fixture
def panel(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    labels, a, b = _two_balls()
    viewer.add_labels(labels, name="labels", scale=(40, 40, 40))
    widget = ProofreadWidget(viewer)
    qtbot.addWidget(widget)
    qtbot.waitUntil(lambda: len(widget.frame) == 2, timeout=HANG_MS)
    return viewer, widget, a, b


def _press(layer, key):
    {str(k): f for k, f in layer.keymap.items()}[key](layer)


def test_split_from_seed_points_with_undo_and_redo(panel, qtbot):
    viewer, widget, a, b = panel
    layer = viewer.layers["labels"]
    edits = next(w for w in widget.children() if type(w).__name__ == "EditTools")
    seeds = edits.seeds_layer()
    assert seeds.name == SEEDS and viewer.layers.selection.active is seeds
    # part 1 on the left ball, part 2 on the right one (the layer's own grid: voxels)
    assert tuple(seeds.scale) == tuple(layer.scale)
    seeds.add(np.array([[8, 20, 20], [8, 20, 22]]))
    edits.part.setValue(2)
    seeds.add(np.array([[8, 20, 38]]))
    assert seeds.features["part"].tolist() == [1, 1, 2]
    before = layer.data.copy()
    assert edits.split() == 2, widget.status.text()
    new = int(layer.data.max())
    assert new == 10 and set(np.unique(layer.data)) == {0, 5, 9, 10}
    assert ((layer.data == 5) & a).sum() / a.sum() > 0.95
    assert ((layer.data == 10) & b).sum() / b.sum() > 0.95
    assert len(seeds.data) == 0  # the seeds are used up
    qtbot.waitUntil(lambda: len(widget.frame) == 3, timeout=HANG_MS)
    assert sorted(layer.features["label"]) == [5, 9, 10]
    after = layer.data.copy()
    _press(layer, "Ctrl+Z")
    np.testing.assert_array_equal(layer.data, before)
    qtbot.waitUntil(lambda: len(widget.frame) == 2, timeout=HANG_MS)
    _press(layer, "Ctrl+Shift+Z")
    np.testing.assert_array_equal(layer.data, after)
    qtbot.waitUntil(lambda: len(widget.frame) == 3, timeout=HANG_MS)
    # seeds on two objects, or one part only: refused in one line, nothing changed
    assert edits.split({1: np.array([[8, 20, 22]]), 2: np.array([[2, 3, 64]])}) == 0
    assert "two or more parts on one object" in widget.status.text()
    assert edits.split({1: np.array([[8, 20, 22]])}) == 0
    np.testing.assert_array_equal(layer.data, after)


def test_merge_selected_rows(panel, qtbot):
    viewer, widget, *_ = panel
    layer = viewer.layers["labels"]
    edits = next(w for w in widget.children() if type(w).__name__ == "EditTools")
    assert edits.merge_selected() == 0  # nothing selected: refused
    widget.table.selectAll()
    assert edits.merge_selected() == 1
    assert set(np.unique(layer.data)) == {0, 5}
    qtbot.waitUntil(lambda: len(widget.frame) == 1, timeout=HANG_MS)
    assert layer.features["label"].tolist() == [5]
    _press(layer, "Ctrl+Z")
    assert set(np.unique(layer.data)) == {0, 5, 9}
    qtbot.waitUntil(lambda: len(widget.frame) == 2, timeout=HANG_MS)
