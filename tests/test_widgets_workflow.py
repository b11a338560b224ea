"""The napari workflow widgets driven end to end on the bundled sample (pytest-qt)."""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import zarr
from napari.utils.notifications import notification_manager
from qtpy.QtCore import QTimer

import napari_anatomics.napari.jobs as jobs_module
from conftest import tiny_training
from napari_anatomics.analyze.measure import read_csv
from napari_anatomics.analyze.meshes import read_ply
from napari_anatomics.core.chunkcache import CachedArray
from napari_anatomics.core.progress import CancelToken, run_job
from napari_anatomics.io.read import open_volume
from napari_anatomics.io.samples import load_sample
from napari_anatomics.models.config import ModelConfig
from napari_anatomics.models.store import load_model
from napari_anatomics.napari.handoff import send_to_train
from napari_anatomics.napari.layers import (
    LayerCombo,
    PathEdit,
    add_volume,
    layer_volume,
    pick_volume,
)
from napari_anatomics.napari.model_picker import prepare_torch
from napari_anatomics.napari.panels.annotate import AnnotateWidget, annotated_slices
from napari_anatomics.napari.panels.autolabel import AutoLabelWidget, LiveLabels
from napari_anatomics.napari.panels.export import LABEL_FORMATS, ExportWidget
from napari_anatomics.napari.panels.proofread import ProofreadWidget
from napari_anatomics.napari.panels.train import TrainWidget
from napari_anatomics.napari.plot import HistogramPlot, LinePlot, nice_ticks
from napari_anatomics.train.loop import TrainConfig, train

# Training in this process after a viewer made its OpenGL context must not load
# triton (a segfault under Mesa): importing napari_anatomics.napari keeps it out;
# and torch._dynamo is imported up front, as the panels do when they open.
assert sys.modules["triton"] is None
prepare_torch()

#: qtbot timeouts only detect a hang, they are no speed target: two minutes is far
#: above any step here on a slow or busy machine, and a hang still fails.
HANG_MS = 120_000

#: A small crop of the sample keeps every step fast: (z, y, x).
CROP = (slice(0, 6), slice(40, 168), slice(200, 392))


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    """A 3-iteration instance model trained headless on the crop (a few seconds)."""
    image, labels = load_sample()
    image.data, labels.data = image.data[CROP], labels.data[CROP]
    config = TrainConfig(
        task="instance",
        window=(4, 32, 32),
        iterations=3,
        batch=1,
        threads=1,
        width=8,
        precision="float32",  # any model will do: not about the precision path
        architecture="resunet3d",
        tune_decoding=False,
    )
    return run_job(train(image, labels, config, tmp_path_factory.mktemp("models") / "tiny"))


@pytest.fixture
def sample_viewer(make_napari_viewer):
    """A viewer with a crop of the bundled sample as image + labels layers."""
    viewer = make_napari_viewer()
    image, labels = load_sample()
    image.data, labels.data = image.data[CROP], labels.data[CROP]
    add_volume(viewer, image, "image", name="image")
    add_volume(viewer, labels, "labels", name="labels")
    return viewer


def test_layers_carry_voxel_size(sample_viewer):
    image = sample_viewer.layers["image"]
    assert tuple(image.scale) == (40.0, 40.0, 40.0)
    volume = layer_volume(sample_viewer.layers["labels"])
    assert volume.voxel_size == (40.0, 40.0, 40.0)
    assert volume.shape == (6, 128, 192)


def test_pick_volume_from_layer_or_file(sample_viewer, qtbot, tmp_path):
    from napari.layers import Image

    from napari_anatomics.io.write import write_tif

    combo, path = LayerCombo(sample_viewer, Image), PathEdit()
    qtbot.addWidget(combo)
    qtbot.addWidget(path)
    assert pick_volume(combo, path).name == "image"
    data = np.asarray(layer_volume(sample_viewer.layers["image"]).data)[:, :20, :30]
    write_tif(data, tmp_path / "small.tif", voxel_size=(40.0, 10.0, 10.0))
    path.setText(str(tmp_path / "small.tif"))
    picked = pick_volume(combo, path)
    assert picked.shape == (6, 20, 30) and picked.voxel_size == (40.0, 10.0, 10.0)
    path.setText(str(tmp_path / "missing.tif"))
    with pytest.raises(ValueError, match="does not exist"):
        pick_volume(combo, path)


