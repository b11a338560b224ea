"""Screenshots of the workflow panels (Annotate, Train, Auto-label, Proofread & Stats, Export).

Each panel is docked in a real viewer holding the bundled sample and driven
to a telling state (painted slices and a Data Check report, a loss curve
while training, a prediction filling in region by region, a measured table,
exported meshes in 3D). Run it under a virtual display::

    xvfb-run -a -s "-screen 0 1600x1000x24" python docs/make_screenshots_workflow.py

It trains a small model first (``--iterations``; or reuse one with
``--model DIR``) and writes ``docs/screenshots/workflow_*.png``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import napari
import numpy as np
from napari._qt.dialogs.qt_notification import NapariQtNotification
from qtpy.QtWidgets import QApplication
from skimage.io import imsave

from napari_anatomics.analyze.meshes import read_ply
from napari_anatomics.io.samples import load_sample
from napari_anatomics.napari.layers import add_volume

OUT = Path(__file__).resolve().parent / "screenshots"
PLUGIN = "napari-anatomics"


def wait(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Run the event loop until ``condition()`` holds."""
    app = QApplication.instance()
    end = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > end:
            raise TimeoutError(f"timed out waiting for {what}")
        app.processEvents()
        time.sleep(0.02)


def settle(seconds: float = 0.5) -> None:
    """Let the viewer repaint."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        QApplication.instance().processEvents()
        time.sleep(0.02)


def sample_viewer(labels: bool = True) -> napari.Viewer:
    """A 1600 x 1000 viewer with the bundled sample (image, and labels unless told)."""
    viewer = napari.Viewer(title="napari-anatomics")
    viewer.window._qt_window.resize(1600, 1000)
    image, painted = load_sample()
    add_volume(viewer, image, "image", name="chloroplasts image")
    if labels:
        add_volume(viewer, painted, "labels", name="chloroplasts labels")
    viewer.dims.axis_labels = ("z", "y", "x")
    viewer.dims.set_point(0, 4 * 40.0)
    return viewer


def dock(viewer: napari.Viewer, name: str, width: int = 420):
    """Open a plugin panel by its Plugins-menu name; return the widget."""
    dock_widget, widget = viewer.window.add_plugin_dock_widget(PLUGIN, name)
    dock_widget.setMinimumWidth(width)
    return widget


def shot(viewer: napari.Viewer, name: str) -> Path:
    """Save the whole window (canvas and panels) as docs/screenshots/<name>.png."""
    settle()
    for toast in viewer.window._qt_window.findChildren(NapariQtNotification):  # pop-ups
        toast.hide()
    settle(0.2)
    path = OUT / f"{name}.png"
    imsave(path, viewer.screenshot(canvas_only=False, flash=False), check_contrast=False)
    print(f"wrote {path}")
    return path


def annotate() -> None:
    viewer = sample_viewer(labels=False)
    widget = dock(viewer, "3. Annotate")
    widget.task_combo.setCurrentText("semantic")
    layer = widget.new_labels_layer()
    painted = np.asarray(load_sample()[1].data)
    for z in (2, 4, 7):  # copy the painted chloroplasts of three slices, as brush strokes
        plane = np.nonzero(painted[z] > 0)
        layer.data_setitem((np.full(plane[0].size, z), *plane), 1)
    widget.update_slices()
    widget.run_check()
    wait(lambda: "Verdict" in widget.check_text.toPlainText(), 60, "the Data Check")
    shot(viewer, "workflow_annotate")
    viewer.close()


def train(models: Path, iterations: int) -> Path:
    viewer = sample_viewer()
    widget = dock(viewer, "4. Train")
    widget.out_dir.setText(str(models))
    # The recipe's defaults, as a user sees them; only fewer iterations.
    widget.iterations.setValue(iterations)
    widget.extra_settings = {"warmup": 10}
    widget.start()
    wait(lambda: widget.progress.value() >= 0.6 * iterations, 1800, "training")
    shot(viewer, "workflow_train")
    wait(lambda: widget.model_folder is not None, 1800, "the end of training")
    folder = Path(widget.model_folder)
    viewer.close()
    return folder


def autolabel(model: Path, work: Path) -> None:
    viewer = sample_viewer(labels=False)
    widget = dock(viewer, "5. Auto-label")
    widget.model.select_folder(model)
    widget.output.setText(str(work / "prediction.zarr"))
    widget.batch.setValue(4)
    widget.extra_settings = {"chunks": (10, 96, 96), "memory_mb": 1.0}
    widget.start()
    wait(lambda: widget.regions_shown >= 12, 1800, "half the regions")
    shot(viewer, "workflow_autolabel")
    wait(lambda: widget.worker is None or not widget.stop_button.isEnabled(), 1800, "the end")
    viewer.close()


def proofread() -> None:
    viewer = sample_viewer()
    widget = dock(viewer, "6. Proofread & Stats", width=640)
    widget.image_combo.set_layer(viewer.layers["chloroplasts image"])
    wait(lambda: len(widget.frame) > 0, 120, "the measurement")
    widget.table.sort_by("volume_um3")
    widget.min_volume.setValue(0.1)
    frame, height = widget.frame, viewer.layers["chloroplasts labels"].data.shape[1]
    inside = frame[(frame["bbox_y0"] > 40) & (frame["bbox_y1"] < height - 40)]
    inside = inside.sort_values("volume_um3")  # the biggest object away from the edges
    widget.focus_object(int(inside.iloc[-1]["id"]))
    viewer.camera.zoom *= 2.5
    shot(viewer, "workflow_proofread")
    viewer.close()


def export(work: Path) -> None:
    viewer = sample_viewer()
    widget = dock(viewer, "7. Export")
    widget.folder.setText(str(work / "export"))
    for box in (widget.table, widget.meshes, widget.points, widget.labels_file):
        box.setChecked(True)
    widget.start()
    wait(lambda: len(widget.written) > 0, 600, "the export")
    mesh = read_ply(work / "export" / "chloroplasts_labels_meshes" / "meshes.ply")
    vertex = mesh["vertex"]
    vertices = np.stack([vertex["z"], vertex["y"], vertex["x"]], axis=1) * 1000.0  # µm -> nm
    viewer.layers["chloroplasts labels"].visible = False
    viewer.layers["chloroplasts image"].visible = False
    viewer.add_surface(
        (vertices, mesh["face"], vertex["id"].astype(float)),
        colormap="turbo",
        shading="smooth",
        name="meshes",
    )
    viewer.dims.ndisplay = 3
    viewer.reset_view()
    viewer.camera.angles = (-30, -30, 60)  # tilted: the stack is only 10 slices deep
    viewer.camera.zoom *= 1.25
    shot(viewer, "workflow_export")
    viewer.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="reuse this model folder (skips training)")
    parser.add_argument("--iterations", type=int, default=150, help="training iterations")
    parser.add_argument("--work", type=Path, help="keep models and results here (default: temp)")
    parser.add_argument(
        "--only", nargs="*", default=None, help="annotate train autolabel proofread export"
    )
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    steps = set(args.only or ["annotate", "train", "autolabel", "proofread", "export"])
    with tempfile.TemporaryDirectory(prefix="anatomics-shots-") as tmp:
        work = args.work or Path(tmp)
        if "annotate" in steps:
            annotate()
        model = args.model
        if "train" in steps or (model is None and "autolabel" in steps):
            model = train(work / "models", args.iterations)
        if "autolabel" in steps:
            autolabel(model, work)
        if "proofread" in steps:
            proofread()
        if "export" in steps:
            export(work)


if __name__ == "__main__":
    main()
