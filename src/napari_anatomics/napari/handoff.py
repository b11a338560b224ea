"""Hand-offs between panels, so that no panel imports another.

A panel that others send work to registers itself under its display name in
napari.yaml (:func:`register`); :func:`open_panel` finds that panel of a viewer,
or opens it from the Plugins menu. :func:`send_to_train` is the hand-off of
Proofread & Stats ("Use for training") to Train.
"""

from __future__ import annotations

import weakref
from typing import Any

from napari.layers import Image, Labels

#: The Train panel's display name in napari.yaml (Plugins menu).
TRAIN = "4. Train"

#: The open panels by display name.
_OPEN: dict[str, weakref.WeakSet] = {}
#: What shows a panel that lives inside another dock (the loop's tabs).
_SHOW: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def register(panel: Any, name: str) -> None:
    """Make ``panel`` (which has a ``viewer``) findable by :func:`open_panel` as ``name``."""
    _OPEN.setdefault(name, weakref.WeakSet()).add(panel)


def on_open(panel: Any, show: Any) -> None:
    """Call ``show()`` when :func:`open_panel` hands ``panel`` out (e.g. select its tab)."""
    _SHOW[panel] = show


def open_panel(viewer, name: str) -> Any:
    """The viewer's open panel ``name``, opened as a dock widget when there is none."""
    for panel in _OPEN.get(name, ()):
        if panel.viewer is viewer:
            if panel in _SHOW:
                _SHOW[panel]()
            return panel
    _dock, panel = viewer.window.add_plugin_dock_widget("napari-anatomics", name)
    return panel


def send_to_train(viewer, labels: Labels, image: Image | None = None) -> Any:
    """Choose ``labels`` (and ``image``) in the Train panel, opening it if needed.

    Returns
    -------
    TrainWidget
        The panel, ready to fine-tune the labels' model on them.
    """
    panel = open_panel(viewer, TRAIN)
    panel.use_labels(labels, image)
    return panel