def test_annotate_semantic_layer_classes_and_slices(sample_viewer, qtbot):
    widget = AnnotateWidget(sample_viewer)
    qtbot.addWidget(widget)
    widget.image_combo.set_layer(sample_viewer.layers["image"])
    widget.task_combo.setCurrentText("semantic")
    widget.add_class("mitochondrion")
    assert widget.classes() == {1: "chloroplast", 2: "mitochondrion"}
    layer = widget.new_labels_layer()
    assert layer.data.shape == (6, 128, 192)
    assert tuple(layer.scale) == (40.0, 40.0, 40.0)
    assert layer.metadata["task"] == "semantic"
    assert list(layer.features["class"]) == ["background", "chloroplast", "mitochondrion"]
    widget.paint_class(1)
    assert layer.selected_label == 2 and layer.mode == "paint"
    assert widget.update_slices() == []
    # paint two slices through the layer's history, as a brush stroke would
    layer.data_setitem((np.array([1, 1]), np.array([5, 6]), np.array([7, 7])), 2)
    layer.data_setitem((np.array([4]), np.array([50]), np.array([60])), 1)
    qtbot.waitUntil(lambda: widget.slice_list.count() == 2, timeout=HANG_MS)
    assert layer.metadata["annotated_slices"] == [1, 4]
    assert "2 of 6 slices annotated" in widget.summary.text()
    assert "unknown" in widget.summary.text()
    # the Train panel takes the task and the named classes from this layer
    train_panel = TrainWidget(sample_viewer)
    qtbot.addWidget(train_panel)
    train_panel.labels_combo.set_layer(layer)
    assert train_panel.task_combo.currentText() == "semantic"
    config = train_panel.config(layer)
    assert config.class_values == [1, 2]
    assert config.class_names == ["chloroplast", "mitochondrion"]


def test_annotate_instance_next_free_id(sample_viewer, qtbot):
    widget = AnnotateWidget(sample_viewer)
    qtbot.addWidget(widget)
    widget.labels_combo.set_layer(sample_viewer.layers["labels"])
    labels = sample_viewer.layers["labels"]
    assert widget.next_free_id() == int(labels.data.max()) + 1
    assert labels.selected_label == int(labels.data.max()) + 1
    counts = annotated_slices(labels.data)
    assert widget.update_slices() == [int(z) for z in np.flatnonzero(counts)]


def test_line_plot_and_histogram(qtbot):
    plot = LinePlot("loss", "iteration")
    qtbot.addWidget(plot)
    for i in range(5):
        plot.append("loss", i, 1.0 / (i + 1))
    plot.append("loss", 5, float("nan"))
    assert plot.series("loss").shape == (5, 2)
    plot.resize(300, 200)
    plot.grab()  # paints without error
    hist = HistogramPlot("volumes")
    qtbot.addWidget(hist)
    hist.set_values([1, 2, 2, 3, 10], bins=3)
    assert hist.counts.tolist() == [4, 0, 1]
    hist.grab()
    # ticks are float multiples of 0.2: ulps off the decimals, approx's rel=1e-6
    assert nice_ticks(0, 1, 5) == pytest.approx([0, 0.2, 0.4, 0.6, 0.8, 1.0])


def _double_click(layer, data_coords):
    """Call the layer's double-click callbacks as napari does, at ``data_coords``."""
    world = layer.data_to_world(np.asarray(data_coords, dtype=float))
    event = SimpleNamespace(
        position=tuple(world),
        view_direction=None,
        dims_displayed=[1, 2],
        modifiers=(),
        type="mouse_double_click",
    )
    for callback in list(layer.mouse_double_click_callbacks):
        callback(layer, event)


def _press(layer, key: str) -> None:
    """What pressing ``key`` over the layer runs (its own key bindings)."""
    {str(k): f for k, f in layer.keymap.items()}[key](layer)


