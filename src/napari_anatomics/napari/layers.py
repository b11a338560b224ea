"""Layer pickers and the bridge between napari layers and :class:`Volume`.

A layer made by napari-anatomics carries its voxel size as ``scale`` (nm,
(z, y, x)) and in ``metadata["voxel_size"]``; a layer opened by another
reader has ``scale`` 1 and gets the default voxel size, marked as assumed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np
from napari.layers import Layer
from qtpy.QtCore import Signal
from qtpy.QtWidgets import QComboBox, QFileDialog, QHBoxLayout, QLineEdit, QPushButton, QWidget

from ..core.volume import DEFAULT_VOXEL_SIZE, Volume

NONE_TEXT = "(none)"


class LayerCombo(QComboBox):
    """A drop-down of the viewer's layers of one type, kept in sync with the viewer.

    Parameters
    ----------
    viewer : napari.viewer.Viewer
    layer_type : type
        ``napari.layers.Image`` or ``napari.layers.Labels``.
    allow_none : bool
        Offer "(none)" as the first entry.
    """

    layer_changed = Signal(object)

    def __init__(self, viewer, layer_type: type[Layer], *, allow_none: bool = False) -> None:
        super().__init__()
        self._viewer = viewer
        self._type = layer_type
        self._allow_none = allow_none
        self._layers: list[Layer | None] = []
        self.setMinimumContentsLength(12)
        self.setSizeAdjustPolicy(QComboBox.AdjustToMinimumContentsLengthWithIcon)
        events = viewer.layers.events
        for emitter in (events.inserted, events.removed, events.moved, events.reordered):
            emitter.connect(self._on_layers_changed)
        self.currentIndexChanged.connect(lambda _: self.layer_changed.emit(self.layer()))
        self.refresh()

    def _on_layers_changed(self, event: Any = None) -> None:
        if event is not None and getattr(event, "type", "") == "inserted":
            layer = event.value
            if isinstance(layer, self._type):
                layer.events.name.connect(self._on_layers_changed)
        self.refresh()

    def refresh(self) -> None:
        """Rebuild the list, keeping the current layer selected when it still exists."""
        current = self.layer()
        layers = [la for la in self._viewer.layers if isinstance(la, self._type)]
        for layer in layers:
            # reconnecting is harmless: napari ignores a callback already connected
            layer.events.name.connect(self._on_layers_changed)
        entries: list[Layer | None] = ([None] if self._allow_none else []) + layers
        self.blockSignals(True)
        self.clear()
        for layer in entries:
            self.addItem(NONE_TEXT if layer is None else layer.name)
        self._layers = entries
        if current in entries:
            self.setCurrentIndex(entries.index(current))
        self.blockSignals(False)
        if self.layer() is not current:
            self.layer_changed.emit(self.layer())

    def layer(self) -> Any:
        """The chosen layer, or None."""
        index = self.currentIndex()
        if 0 <= index < len(self._layers):
            return self._layers[index]
        return None

    def set_layer(self, layer: Layer) -> None:
        """Choose ``layer`` (which must be in the viewer)."""
        self.refresh()
        self.setCurrentIndex(self._layers.index(layer))


class PathEdit(QWidget):
    """A line edit with a "..." button that opens a file or folder dialog.

    Parameters
    ----------
    mode : {"open", "save", "folder"}
    filter : str
        Qt file filter, e.g. ``"Images (*.tif *.h5 *.zarr)"``.
    """

    def __init__(self, mode: str = "open", filter: str = "", placeholder: str = "") -> None:
        super().__init__()
        self._mode, self._filter = mode, filter
        self.edit = QLineEdit()
        self.edit.setPlaceholderText(placeholder)
        button = QPushButton("...")
        button.setFixedWidth(30)
        button.clicked.connect(self._browse)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.edit)
        layout.addWidget(button)

    def _browse(self) -> None:
        if self._mode == "folder":
            path = QFileDialog.getExistingDirectory(self, "Choose a folder", self.text())
        elif self._mode == "save":
            path, _ = QFileDialog.getSaveFileName(self, "Save as", self.text(), self._filter)
        else:
            path, _ = QFileDialog.getOpenFileName(self, "Open", self.text(), self._filter)
        if path:
            self.edit.setText(path)

    def text(self) -> str:
        """The path as typed, stripped."""
        return self.edit.text().strip()

    def setText(self, text: str) -> None:
        """Set the path."""
        self.edit.setText(str(text))


def layer_voxel_size(layer: Layer) -> tuple[tuple[float, float, float], str]:
    """Voxel size (z, y, x nm) of a layer and where it came from.

    Returns
    -------
    voxel_size : tuple of float
    origin : {"file", "user", "default"}
        "default" when the layer has no physical scale (scale all 1).
    """
    meta = layer.metadata or {}
    if "voxel_size" in meta:
        return tuple(float(v) for v in meta["voxel_size"]), meta.get("voxel_size_origin", "user")
    scale = [float(s) for s in layer.scale[-3:]]
    if all(s == 1.0 for s in scale):
        return DEFAULT_VOXEL_SIZE, "default"
    scale = [DEFAULT_VOXEL_SIZE[0]] * (3 - len(scale)) + scale
    return tuple(scale), "user"  # type: ignore[return-value]


def layer_array(layer: Layer) -> Any:
    """The full-resolution array behind a layer (level 0 of a multiscale layer)."""
    return layer.data[0] if getattr(layer, "multiscale", False) else layer.data


def layer_volume(layer: Layer) -> Volume:
    """A :class:`Volume` view of a layer's data (no copy)."""
    voxel_size, origin = layer_voxel_size(layer)
    data = layer_array(layer)
    if not isinstance(data, da.Array):
        data = da.from_array(data, chunks=data.shape if data.size < 2**24 else "auto")
    return Volume(
        data,
        voxel_size,
        origin,  # type: ignore[arg-type]
        (layer.metadata or {}).get("source") or layer.source.path,
        layer.name,
    )


