"""The installed plugin is found by napari and its panels open from the Plugins menu."""

from __future__ import annotations

import numpy as np
from npe2 import PluginManager

PANELS = [
    "0. The whole loop (one dock)",
    "1. Image Tools",
    "2. Data Check",
    "3. Annotate",
    "4. Train",
    "5. Auto-label",
    "6. Proofread & Stats",
    "7. Export",
]


def test_entry_point_registers_every_panel():
    pm = PluginManager.instance()
    pm.discover()
    names = [w.display_name for w in pm.iter_widgets() if w.plugin_name == "napari-anatomics"]
    assert names == PANELS


def test_panels_open_as_napari_docks(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((4, 8, 8), dtype=np.uint8), name="stack")
    for name in ("2. Data Check", "6. Proofread & Stats", "0. The whole loop (one dock)"):
        dock, widget = viewer.window.add_plugin_dock_widget("napari-anatomics", name)
        assert name in dock.name
        # napari hands plugins a proxy of the viewer: it sees the same layers.
        assert [layer.name for layer in widget.viewer.layers] == ["stack"]