def test_proofread_table_delete_undo_cutoff_border(sample_viewer, qtbot):
    widget = ProofreadWidget(sample_viewer)
    qtbot.addWidget(widget)
    layer = sample_viewer.layers["labels"]
    assert widget.labels_combo.layer() is layer
    ids = np.unique(layer.data)
    ids = ids[ids > 0]
    qtbot.waitUntil(lambda: len(widget.frame) == ids.size, timeout=HANG_MS)
    assert widget.table.rowCount() == ids.size
    assert f"{ids.size} objects" in widget.totals.text()
    assert widget.histogram.counts.sum() == ids.size
    # the stats are the layer's features: a label column and the measurements in µm
    assert layer.features["label"].tolist() == widget.frame["id"].tolist()
    assert layer.features["volume_um3"].tolist() == widget.frame["volume_um3"].tolist()
    assert "bbox_z0" not in layer.features

    # click a row: the viewer centres on the object and shows it alone
    biggest = int(widget.frame.sort_values("volume_um3").iloc[-1]["id"])
    widget.focus_object(biggest)
    z, y, x = np.argwhere(layer.data == biggest).mean(axis=0)
    # the view snaps to a slice (within 40 nm); the camera's centre is the object's
    # mean in nm (thousands), kept to 1e-3 relative: under one 40 nm voxel
    assert sample_viewer.dims.point[0] == pytest.approx(40.0 * round(z), abs=40.0)
    assert sample_viewer.camera.center[-2:] == pytest.approx((40.0 * y, 40.0 * x), rel=1e-3)
    assert layer.selected_label == biggest and layer.show_selected_label

    # double-click the object in the viewer: it is gone, table and totals follow at once;
    # the view stays put (napari's own double-click zoom is undone)
    before = layer.data.copy()
    inside = np.argwhere(layer.data == biggest)[0]
    zoom = sample_viewer.camera.zoom
    assert widget._remember_camera in layer.mouse_drag_callbacks  # the press before it
    widget._remember_camera(layer, None)
    sample_viewer.camera.zoom = 2 * zoom  # what napari's double_click_to_zoom does first
    _double_click(layer, inside)
    assert sample_viewer.camera.zoom == pytest.approx(zoom)  # the stored float, restored
    assert not (layer.data == biggest).any()
    assert widget.table.rowCount() == ids.size - 1
    assert biggest not in set(widget.frame["id"])
    assert f"{ids.size - 1} objects" in widget.totals.text()
    # ... and the features follow (still in step with the table)
    assert layer.features["label"].tolist() == widget.frame["id"].tolist()
    assert biggest not in set(layer.features["label"])
    # Ctrl+Z on the layer (napari's undo) restores it, and the table is measured again;
    # Ctrl+Shift+Z redoes it
    after = layer.data.copy()
    _press(layer, "Ctrl+Z")
    np.testing.assert_array_equal(layer.data, before)
    qtbot.waitUntil(lambda: widget.table.rowCount() == ids.size, timeout=HANG_MS)
    _press(layer, "Ctrl+Shift+Z")
    np.testing.assert_array_equal(layer.data, after)
    qtbot.waitUntil(lambda: widget.table.rowCount() == ids.size - 1, timeout=HANG_MS)
    widget.undo()
    np.testing.assert_array_equal(layer.data, before)
    qtbot.waitUntil(lambda: widget.table.rowCount() == ids.size, timeout=HANG_MS)
    # a double-click on background deletes nothing
    background = np.argwhere(layer.data == 0)[0]
    _double_click(layer, background)
    np.testing.assert_array_equal(layer.data, before)

    # size cut-off: exactly the objects under the threshold go, in one undo step
    threshold = float(widget.frame["volume_um3"].median())
    small = set(widget.frame.loc[widget.frame["volume_um3"] < threshold, "id"])
    assert widget.remove_small(threshold) == len(small) > 0
    assert not np.isin(layer.data, list(small)).any()
    assert len(widget.frame) == ids.size - len(small)
    assert set(layer.features["label"]) == set(ids) - small
    widget.undo()
    np.testing.assert_array_equal(layer.data, before)
    qtbot.waitUntil(lambda: len(widget.frame) == ids.size, timeout=HANG_MS)

    # border-touching objects (x/y edges)
    touching = set(widget.frame.loc[widget.frame["touches_border_xy"], "id"])
    assert widget.remove_border("yx") == len(touching) > 0
    left = set(np.unique(layer.data)) - {0}
    assert left == set(ids) - touching
    assert not widget.frame["touches_border_xy"].any()
    widget.undo()
    np.testing.assert_array_equal(layer.data, before)