def volume_layer_kwargs(volume: Volume, name: str | None = None) -> dict[str, Any]:
    """Keyword arguments for ``viewer.add_image/add_labels`` from a Volume."""
    return {
        "name": name or volume.name,
        "scale": volume.scale,
        "metadata": {
            "voxel_size": tuple(volume.voxel_size),
            "voxel_size_origin": volume.voxel_size_origin,
            "source": volume.source,
        },
    }


def add_volume(viewer, volume: Volume, kind: str = "image", **kwargs: Any) -> Layer:
    """Add a Volume as an image or labels layer with its physical scale.

    Parameters
    ----------
    kind : {"image", "labels"}
        Labels volumes are loaded into memory so they can be painted.
    """
    options = volume_layer_kwargs(volume, kwargs.pop("name", None))
    options.update(kwargs)
    if kind == "labels":
        data = np.asarray(volume.data)
        return viewer.add_labels(data, **options)
    return viewer.add_image(volume.data, **options)


def pick_volume(combo: LayerCombo, path: PathEdit | None = None, what: str = "image") -> Volume:
    """The Volume chosen by a layer drop-down, or by a file path when one is typed.

    Raises
    ------
    ValueError
        When neither a layer nor a file is chosen, with a message that says what to do.
    """
    if path is not None and path.text():
        from ..io.read import open_volume

        if not Path(path.text()).exists():
            raise ValueError(f"{path.text()} does not exist: choose an existing {what} file")
        return open_volume(path.text())
    layer = combo.layer()
    if layer is None:
        raise ValueError(f"no {what} chosen: add a {what} layer to the viewer or give a file")
    return layer_volume(layer)


def centre_on(viewer, layer: Layer, data_coords) -> None:
    """Centre the view on a point given in a layer's data coordinates (voxels).

    The sliders of the axes not displayed move to the point; the camera
    centres on it in the displayed ones.
    """
    world = np.asarray(layer.data_to_world(np.asarray(data_coords, dtype=float)), dtype=float)
    offset = viewer.dims.ndim - layer.ndim
    for axis in viewer.dims.not_displayed:
        if axis >= offset:
            viewer.dims.set_point(axis, world[axis - offset])
    viewer.camera.center = tuple(world[a - offset] for a in viewer.dims.displayed if a >= offset)
