"""The live loop in the viewer: the preview layer follows training and the view; slices
painted while training runs join the running job; a previewed slice is accepted (pytest-qt)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from conftest import tiny_training
from napari_anatomics.io.samples import load_sample
from napari_anatomics.napari.layers import add_volume, layer_volume
from napari_anatomics.napari.live_preview import LiveView
from napari_anatomics.napari.loop import LoopWidget
from napari_anatomics.napari.model_picker import prepare_torch
from napari_anatomics.napari.panels.proofread import ProofreadWidget
from napari_anatomics.napari.panels.train import TrainWidget
from napari_anatomics.train.live import LiveSession

prepare_torch()
#: Only detects a hang (no speed target).
HANG_MS = 120_000
#: A crop of the bundled sample: (z, y, x).
CROP = (slice(0, 6), slice(40, 168), slice(200, 392))
#: Painted when training starts; the others are unknown.
PAINTED = (0, 1, 2)


@pytest.fixture
def loop(make_napari_viewer, qtbot, tmp_path):
    viewer = make_napari_viewer()
    image, labels = load_sample()
    truth = np.asarray(labels.data[CROP])
    user = np.zeros_like(truth)
    user[list(PAINTED)] = truth[list(PAINTED)]
    image.data = image.data[CROP]
    add_volume(viewer, image, "image", name="image")
    viewer.add_labels(user, name="labels", scale=image.voxel_size)
    widget = LoopWidget(viewer)
    qtbot.addWidget(widget)
    panel = widget.panels[TrainWidget]
    tiny_training(panel, tmp_path, 100_000, "live", width=8)  # runs until stopped
    return viewer, widget, panel, truth


def _slice(viewer, z: int) -> None:
    viewer.dims.set_point(0, z * viewer.layers["image"].scale[0])


def test_preview_follows_training_and_the_view_painting_joins_the_run(loop, qtbot):
    viewer, widget, panel, truth = loop
    labels = viewer.layers["labels"]
    _slice(viewer, 4)
    assert panel.preview_box.isChecked()  # on by default
    panel.start()
    live = panel.live
    live.session.publish_every_s = 0.2
    # The preview layer is added (empty) as the run starts, not when a preview arrives
    # (adding a layer holds the event loop); the first preview fills it on the visible
    # slice, then it updates as training goes on.
    qtbot.waitUntil(lambda: live.layer is not None, timeout=HANG_MS)
    layer = live.layer
    assert layer in viewer.layers
    assert live.shown is not None or not np.asarray(layer.data).any()
    assert viewer.layers.selection.active is labels
    qtbot.waitUntil(lambda: live.shown is not None, timeout=HANG_MS)
    assert live.layer is layer
    assert layer.name == "labels preview" and layer.metadata["iteration"] > 0
    assert all(layer not in p.labels_combo._layers for p in widget.panels.values()
               if hasattr(p, "labels_combo"))  # no panel offers it to work on
    assert layer.data.shape == (1, *truth.shape[1:])
    np.testing.assert_allclose(layer.translate[0], 4 * labels.scale[0])
    assert viewer.layers.selection.active is labels  # painting goes on in the labels
    first = live.shown
    qtbot.waitUntil(lambda: live.shown.version > first.version, timeout=HANG_MS)
    assert live.shown.iteration > first.iteration
    # Another slice: the preview moves there.
    _slice(viewer, 5)
    qtbot.waitUntil(lambda: live.shown.region[0] == slice(5, 6), timeout=HANG_MS)
    np.testing.assert_allclose(layer.translate[0], 5 * labels.scale[0])

    # Slice 3 painted while training runs (a stroke's worth through the public API)
    # joins the running job: the sampler takes it and draws crops on it.
    z = 3
    with labels.block_history():
        where = np.nonzero(truth[z])
        labels.data_setitem((np.full(where[0].size, z), *where), truth[z][where])
    qtbot.waitUntil(lambda: bool(live.session.joined), timeout=HANG_MS)
    assert live.session.joined[0].joined == (z,)
    qtbot.waitUntil(lambda: "slice 3 joined the training" in panel.status.text(),
                    timeout=HANG_MS)
    qtbot.waitUntil(lambda: live.session.crops(z) > 0, timeout=HANG_MS)

    # Shift+K keeps the previewed slice 5 in its unpainted voxels: one undo step.
    qtbot.waitUntil(lambda: live.shown.labels.any(), timeout=HANG_MS)
    kept = live.shown
    assert widget.accept_preview_slice() == np.count_nonzero(kept.labels)
    assert (labels.data[5] > 0).sum() == np.count_nonzero(kept.labels)
    qtbot.waitUntil(lambda: any(5 in j.joined for j in live.session.joined), timeout=HANG_MS)
    labels.undo()
    assert not labels.data[5].any()
    labels.redo()
    assert (labels.data[5] > 0).sum() == np.count_nonzero(kept.labels)

    # The 3D view: the preview is the stack's depth in view (here all of it), while training.
    proofread = widget.panels[ProofreadWidget]  # measured the accepted slice: done
    qtbot.waitUntil(lambda: not proofread.busy and not proofread._timer.isActive(),
                    timeout=HANG_MS)  # fmt: skip
    viewer.dims.ndisplay = 3
    qtbot.waitUntil(lambda: live.shown.region[0] == slice(0, 6), timeout=HANG_MS)
    assert layer.data.shape == truth.shape and layer.translate[0] == 0
    assert live.shown.iteration > kept.iteration

    # Switched off: the job stops publishing and the layer hides.
    panel.preview_box.setChecked(False)
    assert not live.session.enabled and not layer.visible
    panel.stop()
    qtbot.waitUntil(lambda: panel.model_folder is not None, timeout=HANG_MS)
    config = json.loads((Path(panel.model_folder) / "config.json").read_text())
    joined = config["training"]["slices_joined"]
    assert joined[0]["joined"] == [3] and joined[1]["joined"] == [5]


def test_accept_says_what_is_missing_and_a_3d_view_asks_for_a_box(loop):
    viewer, widget, panel, _ = loop
    assert widget.accept_preview_object() is None
    assert "no preview" in panel.status.text()
    image = panel.image_combo.layer()
    live = LiveView(viewer, LiveSession(), layer_volume(image), viewer.layers["labels"],
                    reference=image)
    viewer.dims.set_point(0, 4 * image.scale[0])
    assert live.visible() == (4, None)
    viewer.dims.ndisplay = 3  # the stack's depth around the camera's centre
    assert live.visible() == (None, (slice(0, 6), slice(0, 128), slice(0, 192)))
    live.close()