def test_annotate_runs_data_check(sample_viewer, qtbot):
    widget = AnnotateWidget(sample_viewer)
    qtbot.addWidget(widget)
    widget.image_combo.set_layer(sample_viewer.layers["image"])
    widget.labels_combo.set_layer(sample_viewer.layers["labels"])
    widget.task_combo.setCurrentText("instance")
    assert widget.run_check() is not None
    qtbot.waitUntil(lambda: "Verdict" in widget.check_text.toPlainText(), timeout=HANG_MS)
    text = widget.check_text.toPlainText()
    assert "instance" in text.splitlines()[0]
    assert "annotated slices: 0-5 (6 of 6)" in text
    qtbot.waitUntil(widget.check_button.isEnabled, timeout=HANG_MS)


def _train_panel(viewer, qtbot, models: Path, iterations: int) -> TrainWidget:
    widget = TrainWidget(viewer)
    qtbot.addWidget(widget)
    tiny_training(widget, models, iterations)
    return widget


class GuiTurnToken(CancelToken):
    """A cancel token that also checks the viewer stays live while training runs.

    The training loop asks ``cancelled`` before every iteration, in its worker
    thread. This token makes that question wait until the GUI thread's event
    loop has turned (a QTimer there calls :meth:`tick`), for up to ``wait_s``,
    and records whether it did. Training frozen with the viewer, or a viewer
    frozen by training, shows as an unanswered wait; how fast the machine is
    does not matter.
    """

    def __init__(self, wait_s: float = HANG_MS / 1000) -> None:
        super().__init__()
        self.wait_s = wait_s
        self.answered: list[bool] = []
        self._waiting: list[threading.Event] = []
        self._lock = threading.Lock()

    @property
    def cancelled(self) -> bool:
        if threading.current_thread() is not threading.main_thread():
            turned = threading.Event()
            with self._lock:
                self._waiting.append(turned)
            self.answered.append(turned.wait(self.wait_s))
        return super().cancelled

    def tick(self) -> None:
        """The GUI thread's event loop turned: answer every waiting check."""
        with self._lock:
            waiting, self._waiting = self._waiting, []
        for turned in waiting:
            turned.set()


@pytest.mark.slow
def test_train_live_loss_curve_responsive_and_stop(sample_viewer, qtbot, tmp_path, monkeypatch):
    tokens: list[GuiTurnToken] = []

    def token() -> GuiTurnToken:
        tokens.append(GuiTurnToken())
        return tokens[-1]

    monkeypatch.setattr(jobs_module, "CancelToken", token)  # each run's token
    widget = _train_panel(sample_viewer, qtbot, tmp_path, iterations=8)
    assert widget.voxel_size.text() == "40,40,40"
    gaps: list[float] = []
    last = [time.perf_counter()]

    def tick() -> None:
        now = time.perf_counter()
        gaps.append(now - last[0])
        last[0] = now
        for t in tokens:
            t.tick()

    timer = QTimer(widget)
    timer.setInterval(10)
    timer.timeout.connect(tick)
    timer.start()
    assert widget.start() is not None
    qtbot.waitUntil(lambda: widget.model_folder is not None, timeout=HANG_MS)
    # The event loop kept running beside training: it turned during each of the 8
    # iterations. (How long it stalled is a speed figure, printed, not asserted.)
    assert len(tokens) == 1 and len(tokens[0].answered) >= 8
    assert all(tokens[0].answered), "the viewer's event loop did not turn while training"
    print(f"longest event-loop stall while training: {max(gaps) * 1000:.0f} ms")
    loss = widget.loss_plot.series("loss")
    assert loss[:, 0].tolist() == list(range(1, 9))
    assert widget.progress.value() == 8
    folder = Path(widget.model_folder)
    assert folder == tmp_path / "tiny"
    assert ModelConfig.load(folder).iterations == 8
    qtbot.waitUntil(widget.start_button.isEnabled, timeout=HANG_MS)
    # the registry drop-down lists the new model
    assert widget.finetune.count() == 2

    # a long run stopped early still leaves a usable model, fine-tuned from the first
    widget.finetune.select_folder(folder)
    widget.iterations.setValue(10_000)
    widget.model_folder = None
    widget.start()
    qtbot.waitUntil(lambda: len(widget.loss_plot.series("loss")) >= 2, timeout=HANG_MS)
    widget.stop()
    qtbot.waitUntil(lambda: widget.model_folder is not None, timeout=HANG_MS)
    timer.stop()
    assert all(tokens[1].answered)
    stopped = Path(widget.model_folder)
    assert stopped == tmp_path / "tiny-2"
    config = ModelConfig.load(stopped)
    assert 2 <= config.iterations < 10_000
    assert config.training["init_from"] == str(folder)
    assert load_model(stopped, device="cpu").config.iterations == config.iterations


