"""Export: the stats table (CSV), meshes and point clouds (.ply), labels; Neuroglancer.

One button runs the chosen exports one after the other in a worker thread:
:func:`~napari_anatomics.analyze.measure.measure_job` +
:func:`~napari_anatomics.analyze.measure.write_csv`,
:func:`~napari_anatomics.analyze.meshes.export_meshes` (meshes, then point clouds) and
:func:`~napari_anatomics.io.write.write_volume_job` (OME-Zarr, zarr, TIFF, HDF5).

"View in Neuroglancer" serves the image and labels layers to a local Neuroglancer
viewer (:func:`~napari_anatomics.tasks.view.serve`), with the objects'
measurements as segment properties when the labels' ``features`` hold them
(Proofread & Stats, Layers > Measure); it shows the link and opens it in the
browser. Closing the panel or the viewer stops serving.
"""

from __future__ import annotations

import os
from pathlib import Path

import dask.array as da
import numpy as np
from napari.layers import Image, Labels
from napari.utils.notifications import show_info
from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
)

from ...core.progress import CancelToken, Job, stage
from ...io.outputs import safe_file_name
from ..features import features_table
from ..fields import tip
from ..jobs import JobPanel
from ..layers import LayerCombo, PathEdit, layer_array, layer_volume
from ..worker import until_cancelled

LABEL_FORMATS = {
    "zarr (chunked, for big stacks)": ".zarr",
    "OME-Zarr (multiscale, NGFF)": ".ome.zarr",
    "TIFF": ".tif",
    "HDF5": ".h5",
}


def export_targets(
    name: str, table: bool, meshes: bool, points: bool, labels_suffix: str | bool
) -> dict[str, str]:
    """The names an export writes in its folder, by kind (files, or folders of .ply files)."""
    targets: dict[str, str] = {}
    if table:
        targets |= {"table": f"{name}_objects.csv", "totals": f"{name}_totals.csv"}
    if meshes:
        targets["meshes"] = f"{name}_meshes"
    if points:
        targets["points"] = f"{name}_points"
    if labels_suffix:
        targets["labels"] = f"{name}_labels{labels_suffix}"
    return targets


def check_export(
    folder: Path, targets: dict[str, str], shape, *, overwrite: bool
) -> dict[str, list[Path]]:
    """Check an export before any work: nothing replaced unless asked, room to write it.

    Returns the earlier .ply files of the mesh and point-cloud folders, which a
    finished export replaces (with ``overwrite``).
    """
    from ...io.outputs import (
        MESH_PATTERNS,
        OutputError,
        check_new_file,
        check_output_folder,
        check_writable,
    )

    if folder.exists() and not folder.is_dir():
        raise OutputError(f"{folder}: is a file; choose a folder for the files")
    hint = "tick 'Replace files of an earlier export' (or change the name)"
    earlier: dict[str, list[Path]] = {}
    for kind, target in targets.items() if folder.is_dir() else ():  # a new folder is made
        path = folder / target
        if kind in ("meshes", "points"):
            earlier[kind] = check_output_folder(
                path, overwrite=overwrite, patterns=MESH_PATTERNS, option="", hint=hint
            )
        elif kind == "labels" and path.suffix == ".zarr" and path.is_dir():
            if not overwrite:
                raise FileExistsError(f"{path}: already exists and is kept; {hint}")
        else:
            check_new_file(path, overwrite=overwrite, option="", hint=hint)
    labels_bytes = 4 * int(np.prod(shape)) // 2 if "labels" in targets else 0
    check_writable(folder, labels_bytes + 2**20)
    return earlier


def default_export_folder() -> Path:
    """``~/anatomics-exports`` (``$ANATOMICS_EXPORTS`` overrides)."""
    return Path(os.environ.get("ANATOMICS_EXPORTS", Path.home() / "anatomics-exports"))


