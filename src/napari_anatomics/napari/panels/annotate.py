"""Annotate: a labels layer matching an image, named classes, annotated-slice tracking.

Slices that hold no paint at all are *unknown*, not background: the list
shows which slices are annotated, and the layer's metadata keeps it
(``metadata["annotated_slices"]``) for training.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from napari.layers import Image, Labels
from napari.utils.notifications import show_info
from qtpy.QtCore import Qt, QTimer
from qtpy.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPlainTextEdit,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
)

from ...core.progress import CancelToken, Job
from ..jobs import JobPanel
from ..layers import LayerCombo, layer_array, layer_volume, volume_layer_kwargs
from ..worker import call_job

TASKS = ("semantic", "instance")


def annotated_slices(data) -> np.ndarray:
    """Number of painted voxels in each z slice of a (z, y, x) or (y, x) label array."""
    array = np.asarray(data)
    if array.ndim == 2:
        array = array[None]
    return np.count_nonzero(array.reshape(array.shape[0], -1), axis=1)


class AnnotateWidget(JobPanel):
    """Make and follow an annotation layer for one image; check it (the panel's job).

    Parameters
    ----------
    napari_viewer : napari.viewer.Viewer
    """

    title = "Annotate"

    def __init__(self, napari_viewer) -> None:
        super().__init__(napari_viewer, start_text="Check image + labels", stop_text=None)
        #: The Data Check button (the panel's Start).
        self.check_button = self.start_button
        self._watched: Labels | None = None
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(200)
        self._timer.timeout.connect(self.update_slices)

        self.image_combo = LayerCombo(napari_viewer, Image)
        self.task_combo = QComboBox()
        self.task_combo.addItems(TASKS)
        self.task_combo.currentTextChanged.connect(self._on_task)
        self.class_table = QTableWidget(0, 2)
        self.class_table.setHorizontalHeaderLabels(["value", "class name"])
        self.class_table.verticalHeader().setVisible(False)
        self.class_table.horizontalHeader().setStretchLastSection(True)
        self.class_table.setSelectionBehavior(QAbstractItemView.SelectRows)
        self.class_table.setMaximumHeight(100)
        self.class_table.itemChanged.connect(self._on_classes_edited)
        self.class_table.cellClicked.connect(lambda row, _: self.paint_class(row))
        self.add_class_button = QPushButton("Add class")
        self.add_class_button.clicked.connect(lambda: self.add_class())
        self.remove_class_button = QPushButton("Remove class")
        self.remove_class_button.clicked.connect(self._remove_class)
        self.new_button = QPushButton("New labels layer for this image")
        self.new_button.clicked.connect(self.new_labels_layer)

        self.labels_combo = LayerCombo(napari_viewer, Labels)
        self.labels_combo.layer_changed.connect(self._watch)
        self.next_id_button = QPushButton("Paint a new object (next free id)")
        self.next_id_button.clicked.connect(self.next_free_id)
        self.summary = QLabel()
        self.summary.setWordWrap(True)
        self.slice_list = QListWidget()
        self.slice_list.setMaximumHeight(100)
        self.slice_list.itemClicked.connect(self._go_to_slice)
        self.check_text = QPlainTextEdit()
        self.check_text.setReadOnly(True)
        self.check_text.setPlaceholderText("Data Check report appears here")
        self.check_text.setMinimumHeight(320)

        setup = QGroupBox("New annotation")
        form = QFormLayout(setup)
        form.addRow("Image", self.image_combo)
        form.addRow("Task", self.task_combo)
        form.addRow(self.class_table)
        buttons = QHBoxLayout()
        buttons.addWidget(self.add_class_button)
        buttons.addWidget(self.remove_class_button)
        form.addRow(buttons)
        form.addRow(self.new_button)
        follow = QGroupBox("Annotation")
        follow_layout = QFormLayout(follow)
        follow_layout.addRow("Labels", self.labels_combo)
        follow_layout.addRow(self.next_id_button)
        follow_layout.addRow(self.summary)
        follow_layout.addRow(self.slice_list)
        follow_layout.addRow(self.check_button)
        follow_layout.addRow(self.status)
        follow_layout.addRow(self.check_text)
        layout = QVBoxLayout(self)
        layout.addWidget(setup)
        layout.addWidget(follow)
        self.add_class("chloroplast")
        self._on_task(self.task_combo.currentText())
        self._watch(self.labels_combo.layer())

    # ---- classes -------------------------------------------------------------------------
    def classes(self) -> dict[int, str]:
        """The class table as {label value: name}."""
        result = {}
        for row in range(self.class_table.rowCount()):
            value_item, name_item = self.class_table.item(row, 0), self.class_table.item(row, 1)
            try:
                value = int(value_item.text()) if value_item else row + 1
            except ValueError:
                value = row + 1
            if value < 1:
                continue
            result[value] = name_item.text().strip() if name_item else f"class {value}"
        return result

    def add_class(self, name: str | None = None) -> None:
        """Append a class with the next free label value."""
        value = max(self.classes(), default=0) + 1
        row = self.class_table.rowCount()
        self.class_table.blockSignals(True)
        self.class_table.insertRow(row)
        self.class_table.setItem(row, 0, QTableWidgetItem(str(value)))
        self.class_table.setItem(row, 1, QTableWidgetItem(name or f"class {value}"))
        self.class_table.blockSignals(False)
        self._on_classes_edited()

    def _remove_class(self) -> None:
        if self.class_table.rowCount() > 1:
            self.class_table.removeRow(self.class_table.currentRow())
            self._on_classes_edited()

    def _on_task(self, task: str) -> None:
        semantic = task == "semantic"
        self.add_class_button.setEnabled(semantic)
        self.remove_class_button.setEnabled(semantic)
        if not semantic:
            while self.class_table.rowCount() > 1:
                self.class_table.removeRow(self.class_table.rowCount() - 1)
        self._sync_buttons()

    def _on_classes_edited(self, *_) -> None:
        layer = self.labels_combo.layer()
        if layer is not None and layer.metadata.get("task") == "semantic":
            self._describe_classes(layer)

    def _describe_classes(self, layer: Labels) -> None:
        classes = self.classes()
        layer.metadata["classes"] = classes
        values = [0, *classes]
        names = ["background", *classes.values()]
        layer.features = pd.DataFrame({"index": values, "class": names})

    def paint_class(self, row: int) -> None:
        """Paint with the class in table row ``row``."""
        layer = self.labels_combo.layer()
        value = list(self.classes())[row] if row < self.class_table.rowCount() else None
        if layer is None or value is None:
            return
        layer.selected_label = value
        layer.mode = "paint"
        self.viewer.layers.selection.active = layer

    # ---- labels layer -----------------------------------------------------------------------
    def new_labels_layer(self) -> Labels | None:
        """Add an empty labels layer with the chosen image's shape and voxel size."""
        image = self.image_combo.layer()
        if image is None:
            self.fail("add or open an image first, then make its labels layer")
            return None
        volume = layer_volume(image)
        task = self.task_combo.currentText()
        dtype = np.uint8 if task == "semantic" and max(self.classes()) < 256 else np.uint32
        options = volume_layer_kwargs(volume, f"{image.name} annotation")
        options["metadata"].update(task=task, classes=self.classes(), source=None)
        layer = self.viewer.add_labels(np.zeros(volume.shape, dtype=dtype), **options)
        if task == "semantic":
            self._describe_classes(layer)
        self.labels_combo.set_layer(layer)
        if task == "semantic":
            self.paint_class(0)
        else:
            self.next_free_id()
        return layer

    def next_free_id(self) -> int | None:
        """Select the smallest id above every id in use, ready to paint a new object."""
        layer = self.labels_combo.layer()
        if layer is None:
            return None
        value = int(np.max(layer_array(layer))) + 1 if layer_array(layer).size else 1
        layer.selected_label = value
        layer.mode = "paint"
        self.viewer.layers.selection.active = layer
        return value

    def _sync_buttons(self) -> None:
        layer = self.labels_combo.layer()
        task = layer.metadata.get("task") if layer is not None else None
        task = task or self.task_combo.currentText()
        self.next_id_button.setEnabled(layer is not None and task == "instance")
        self.check_button.setEnabled(layer is not None and not self.busy)

    def _watch(self, layer: Labels | None) -> None:
        if self._watched is not None:
            for emitter in (self._watched.events.paint, self._watched.events.set_data):
                emitter.disconnect(self._schedule)
        self._watched = layer
        if layer is not None:
            layer.events.paint.connect(self._schedule)
            layer.events.set_data.connect(self._schedule)
        self._sync_buttons()
        self.update_slices()

    def _schedule(self, *_) -> None:
        self._timer.start()

    def update_slices(self) -> list[int]:
        """Recount painted voxels per slice; return the annotated slice indices."""
        layer = self.labels_combo.layer()
        self.slice_list.clear()
        if layer is None:
            self.summary.setText("Choose or make a labels layer to follow the annotation.")
            return []
        counts = annotated_slices(layer_array(layer))
        done = [int(z) for z in np.flatnonzero(counts)]
        layer.metadata["annotated_slices"] = done
        n = counts.size
        if not done:
            self.summary.setText(
                f"No slice annotated yet (0 of {n}). Paint at least one slice: "
                "slices left unpainted count as unknown, not as background."
            )
        else:
            self.summary.setText(
                f"{len(done)} of {n} slices annotated. The other {n - len(done)} are unknown "
                "(not background) and training ignores them."
            )
        plane = int(np.prod(layer_array(layer).shape[-2:]))
        for z in done:
            share = 100.0 * counts[z] / plane
            item = QListWidgetItem(f"slice z={z}: {counts[z]:,} voxels painted ({share:.1f}%)")
            item.setData(Qt.UserRole, z)
            self.slice_list.addItem(item)
        return done

    def _go_to_slice(self, item: QListWidgetItem) -> None:
        layer = self.labels_combo.layer()
        if layer is None or layer.ndim < 3:
            return
        z = int(item.data(Qt.UserRole))
        world = layer.data_to_world([z, 0, 0])
        self.viewer.dims.set_point(self.viewer.dims.ndim - layer.ndim, world[0])

    # ---- data check ----------------------------------------------------------------------
    def run_check(self):
        """Run the Data Check on the image + labels pair off the GUI thread."""
        return self.start()

    def make_job(self, cancel: CancelToken) -> Job:
        """The Data Check of the chosen image and labels (quick: no Stop)."""
        from ...datacheck.checks import check

        image, labels = self.image_combo.layer(), self.labels_combo.layer()
        if image is None or labels is None:
            raise ValueError("choose both an image and a labels layer")
        task = labels.metadata.get("task") or self.task_combo.currentText()
        self.description = "Data Check"
        volumes = layer_volume(image), layer_volume(labels)
        return call_job(check, *volumes, task, message="checking")

    def on_result(self, report) -> None:
        """Show the report."""
        super().on_result(report)
        self.check_text.setPlainText(report.to_text())
        show_info("Data Check finished: see the Annotate panel")

    def on_finish(self) -> None:
        """The check ended: the buttons follow the chosen layers again."""
        super().on_finish()
        self._sync_buttons()