def test_live_labels_layer_shows_regions_as_they_are_written(make_napari_viewer, qtbot, tmp_path):
    viewer = make_napari_viewer()
    maps = zarr.create_array(
        store=str(tmp_path / "p.zarr"), shape=(2, 4, 40, 60), chunks=(2, 4, 20, 20), dtype="uint8"
    )
    config = ModelConfig(
        "instance",
        ["chloroplast"],
        (4, 16, 16),
        (40.0, 40.0, 40.0),
        {},
        ["foreground", "boundary"],
    )
    layer = viewer.add_labels(LiveLabels(maps, config), scale=(40.0, 40.0, 40.0))
    viewer.dims.set_point(0, 2 * 40.0)
    inside, outside = (80.0, 200.0, 200.0), (80.0, 1400.0, 2200.0)  # world (z, y, x) nm
    assert layer.get_value(inside, world=True) == 0
    maps[0, :, :20, :20] = 255  # the first region is written: foreground
    layer.refresh()
    assert layer.get_value(inside, world=True) == 1
    assert layer.get_value(outside, world=True) == 0
    maps[0, :, 20:, 40:] = 200
    layer.refresh()
    assert layer.get_value(outside, world=True) == 1
    np.testing.assert_array_equal(np.asarray(layer.data), maps[0] >= 128)
    # labels still being predicted are read-only for proofreading, with a clear message
    proofread = ProofreadWidget(viewer)
    qtbot.addWidget(proofread)
    proofread.labels_combo.set_layer(layer)
    assert proofread.delete_ids([1]) == 0
    assert "still being predicted" in notification_manager.records[-1].message
    semantic = LiveLabels(maps, ModelConfig(**{**config.to_dict(), "task": "semantic"}))
    assert semantic[1, 0, 0] == 0 and semantic[1, 39, 59] == 0  # channel 0 wins = background


@pytest.mark.slow
def test_autolabel_streams_into_zarr_backed_layer(sample_viewer, qtbot, tiny_model, tmp_path):
    # a corner of the crop keeps the tile count (and the CPU time) small
    image = layer_volume(sample_viewer.layers["image"])
    image.data = image.data[:, :64, :96]
    add_volume(sample_viewer, image, "image", name="corner")
    widget = AutoLabelWidget(sample_viewer)
    qtbot.addWidget(widget)
    widget.model.set_root(tiny_model.parent)
    assert widget.model.folder() == str(tiny_model)
    widget.image_combo.set_layer(sample_viewer.layers["corner"])
    out = tmp_path / "pred.zarr"
    widget.output.setText(str(out))
    for box, step in zip(widget.stride, (4, 32, 32)):
        box.setValue(step)
    widget.batch.setValue(4)
    # small output chunks, so the stack is written region by region; float32, as
    # this is about streaming regions, not the precision path
    widget.extra_settings = {"chunks": (6, 32, 48), "memory_mb": 0.05, "precision": "float32"}
    seen = []

    def on_event(event) -> None:
        if isinstance(event.payload, tuple):
            layer = widget.layer
            seen.append(layer is not None and isinstance(layer.data, LiveLabels))

    worker = widget.start()
    worker.yielded.connect(on_event)
    qtbot.waitUntil(lambda: widget.result is not None, timeout=HANG_MS)
    # while predicting, a labels layer read the zarr on disk and was refreshed per region
    assert len(seen) == 4
    assert all(seen)
    assert widget.regions_shown == 4
    # then the post-processed labels replace it, still on disk
    layer = widget.layer
    assert layer in sample_viewer.layers
    # through a cache of decoded chunks (edits written back in the background)
    assert isinstance(layer.data, CachedArray) and isinstance(layer.data.array, zarr.Array)
    assert layer.data.shape == (6, 64, 96)
    assert tuple(layer.scale) == (40.0, 40.0, 40.0)
    np.testing.assert_array_equal(np.asarray(layer.data), zarr.open_array(str(out / "labels"))[:])
    assert int(np.asarray(layer.data).max()) == widget.result.attrs["n_objects"]
    assert layer.metadata["model"] == str(tiny_model)
    assert widget.split.isChecked() and widget.result.attrs["postprocess"]["seed_depth"] == 0.5
    # corrections painted into the layer reach the file before it runs again, and survive it
    corner = tuple(np.indices((1, 4, 4)).reshape(3, -1))
    layer.data_setitem(corner, 77)
    widget.result = None
    widget.start()
    qtbot.waitUntil(lambda: widget.result is not None, timeout=HANG_MS)
    assert widget.kept_labels and "Kept the labels already in" in widget.status.text()
    assert (zarr.open_array(str(out / "labels"))[0, :4, :4] == 77).all()


