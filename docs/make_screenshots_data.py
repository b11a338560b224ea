"""Screenshots of the Image Tools and Data Check widgets docked in napari.

Run under a virtual display::

    xvfb-run -a -s "-screen 0 1600x1000x24" python docs/make_screenshots_data.py

Writes ``docs/screenshots/image_tools.png`` and ``docs/screenshots/data_check.png``.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

# keep the settings changed below out of the user's napari settings file
os.environ.setdefault("NAPARI_CONFIG", str(Path(tempfile.mkdtemp()) / "settings.yaml"))

import napari
import numpy as np
import tifffile
from qtpy.QtWidgets import QApplication

from napari_anatomics.io.samples import load_sample
from napari_anatomics.napari.layers import add_volume
from napari_anatomics.napari.panels.data_check import DataCheckWidget
from napari_anatomics.napari.panels.image_tools import ImageToolsWidget

OUT = Path(__file__).parent / "screenshots"


def wait(condition, timeout: float = 60.0) -> None:
    """Process Qt events until ``condition()`` holds."""
    end = time.time() + timeout
    while not condition():
        QApplication.processEvents()
        if time.time() > end:
            raise TimeoutError("the widget did not finish in time")
        time.sleep(0.05)
    for _ in range(20):
        QApplication.processEvents()
        time.sleep(0.02)


def shoot(viewer: napari.Viewer, name: str) -> None:
    wait(lambda: True)
    viewer.window._qt_window.grab().save(str(OUT / name))
    print("wrote", OUT / name)


def image_tools(tmp: Path) -> None:
    image, _ = load_sample()
    folder = tmp / "leaf_slices"
    folder.mkdir()
    for z in range(image.shape[0]):  # the sample as a folder of slices
        tifffile.imwrite(folder / f"leaf_{z + 1}.tif", np.asarray(image.data[z]))
    viewer = napari.Viewer(title="napari-anatomics: Image Tools")
    viewer.window._qt_window.resize(1500, 900)
    widget = ImageToolsWidget(viewer)
    viewer.window.add_dock_widget(widget, name="1. Image Tools", area="right")
    widget.voxel_edit.setText("40,40,40")
    widget.folder_edit.setText(str(folder))
    widget.combine()
    wait(lambda: len(viewer.layers) == 1 and widget.combine_button.isEnabled())
    shoot(viewer, "image_tools.png")
    viewer.close()


def data_check() -> None:
    image, labels = load_sample()
    viewer = napari.Viewer(title="napari-anatomics: Data Check")
    viewer.window._qt_window.resize(1500, 900)
    add_volume(viewer, image, "image", name="chloroplasts image")
    add_volume(viewer, labels, "labels", name="chloroplasts labels")
    widget = DataCheckWidget(viewer)
    viewer.window.add_dock_widget(widget, name="2. Data Check", area="right")
    widget.task_combo.setCurrentText("instance")
    widget.run_check()
    wait(lambda: widget.report is not None and widget.run_button.isEnabled())
    fragments = next(f for f in widget.report.findings if f.code == "stray_fragments")
    widget.go_to(fragments)  # as a click on the finding does
    shoot(viewer, "data_check.png")
    viewer.close()


if __name__ == "__main__":
    OUT.mkdir(parents=True, exist_ok=True)
    # no toasts over the canvas (Qt-binding notices, "combined ..." messages)
    napari.settings.get_settings().application.gui_notification_level = "error"
    with tempfile.TemporaryDirectory() as tmp:
        image_tools(Path(tmp))
    data_check()
