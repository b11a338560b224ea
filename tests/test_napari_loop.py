"""The whole loop in one dock: steps as tabs, hand-offs select their step, the keys."""

from __future__ import annotations

import numpy as np
import pytest

from napari_anatomics.io.samples import synthetic_sbfsem
from napari_anatomics.napari.handoff import send_to_train
from napari_anatomics.napari.layers import add_volume
from napari_anatomics.napari.loop import SHORTCUTS, STEPS, LoopWidget
from napari_anatomics.napari.panels.proofread import ProofreadWidget
from napari_anatomics.napari.panels.train import TrainWidget


@pytest.fixture
def loop(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    s = synthetic_sbfsem((8, 48, 64), 5, voxel_size=(40, 40, 40), seed=1)
    add_volume(viewer, s.volumes()[0], "image", name="image")
    labels = s.labels.copy()
    labels[[1, 2, 5]] = 0  # slices 1, 2 and 5 not painted
    viewer.add_labels(labels, name="labels", scale=(40, 40, 40))
    widget = LoopWidget(viewer)
    qtbot.addWidget(widget)
    return viewer, widget


def _key(viewer, key):
    return {str(k): f for k, f in viewer.keymap.items()}[key]


def test_one_dock_holds_every_step(loop):
    viewer, widget = loop
    assert [widget.tabs.tabText(i) for i in range(widget.tabs.count())] == [s[0] for s in STEPS]
    assert {k for _, _, kinds in STEPS for k in kinds} == set(widget.panels)
    # a hand-off to Train (Proofread's "Use for training") brings the Train step forward
    widget.tabs.setCurrentIndex(0)
    panel = send_to_train(viewer, viewer.layers["labels"], viewer.layers["image"])
    assert panel is widget.panels[TrainWidget]
    assert widget.tabs.tabText(widget.tabs.currentIndex()) == "3 Train"
    assert panel.labels_combo.layer() is viewer.layers["labels"]


def test_keys_jump_to_unpainted_slices_delete_and_switch_steps(loop, qtbot):
    viewer, widget = loop
    layer = viewer.layers["labels"]
    viewer.dims.set_point(0, 0.0)
    _key(viewer, "N")(viewer)
    assert viewer.dims.point[0] == 40.0  # slice 1
    _key(viewer, "N")(viewer)
    assert viewer.dims.point[0] == 80.0  # slice 2
    _key(viewer, "N")(viewer)
    assert viewer.dims.point[0] == 200.0  # slice 5, then back round
    # Delete removes napari's selected label from the proofread labels, Ctrl+Z brings it back
    proofread = widget.panels[ProofreadWidget]
    proofread.labels_combo.set_layer(layer)
    target = int(np.unique(layer.data[layer.data > 0])[0])
    layer.selected_label = target
    before = layer.data.copy()
    _key(viewer, "Delete")(viewer)
    assert not (layer.data == target).any()
    {str(k): f for k, f in layer.keymap.items()}["Ctrl+Z"](layer)
    np.testing.assert_array_equal(layer.data, before)
    _key(viewer, "Ctrl+5")(viewer)
    assert widget.tabs.currentIndex() == 4
    from qtpy.QtWidgets import QLabel

    shown = " ".join(w.text() for w in widget.findChildren(QLabel))
    assert all(what in shown for what, _ in SHORTCUTS.values())  # the keys are listed
    widget.close()
    assert "N" not in {str(k) for k in viewer.keymap}
