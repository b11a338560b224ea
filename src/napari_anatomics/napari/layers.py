"""Layer pickers and the one bridge between napari layers and :class:`Volume`.

Volume -> layer (:func:`volume_layer_data`, used by the reader and by every
panel through :func:`add_volume`): the voxel size becomes the layer ``scale``
(nm, (z, y, x)) and ``metadata["voxel_size"]`` (with its origin and the
source); a volume opens as Labels when :func:`looks_like_labels` says so, and
labels up to :data:`PAINTABLE_BYTES` are loaded into memory so they can be
painted. The levels of an OME-Zarr (:func:`multiscale_layer_data`) make one
multiscale Image layer, scaled by level 0's voxel size; labels stay level 0
(napari cannot paint multiscale labels). Layer -> Volume (:func:`layer_volume`):
a layer opened by another reader has ``scale`` 1 and gets the default voxel
size, marked as assumed.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np
from napari.layers import Layer
from qtpy.QtCore import Signal
from qtpy.QtWidgets import QComboBox, QFileDialog, QHBoxLayout, QLineEdit, QPushButton, QWidget

from ..core.volume import DEFAULT_VOXEL_SIZE, Volume

NONE_TEXT = "(none)"
#: Labels up to this size are loaded into memory so they can be painted.
PAINTABLE_BYTES = 2**30
#: A layer data tuple of napari: (data, keyword arguments, layer type).
LayerData = tuple[Any, dict, str]

_LABEL_NAME = re.compile(r"label|seg|mask|annot|(^|[^a-z])gt([^a-z]|$)", re.IGNORECASE)


class LayerCombo(QComboBox):
    """A drop-down of the viewer's layers of one type, kept in sync with the viewer.

    The Train panel's live preview layer (``metadata["preview"]``) is never offered.

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
        layers = [  # a live preview (train) is shown, never worked on
            la for la in self._viewer.layers
            if isinstance(la, self._type) and not la.metadata.get("preview")
        ]
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
    if not isinstance(data, da.Array):  # no name from hashing the data (seconds per GiB)
        chunks = data.shape if data.size < 2**24 else "auto"
        data = da.from_array(data, chunks=chunks, name=False)
    return Volume(
        data,
        voxel_size,
        origin,  # type: ignore[arg-type]
        (layer.metadata or {}).get("source") or layer.source.path,
        layer.name,
    )


def looks_like_labels(volume: Volume) -> bool:
    """Integer data flagged as labels by the file's attributes or its name.

    The attribute ``layer_type`` ("labels" or "image", written by the Labels
    writers) decides; else a file name containing "label", "seg", "mask",
    "annot" or "gt" does.
    """
    if not (np.issubdtype(volume.dtype, np.integer) or volume.dtype == bool):
        return False
    if volume.metadata.get("layer_type") in ("labels", "image"):
        return volume.metadata["layer_type"] == "labels"
    return bool(_LABEL_NAME.search(Path(str(volume.source or volume.name)).name))


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


def volume_layer_data(volume: Volume, kind: str | None = None) -> LayerData:
    """The layer data tuple of a Volume: the one rule for image vs labels and their data.

    Parameters
    ----------
    volume : Volume
    kind : {"image", "labels"}, optional
        Default: "labels" when :func:`looks_like_labels`, else "image".

    Returns
    -------
    tuple
        ``(data, kwargs, kind)``: labels up to :data:`PAINTABLE_BYTES` in
        memory (paintable), anything else as the volume's (lazy) array;
        ``kwargs`` from :func:`volume_layer_kwargs`.
    """
    kind = kind or ("labels" if looks_like_labels(volume) else "image")
    data = volume.data
    if kind == "labels" and data.nbytes <= PAINTABLE_BYTES:
        data = np.asarray(data)
    return data, volume_layer_kwargs(volume), kind


def multiscale_layer_data(levels: Sequence[Volume], kind: str | None = None) -> LayerData:
    """The layer data tuple of a pyramid (level 0 first): one multiscale layer.

    Parameters
    ----------
    levels : sequence of Volume
        Each level with its own voxel size
        (:func:`~napari_anatomics.io.omezarr.open_multiscale`).
    kind : {"image", "labels"}, optional
        As for :func:`volume_layer_data`; labels are level 0 only (paintable).

    Returns
    -------
    tuple
        ``(data, kwargs, kind)``: for an image of several levels, ``data`` is the
        list of level arrays, ``kwargs`` has ``multiscale=True`` and level 0's scale
        (napari scales the others by their shapes).
    """
    data, options, kind = volume_layer_data(levels[0], kind)
    if kind == "image" and len(levels) > 1:
        data = [level.data for level in levels]
        options["multiscale"] = True
    return data, options, kind


def add_volume(viewer, volume: Volume, kind: str | None = None, **kwargs: Any) -> Layer:
    """Add a Volume to the viewer as :func:`volume_layer_data` makes it.

    Parameters
    ----------
    kind : {"image", "labels"}, optional
        Default: guessed by :func:`looks_like_labels`.
    **kwargs
        Replace the layer's keyword arguments (``name``...).
    """
    data, options, kind = volume_layer_data(volume, kind)
    options.update(kwargs)
    add = viewer.add_labels if kind == "labels" else viewer.add_image
    return add(data, **options)


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
