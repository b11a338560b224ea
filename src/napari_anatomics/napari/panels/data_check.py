"""Data Check: run :func:`~napari_anatomics.datacheck.checks.check` on two layers."""

from __future__ import annotations

import numpy as np
import pandas as pd
from napari.layers import Image, Labels
from qtpy.QtCore import Qt
from qtpy.QtGui import QBrush, QColor
from qtpy.QtWidgets import (
    QComboBox,
    QFormLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QVBoxLayout,
)

from ...core.progress import CancelToken, Job
from ...datacheck.checks import CheckReport, Finding, check
from ..fields import TOOLTIPS
from ..jobs import JobPanel
from ..layers import LayerCombo, layer_volume
from ..table import FrameTable
from ..worker import call_job

TASKS = ("instance", "semantic", "(not set)")
#: Row colours per severity (readable on napari's dark and light themes).
COLORS = {"error": "#c62828", "warning": "#ef6c00", "info": "#546e7a"}
ICONS = {"error": "\u2716", "warning": "\u26a0", "info": "\u2139"}


class DataCheckWidget(JobPanel):
    """Check an image + labels pair; click a finding to go to its slice.

    Parameters
    ----------
    napari_viewer : napari.viewer.Viewer
    """

    title = "Data Check"

    def __init__(self, napari_viewer) -> None:
        super().__init__(napari_viewer, start_text="Run Check", stop_text=None)
        self.report: CheckReport | None = None
        #: The Run Check button (the panel's Start).
        self.run_button = self.start_button

        self.image_combo = LayerCombo(napari_viewer, Image)
        self.labels_combo = LayerCombo(napari_viewer, Labels)
        self.task_combo = QComboBox()
        self.task_combo.addItems(TASKS)
        self.verdict = QLabel("Choose an image and its labels, then Run Check.")
        self.verdict.setWordWrap(True)
        self.findings = QListWidget()
        self.findings.setWordWrap(True)
        self.findings.setSelectionMode(QListWidget.NoSelection)  # keep severity colours
        self.findings.itemClicked.connect(self._on_item)
        self.summary = QLabel()
        self.summary.setWordWrap(True)
        self.values = FrameTable(id_column="value")
        self.values.setMaximumHeight(180)
        self.values.horizontalHeader().setSortIndicator(1, Qt.DescendingOrder)  # most voxels
        self.values.row_clicked.connect(self.select_value)

        form = QFormLayout()
        form.addRow("Image:", self.image_combo)
        form.addRow("Labels:", self.labels_combo)
        form.addRow("Task:", self.task_combo)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.run_button)
        layout.addWidget(self.status)
        layout.addWidget(self.verdict)
        layout.addWidget(self.findings, 2)
        layout.addWidget(self.summary)
        layout.addWidget(QLabel("Label values (click one to highlight it):"))
        layout.addWidget(self.values, 1)

    def task(self) -> str | None:
        """The chosen task, or None."""
        text = self.task_combo.currentText()
        return text if text in ("instance", "semantic") else None

    def run_check(self):
        """Run the check off the GUI thread; the report shows when done."""
        return self.start()

    def make_job(self, cancel: CancelToken) -> Job[CheckReport]:
        """The check of the chosen layers (quick: no Stop)."""
        image, labels = self.image_combo.layer(), self.labels_combo.layer()
        if image is None or labels is None:
            raise ValueError("choose both an image and a labels layer")
        self.verdict.setText("Checking ...")
        volumes = layer_volume(image), layer_volume(labels)
        return call_job(check, *volumes, self.task(), message="checking")

    def on_result(self, report: CheckReport) -> None:
        """Show the report."""
        super().on_result(report)
        self.show_report(report)

    def show_report(self, report: CheckReport) -> None:
        """Fill the list of findings, the summary and the value table."""
        self.report = report
        if report.usable:
            warn = f" with {len(report.warnings)} warning(s)" if report.warnings else ""
            self.verdict.setText(f"<b style='color:#43a047'>Usable{warn}.</b>")
        else:
            self.verdict.setText(
                f"<b style='color:{COLORS['error']}'>Not usable: fix the "
                f"{len(report.errors)} error(s) below.</b>"
            )
        self.findings.clear()
        order = ("error", "warning", "info")
        for finding in sorted(report.findings, key=lambda f: order.index(f.severity)):
            where = f"  \u2192 slice {finding.slice}" if finding.slice is not None else ""
            item = QListWidgetItem(f"{ICONS[finding.severity]} {finding.message}{where}")
            item.setData(Qt.UserRole, finding)
            item.setForeground(QBrush(QColor("white")))
            item.setBackground(QBrush(QColor(COLORS[finding.severity])))
            item.setToolTip(
                TOOLTIPS["data_check.finding"] if finding.slice is not None else finding.message
            )
            self.findings.addItem(item)
        if report.kind is not None:
            n_values = sum(1 for v in report.histogram if v != 0)
            objects = f", {report.n_objects} connected objects" if report.n_objects else ""
            slices = len(report.annotated_slices)
            self.summary.setText(
                f"Labels look <b>{report.kind}</b>: {n_values} values besides 0{objects}. "
                f"Annotated slices: {slices} of {report.n_slices}."
            )
        total = sum(report.histogram.values()) or 1
        frame = pd.DataFrame(
            {
                "value": list(report.histogram),
                "voxels": list(report.histogram.values()),
                "%": [100 * n / total for n in report.histogram.values()],
            }
        )
        self.values.set_frame(frame)

    def _on_item(self, item: QListWidgetItem) -> None:
        finding = item.data(Qt.UserRole)
        if isinstance(finding, Finding):
            self.go_to(finding)

    def go_to(self, finding: Finding) -> None:
        """Show the finding's slice (and voxel, when it has one) in the viewer."""
        if finding.slice is None:
            return
        layer = self.labels_combo.layer() or self.image_combo.layer()
        if layer is None or layer.ndim < 3:
            return
        if self.viewer.dims.ndisplay == 3:
            self.viewer.dims.ndisplay = 2
        position = finding.position or (finding.slice, *(s // 2 for s in layer.data.shape[-2:]))
        world = layer.data_to_world(position)
        self.viewer.dims.set_point(0, world[0])
        if finding.position is not None:
            self.viewer.camera.center = tuple(world[-2:])
            self.viewer.camera.zoom = max(self.viewer.camera.zoom, 8.0 / min(layer.scale[-2:]))
            if isinstance(layer, Labels):  # show only the object the finding is about
                self.select_value(int(np.asarray(layer.data[tuple(finding.position)])))

    def select_value(self, value: int) -> None:
        """Highlight one label value in the labels layer."""
        layer = self.labels_combo.layer()
        if layer is None:
            return
        layer.selected_label = int(value)
        layer.show_selected_label = True