def test_export_table_meshes_points_labels(sample_viewer, qtbot, tmp_path):
    widget = ExportWidget(sample_viewer)
    qtbot.addWidget(widget)
    layer = sample_viewer.layers["labels"]
    widget.labels_combo.set_layer(layer)
    widget.image_combo.set_layer(sample_viewer.layers["image"])
    widget.folder.setText(str(tmp_path))
    widget.base_name.setText("crop")
    for box in (widget.table, widget.meshes, widget.points, widget.labels_file):
        box.setChecked(True)
    widget.smooth.setValue(2)
    widget.label_format.setCurrentText(next(k for k, v in LABEL_FORMATS.items() if v == ".h5"))
    assert widget.start() is not None
    qtbot.waitUntil(lambda: len(widget.written) > 0, timeout=HANG_MS)
    names = sorted(Path(p).name for p in widget.written)
    assert names == [
        "crop_labels.h5:data",
        "crop_objects.csv",
        "crop_totals.csv",
        "meshes.ply",
        "points.ply",
    ]
    ids = set(np.unique(layer.data)) - {0}
    table = read_csv(tmp_path / "crop_objects.csv")
    assert set(table["id"]) == ids
    assert table["voxels"].sum() == np.count_nonzero(layer.data)
    assert "mean_intensity" in table
    totals = read_csv(tmp_path / "crop_totals.csv")
    assert int(totals.set_index("class").loc["all", "count"]) == len(ids)
    mesh = read_ply(tmp_path / "crop_meshes" / "meshes.ply")
    points = read_ply(tmp_path / "crop_points" / "points.ply")
    assert set(np.unique(mesh["vertex"]["id"])) == ids
    assert len(mesh["face"]) > 0
    assert set(np.unique(points["vertex"]["id"])) == ids
    saved = open_volume(str(tmp_path / "crop_labels.h5"))
    np.testing.assert_array_equal(np.asarray(saved.data), layer.data)
    assert saved.voxel_size == (40.0, 40.0, 40.0)
    assert widget.files.count() == 5


def test_export_names_are_safe_and_existing_files_are_kept(sample_viewer, qtbot, tmp_path):
    """A layer named after an h5 key exports flat files; a second export asks first."""
    widget = ExportWidget(sample_viewer)
    qtbot.addWidget(widget)
    layer = sample_viewer.layers["labels"]
    layer.name = "f.h5:volumes/labels"
    widget.labels_combo.set_layer(layer)
    tmp_path = tmp_path / "new"  # made by the export
    widget.folder.setText(str(tmp_path))
    widget.meshes.setChecked(True)
    assert widget.start() is not None
    qtbot.waitUntil(lambda: len(widget.written) > 0, timeout=HANG_MS)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == [
        "f.h5_volumes_labels_meshes",
        "f.h5_volumes_labels_objects.csv",
        "f.h5_volumes_labels_totals.csv",
    ]
    table = tmp_path / "f.h5_volumes_labels_objects.csv"
    table.write_text("my notes")
    qtbot.waitUntil(lambda: widget.export_button.isEnabled(), timeout=HANG_MS)
    assert widget.start() is None  # refused before any work, nothing replaced
    message = notification_manager.records[-1].message
    assert "f.h5_volumes_labels_objects.csv: already exists and is kept" in message
    assert "Replace files of an earlier export" in message
    assert table.read_text() == "my notes"
    widget.overwrite.setChecked(True)
    widget.written = []
    assert widget.start() is not None
    qtbot.waitUntil(lambda: len(widget.written) > 0, timeout=HANG_MS)
    assert table.read_text().startswith("# napari-anatomics")
    meshes = tmp_path / "f.h5_volumes_labels_meshes"
    assert [p.name for p in meshes.iterdir()] == ["meshes.ply"]  # no mix of old and new


