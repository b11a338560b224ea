"""Image Tools: open a stack with its voxel size, combine a folder of slices into one stack."""

from __future__ import annotations

from pathlib import Path

from napari.utils.notifications import show_error, show_info
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from ...core.volume import Volume, parse_voxel_size
from ...io.read import open_volume
from ...io.slices import combine_slices
from ..io import looks_like_labels
from ..jobs import start_job
from ..layers import PathEdit, add_volume

FORMATS = {"zarr (chunked, any size)": ".zarr", "TIFF": ".tif", "HDF5": ".h5"}
STACK_FILTER = "Stacks (*.tif *.tiff *.h5 *.hdf5 *.zarr);;All files (*)"


class ImageToolsWidget(QWidget):
    """Open an EM stack, or combine a folder of 2D slices into one stack on disk.

    Parameters
    ----------
    napari_viewer : napari.viewer.Viewer
    """

    def __init__(self, napari_viewer) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.worker = None

        self.voxel_edit = QLineEdit()
        self.voxel_edit.setPlaceholderText("from the file, else 10,10,40")
        self.voxel_edit.setToolTip("Voxel size X,Y,Z in nanometres; overrides the file's")

        self.open_path = PathEdit("open", STACK_FILTER, "stack.tif, file.h5:key, folder ...")
        self.open_button = QPushButton("Open")
        self.open_button.clicked.connect(self.open_stack)
        open_box = QGroupBox("Open a stack")
        form = QFormLayout(open_box)
        form.addRow("Stack:", self.open_path)
        form.addRow(self.open_button)

        self.folder_edit = PathEdit("folder", placeholder="folder of 2D slices (tif, png, jpg)")
        self.folder_edit.edit.textChanged.connect(self._suggest_output)
        self.format_combo = QComboBox()
        self.format_combo.addItems(FORMATS)
        self.format_combo.currentTextChanged.connect(self._on_format)
        self.out_edit = PathEdit("save", STACK_FILTER, "output stack")
        self.overwrite_check = QCheckBox("replace an existing output")
        self.combine_button = QPushButton("Combine")
        self.combine_button.clicked.connect(self.combine)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.cancel)
        buttons = QHBoxLayout()
        buttons.addWidget(self.combine_button)
        buttons.addWidget(self.cancel_button)
        combine_box = QGroupBox("Combine slices into a stack")
        form = QFormLayout(combine_box)
        form.addRow("Slices:", self.folder_edit)
        form.addRow("Format:", self.format_combo)
        form.addRow("Output:", self.out_edit)
        form.addRow(self.overwrite_check)
        form.addRow(buttons)

        self.status = QLabel("Slices are read in natural order: img_2 before img_10.")
        self.status.setWordWrap(True)

        layout = QVBoxLayout(self)
        voxel_row = QFormLayout()
        voxel_row.addRow("Voxel size (nm, X,Y,Z):", self.voxel_edit)
        layout.addLayout(voxel_row)
        layout.addWidget(open_box)
        layout.addWidget(combine_box)
        layout.addWidget(self.status)
        layout.addStretch(1)

    # ---- helpers -----------------------------------------------------------------------
    def voxel_size(self) -> tuple[float, float, float] | None:
        """The typed voxel size as (z, y, x) nm, or None when empty."""
        text = self.voxel_edit.text().strip()
        return parse_voxel_size(text) if text else None

    def _suffix(self) -> str:
        return FORMATS[self.format_combo.currentText()]

    def _suggest_output(self, folder: str) -> None:
        folder = folder.strip().rstrip("/\\")
        if folder:
            path = Path(folder)
            self.out_edit.setText(str(path.parent / (path.name + self._suffix())))

    def _on_format(self, _text: str) -> None:
        out = self.out_edit.text()
        if out:
            self.out_edit.setText(str(Path(out).with_suffix(self._suffix())))

    def _add(self, volume: Volume) -> None:
        kind = "labels" if looks_like_labels(volume) else "image"
        add_volume(self.viewer, volume, kind)
        self.status.setText(f"Added {volume.describe()}")

    # ---- actions -----------------------------------------------------------------------
    def open_stack(self) -> Volume | None:
        """Open the chosen stack lazily and add it as a layer with its voxel size."""
        try:
            volume = open_volume(self.open_path.text(), voxel_size=self.voxel_size())
        except Exception as err:
            show_error(f"Open: {err}")
            self.status.setText(f"Could not open: {err}")
            return None
        self._add(volume)
        return volume

    def combine(self):
        """Combine the slice folder into the output stack in a background job."""
        folder, out = self.folder_edit.text(), self.out_edit.text()
        if not folder or not out:
            show_error("Combine: choose a folder of slices and an output file")
            return None
        try:
            voxel_size = self.voxel_size()
        except ValueError as err:
            show_error(str(err))
            return None
        overwrite = self.overwrite_check.isChecked()

        done: list[Volume] = []

        def on_event(event) -> None:
            if not done:  # a late progress event must not hide the result
                self.status.setText(f"Combining: {event.message}")

        def on_done(volume: Volume) -> None:
            done.append(volume)
            show_info(f"Combined {volume.shape[0]} slices into {out}")
            self._add(volume)

        self.combine_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.worker = start_job(
            lambda: combine_slices(folder, out, voxel_size=voxel_size, overwrite=overwrite),
            description="Combine slices",
            on_event=on_event,
            on_done=on_done,
            on_finish=self._finished,
        )
        return self.worker

    def cancel(self) -> None:
        """Stop the running combine; its temporary output is removed."""
        if self.worker is not None:
            self.worker.quit()

    def _finished(self) -> None:
        self.combine_button.setEnabled(True)
        self.cancel_button.setEnabled(False)
        self.worker = None
