"""Screenshot of a 3D split in Proofread & Stats, on the bundled chloroplast sample.

Two chloroplasts that touch are first merged (as a prediction that missed their border
would give them), then split back from one seed point on each: the seed points (a
"split seeds" layer, one colour per part), the two objects again (yellow, cyan; the
others grey) and the table.
Run under a virtual display::

    xvfb-run -a -s "-screen 0 1600x1000x24" python docs/make_screenshot_split.py

Writes ``docs/screenshots/split.png``.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("NAPARI_CONFIG", str(Path(tempfile.mkdtemp()) / "settings.yaml"))

import napari
import numpy as np
from qtpy.QtWidgets import QApplication
from scipy import ndimage as ndi

from napari_anatomics.io.samples import load_sample
from napari_anatomics.napari.edit_tools import EditTools
from napari_anatomics.napari.layers import add_volume
from napari_anatomics.napari.panels.proofread import ProofreadWidget

OUT = Path(__file__).parent / "screenshots" / "split.png"


def wait(condition, timeout: float = 120.0) -> None:
    """Process Qt events until ``condition()`` holds."""
    end = time.time() + timeout
    while not condition():
        QApplication.processEvents()
        if time.time() > end:
            raise TimeoutError("the panel did not finish in time")
        time.sleep(0.05)
    for _ in range(20):
        QApplication.processEvents()
        time.sleep(0.02)


def touching_pair(labels: np.ndarray) -> tuple[int, int]:
    """Two big objects whose voxels touch (6-connected)."""
    sizes = np.bincount(labels.ravel())
    for a in np.argsort(sizes)[::-1]:
        if a == 0:
            continue
        ring = ndi.binary_dilation(labels == a) & (labels != a) & (labels > 0)
        near = np.unique(labels[ring])
        if near.size:
            b = int(near[np.argmax(sizes[near])])
            return int(a), b
    raise RuntimeError("no touching objects in the sample")


def main() -> None:
    image, labels = load_sample()
    data = np.asarray(labels.data).astype(np.uint32)
    a, b = touching_pair(data)
    seeds = {k: np.argwhere(data == i).mean(axis=0)[None] for k, i in ((1, a), (2, b))}
    data[data == b] = a  # what a prediction that missed their border gives
    viewer = napari.Viewer(title="napari-anatomics: split in 3D")
    viewer.window._qt_window.resize(1500, 900)
    add_volume(viewer, image, "image", name="chloroplasts image")
    layer = viewer.add_labels(data, name="chloroplasts", scale=(40.0, 40.0, 40.0))
    panel = ProofreadWidget(viewer)
    viewer.window.add_dock_widget(panel, name="6. Proofread & Stats", area="right")
    panel.image_combo.set_layer(viewer.layers["chloroplasts image"])
    wait(lambda: len(panel.frame) > 0)
    tools = panel.findChild(EditTools)
    points = tools.seeds_layer()
    for part, where in seeds.items():
        tools.part.setValue(part)
        points.add(where)
    centre = np.concatenate(list(seeds.values())).mean(axis=0)
    viewer.dims.set_point(0, 40.0 * round(centre[0]))
    viewer.camera.center = tuple(40.0 * centre[1:])
    viewer.camera.zoom = 0.1  # screen pixels per nm: some 130 voxels across
    n = len(panel.frame)
    kept = {part: p.copy() for part, p in seeds.items()}
    tools.split()
    wait(lambda: len(panel.frame) == n + 1)
    points.data = np.concatenate(list(kept.values()))  # show where the seeds were
    points.features = {"part": [1, 2]}
    from napari.utils.colormaps import DirectLabelColormap

    parts = [int(data[tuple(np.round(p[0]).astype(int))]) for p in kept.values()]
    print("ids at the seeds after the split:", parts)
    layer.colormap = DirectLabelColormap(  # the two parts in their own colours
        color_dict={None: [0.55, 0.55, 0.55, 0.5], parts[0]: "yellow", parts[1]: "cyan"}
    )
    viewer.layers.selection.active = layer
    wait(lambda: True)
    viewer.window._qt_window.grab().save(str(OUT))
    print("wrote", OUT)
    viewer.close()


if __name__ == "__main__":
    main()