class ExportWidget(JobPanel):
    """Write the results of a labels layer to files.

    Stop ends the export after the current step; files already complete are kept.

    Parameters
    ----------
    napari_viewer : napari.viewer.Viewer
    """

    title = "Export"

    def __init__(self, napari_viewer) -> None:
        super().__init__(napari_viewer, start_text="Export")
        #: The Export button (the panel's Start).
        self.export_button = self.start_button
        self.written: list[str] = []

        self.labels_combo = LayerCombo(napari_viewer, Labels)
        self.image_combo = LayerCombo(napari_viewer, Image, allow_none=True)
        self.folder = PathEdit("folder", placeholder="folder for the files")
        self.folder.setText(str(default_export_folder()))
        self.base_name = QLineEdit()
        self.base_name.setPlaceholderText("file names start with this (default: layer name)")
        self.table = QCheckBox("Table of objects + totals (.csv)")
        self.table.setChecked(True)
        self.meshes = QCheckBox("Meshes (.ply)")
        self.points = QCheckBox("Point clouds (.ply)")
        self.combined = QCheckBox("One file for all objects (vertex id tells them apart)")
        self.combined.setChecked(True)
        self.smooth = QSpinBox()
        self.smooth.setRange(0, 200)
        self.smooth.setValue(10)
        self.downscale = tip(QSpinBox(), "export.downscale")
        self.downscale.setRange(1, 16)
        self.surface_only = QCheckBox("Surface voxels only")
        self.surface_only.setChecked(True)
        self.overwrite = tip(
            QCheckBox("Replace files of an earlier export with this name"), "export.overwrite"
        )
        self.labels_file = QCheckBox("Labels")
        self.label_format = QComboBox()
        self.label_format.addItems(list(LABEL_FORMATS))
        self.files = QListWidget()
        self.view_button = tip(QPushButton("View in Neuroglancer"), "export.neuroglancer")
        self.view_button.clicked.connect(lambda: self.view_in_neuroglancer())
        self.view_link = QLabel()
        self.view_link.setOpenExternalLinks(True)
        self.view_link.setTextInteractionFlags(Qt.TextBrowserInteraction)
        #: The Neuroglancer viewer being served (None when none).
        self.view = None

        source = QFormLayout()
        source.addRow("Labels", self.labels_combo)
        source.addRow("Image (optional)", self.image_combo)
        source.addRow("Folder", self.folder)
        source.addRow("Name", self.base_name)
        source.addRow("", self.overwrite)
        what = QGroupBox("What to write")
        form = QFormLayout(what)
        form.addRow(self.table)
        form.addRow(self.meshes)
        form.addRow("  smoothing", self.smooth)
        form.addRow(self.points)
        form.addRow("", self.surface_only)
        form.addRow("  keep every n-th voxel", self.downscale)
        form.addRow("", self.combined)
        labels_row = QHBoxLayout()
        labels_row.addWidget(self.labels_file)
        labels_row.addWidget(self.label_format, stretch=1)
        form.addRow(labels_row)
        layout = QVBoxLayout(self)
        layout.addLayout(source)
        layout.addWidget(what)
        layout.addLayout(self.button_row())
        layout.addWidget(self.progress)
        layout.addWidget(self.status)
        layout.addWidget(QLabel("Files written:"))
        layout.addWidget(self.files, stretch=1)
        layout.addWidget(self.view_button)
        layout.addWidget(self.view_link)

    def make_job(self, cancel: CancelToken) -> Job[list]:
        """The chosen exports, one after the other, checked before any work."""
        from ...analyze.measure import measure_job, summarize, write_csv
        from ...analyze.meshes import export_meshes
        from ...core.files import staged_folder
        from ...io.write import write_volume_job

        layer = self.labels_combo.layer()
        if layer is None:
            raise ValueError("choose a labels layer")
        if not self.folder.text():
            raise ValueError("choose a folder for the files")
        chosen = [self.table, self.meshes, self.points, self.labels_file]
        if not any(box.isChecked() for box in chosen):
            raise ValueError("tick at least one thing to write")
        volume = layer_volume(layer)
        labels = layer_array(layer)
        if isinstance(labels, np.ndarray):
            labels = labels.copy()  # a snapshot: painting goes on while it is written
        voxel_size, source = volume.voxel_size, volume.source or layer.name
        image_layer = self.image_combo.layer()
        image = layer_array(image_layer) if image_layer is not None else None
        if image is not None and tuple(image.shape) != tuple(labels.shape):
            image = None
        folder = Path(self.folder.text())
        name = safe_file_name(self.base_name.text().strip() or layer.name, default="labels")
        table, meshes, points = (b.isChecked() for b in (self.table, self.meshes, self.points))
        options = {
            "combined": self.combined.isChecked(),
            "downscale": (1, self.downscale.value(), self.downscale.value()),
        }
        smooth, surface = self.smooth.value(), self.surface_only.isChecked()
        label_suffix = LABEL_FORMATS[self.label_format.currentText()]
        write_labels = self.labels_file.isChecked()
        targets = export_targets(name, table, meshes, points, write_labels and label_suffix)
        overwrite = self.overwrite.isChecked()
        # an OSError here is shown in one line, before any work
        earlier = check_export(folder, targets, labels.shape, overwrite=overwrite)

        def meshes_job(kind: str, **kwargs):
            sub = folder / targets[kind]
            with staged_folder(sub, replaces=earlier.get(kind, [])) as stage:
                files = yield from export_meshes(
                    labels, stage, voxel_size, index=index, cancel=cancel, **options, **kwargs
                )
            return [sub / Path(f).name for f in files]

        def job():
            nonlocal index
            folder.mkdir(parents=True, exist_ok=True)
            written: list = []
            if table or meshes or points:
                index = yield from stage(
                    "measuring", measure_job(labels, voxel_size, image=image, cancel=cancel)
                )
            if table:
                written.append(write_csv(index, folder / targets["table"], voxel_size, source))
                totals = summarize(index, labels.shape, voxel_size).reset_index()
                written.append(write_csv(totals, folder / targets["totals"], voxel_size, source))
            if meshes:
                written += yield from stage("meshes", meshes_job("meshes", smooth=smooth))
            if points:
                written += yield from stage(
                    "point clouds", meshes_job("points", points=True, surface_points=surface)
                )
            if write_labels:
                data = labels if isinstance(labels, (np.ndarray, da.Array)) else da.asarray(labels)
                target, kept = folder / targets["labels"], overwrite
                write = write_volume_job(
                    data, target, voxel_size=voxel_size, labels=True, overwrite=kept
                )
                path = yield from stage("labels", until_cancelled(write, cancel))
                written.append(str(path))
            return written

        index = None

        self.files.clear()
        self.written = []
        self.description = f"Exporting {layer.name}"
        return job()

    def on_result(self, written: list) -> None:
        """List the files written."""
        self.written = [str(p) for p in written]
        for path in self.written:
            self.files.addItem(str(path))
        self.status.setText(f"{len(self.written)} file(s) written in {self.folder.text()}")
        show_info(f"Export finished: {len(self.written)} file(s) in {self.folder.text()}")

    # ---- Neuroglancer ------------------------------------------------------------------------
    def view_in_neuroglancer(self, open_browser: bool = True) -> str | None:
        """Serve the image and labels layers to a local Neuroglancer viewer; return its link.

        The labels' measurements (their ``features``) become segment properties. A
        view served before is stopped first.
        """
        from ...tasks.view import serve

        image_layer, labels_layer = self.image_combo.layer(), self.labels_combo.layer()
        if image_layer is None:
            self.fail("choose an image layer to view (and its labels)")
            return None
        labels, tables = [], []
        if labels_layer is not None:
            labels.append(layer_volume(labels_layer))
            tables.append(features_table(labels_layer.features))
        self.close_view()
        try:
            self.view = serve(layer_volume(image_layer), labels, tables)
        except (ValueError, ImportError, OSError) as err:
            self.fail(err)
            return None
        url = self.view.url
        self.view_link.setText(f'Neuroglancer: <a href="{url}">{url}</a>')
        self.status.setText(f"Serving {', '.join(self.view.layers)} to Neuroglancer")
        self._watch_window()
        if open_browser:
            import webbrowser

            webbrowser.open(url)
        return url

    def close_view(self) -> None:
        """Stop serving the Neuroglancer viewer (if any)."""
        if self.view is not None:
            self.view.close()
            self.view = None
            self.view_link.setText("")

    def stop_all(self) -> None:
        """Stop every run and the Neuroglancer viewer (the panel or the viewer is closing)."""
        super().stop_all()
        self.close_view()