def test_proofread_zarr_backed_labels_and_back_to_training(sample_viewer, qtbot, tmp_path):
    """Correct auto-labels that live on disk, undo, save, and send them to Train."""
    store = zarr.create_array(
        store=str(tmp_path / "pred.zarr"), shape=(6, 128, 192), chunks=(6, 64, 64), dtype="uint32"
    )
    store[:] = sample_viewer.layers["labels"].data
    layer = sample_viewer.add_labels(store, name="on disk", scale=(40.0, 40.0, 40.0))
    widget = ProofreadWidget(sample_viewer)
    qtbot.addWidget(widget)
    widget.labels_combo.set_layer(layer)
    qtbot.waitUntil(lambda: len(widget.frame) > 0, timeout=HANG_MS)
    n = len(widget.frame)
    before = store[:]
    target = int(widget.frame["id"].iloc[0])
    _double_click(layer, np.argwhere(before == target)[0])
    assert not (store[:] == target).any()  # written to the zarr on disk
    assert len(widget.frame) == n - 1
    _press(layer, "Ctrl+Z")  # napari's undo key on the layer
    np.testing.assert_array_equal(store[:], before)
    qtbot.waitUntil(lambda: len(widget.frame) == n, timeout=HANG_MS)

    # save the corrected labels to a file
    saved = tmp_path / "corrected.tif"
    widget.save_path.setText(str(saved))
    assert widget.save() is not None
    qtbot.waitUntil(lambda: layer.metadata.get("source") == str(saved), timeout=HANG_MS)
    np.testing.assert_array_equal(np.asarray(open_volume(str(saved)).data), before)

    # "Use for training" opens the Train panel with these labels chosen
    layer.metadata["model"] = str(tmp_path / "some-model")
    widget.image_combo.set_layer(sample_viewer.layers["image"])
    widget.use_for_training()
    panel = send_to_train(sample_viewer, layer)  # the same panel, not a second one
    assert panel.labels_combo.layer() is layer
    assert panel.image_combo.layer() is sample_viewer.layers["image"]
    assert panel.finetune.folder() == str(tmp_path / "some-model")


def test_train_errors_become_clear_notifications(sample_viewer, qtbot, tmp_path):
    widget = _train_panel(sample_viewer, qtbot, tmp_path, iterations=2)
    widget.voxel_size.setText("ten by ten")
    assert widget.start() is None
    assert "voxel size" in notification_manager.records[-1].message
    # a window larger than the stack is refused by the core, in the worker, with its reason
    widget.voxel_size.setText("40,40,40")
    widget.window[0].setValue(64)
    worker = widget.start()
    assert worker is not None
    qtbot.waitUntil(widget.start_button.isEnabled, timeout=HANG_MS)
    message = notification_manager.records[-1].message
    assert message.startswith("Training tiny failed:") and "window" in message
    assert widget.model_folder is None


def test_train_panel_model_choice_and_augmentation(sample_viewer, qtbot, tmp_path):
    widget = _train_panel(sample_viewer, qtbot, tmp_path, iterations=1)
    widget.arch_combo.setCurrentIndex(widget.arch_combo.findData("unet2d"))
    # The window goes back to "auto" (the recipe's 1,256,256 for 2D, fitted to the data).
    assert [box.text() for box in widget.window] == ["auto"] * 3
    assert not widget.window[0].isEnabled()
    widget.zoom.setValue(0.25)
    widget.object_crops.setValue(0.6)
    widget.copy_paste.setValue(0.3)
    config = widget.config()
    assert (config.architecture, config.zoom, config.window) == ("unet2d", 0.25, None)
    assert (config.object_crops, config.copy_paste) == (0.6, 0.3)
    for box, size in zip(widget.window, (1, 128, 128)):
        box.setValue(size)
    assert widget.config().window == (1, 128, 128)
    widget.arch_combo.setCurrentIndex(widget.arch_combo.findData("resunet3d"))
    assert widget.window[0].isEnabled() and widget.config().architecture == "resunet3d"
