"""Screenshot of the live preview while training, on the bundled chloroplast sample.

The sample's labels are kept on slices 2 and 7 only (a user who painted two slices);
the whole-loop dock trains at the defaults with *Live preview* on, and the viewer shows
slice 5, never painted, with the preview layer of the model being trained over the
image, the loss curve growing in the dock. Run under a virtual display::

    xvfb-run -a -s "-screen 0 1600x1000x24" python docs/make_screenshot_live.py

Writes ``docs/screenshots/live_preview.png``.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("NAPARI_CONFIG", str(Path(tempfile.mkdtemp()) / "settings.yaml"))

import napari
import numpy as np
from qtpy.QtWidgets import QApplication

from napari_anatomics.io.samples import load_sample
from napari_anatomics.napari.layers import add_volume
from napari_anatomics.napari.loop import LoopWidget
from napari_anatomics.napari.panels.train import TrainWidget

OUT = Path(__file__).parent / "screenshots" / "live_preview.png"
PAINTED, SHOWN = (2, 7), 5


def wait(condition, timeout: float = 600.0) -> None:
    """Process Qt events until ``condition()`` holds."""
    end = time.time() + timeout
    while not condition():
        QApplication.processEvents()
        if time.time() > end:
            raise TimeoutError("training did not get there in time")
        time.sleep(0.05)


def main(seconds: float = 150.0) -> None:
    image, labels = load_sample()
    truth = np.asarray(labels.data)
    user = np.zeros_like(truth)
    user[list(PAINTED)] = truth[list(PAINTED)]
    viewer = napari.Viewer(title="napari-anatomics: live preview while training")
    viewer.window._qt_window.resize(1500, 950)
    add_volume(viewer, image, "image", name="chloroplasts image")
    layer = viewer.add_labels(user, name="chloroplasts", scale=image.voxel_size)
    loop = LoopWidget(viewer)
    viewer.window.add_dock_widget(loop, name="0. The whole loop", area="right")
    loop.show_step(TrainWidget)
    panel = loop.panels[TrainWidget]
    panel.image_combo.set_layer(viewer.layers["chloroplasts image"])
    panel.labels_combo.set_layer(layer)
    panel.task_combo.setCurrentText("instance")
    panel.out_dir.setText(tempfile.mkdtemp(prefix="anatomics-shot-"))
    viewer.dims.set_point(0, image.voxel_size[0] * SHOWN)
    start = time.time()
    panel.start()
    wait(lambda: panel.live is not None and panel.live.shown is not None)
    wait(lambda: time.time() - start > seconds and panel.live.shown.iteration > 0)
    shown = panel.live.shown
    print(f"preview of iteration {shown.iteration} took {shown.seconds:.2f} s")
    viewer.layers.selection.active = layer
    for _ in range(20):
        QApplication.processEvents()
        time.sleep(0.02)
    viewer.window._qt_window.grab().save(str(OUT))
    print("wrote", OUT)
    panel.stop()
    wait(lambda: panel.model_folder is not None)
    viewer.close()


if __name__ == "__main__":
    main(*(float(a) for a in sys.argv[1:]))
