"""Image Tools: open a stack with its voxel size, combine a folder of slices into one stack."""

from __future__ import annotations

from pathlib import Path

from napari.utils.notifications import show_info
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFormLayout,
    QGroupBox,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
)

from ...core.progress import CancelToken, Job
from ...core.volume import Volume, parse_voxel_size
from ...io.combine import combine_slices
from ...io.read import open_volume
from ..fields import tip
from ..jobs import JobPanel
from ..layers import PathEdit, add_volume
from ..worker import until_cancelled

FORMATS = {"zarr (chunked, any size)": ".zarr", "TIFF": ".tif", "HDF5": ".h5"}
STACK_FILTER = "Stacks (*.tif *.tiff *.h5 *.hdf5 *.zarr);;All files (*)"


class ImageToolsWidget(JobPanel):
    """Open an EM stack, or combine a folder of 2D slices into one stack on disk.

    Its job (Combine) is a :class:`~napari_anatomics.napari.jobs.JobPanel` run;
    Cancel stops it and its half-written output is removed.

    Parameters
    ----------
    napari_viewer : napari.viewer.Viewer
    """

    title = "Image Tools"

    def __init__(self, napari_viewer) -> None:
        super().__init__(
            napari_viewer,
            start_text="Combine",
            stop_text="Cancel",
            status="Slices are read in natural order: img_2 before img_10.",
        )
        #: The Combine and Cancel buttons (the panel's Start and Stop).
        self.combine_button, self.cancel_button = self.start_button, self.stop_button

        self.voxel_edit = tip(QLineEdit(), "image_tools.voxel_size")
        self.voxel_edit.setPlaceholderText("from the file, else 10,10,40")

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
        combine_box = QGroupBox("Combine slices into a stack")
        form = QFormLayout(combine_box)
        form.addRow("Slices:", self.folder_edit)
        form.addRow("Format:", self.format_combo)
        form.addRow("Output:", self.out_edit)
        form.addRow(self.overwrite_check)
        form.addRow(self.button_row())
        form.addRow(self.progress)

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
        add_volume(self.viewer, volume)
        self.status.setText(f"Added {volume.describe()}")

    # ---- actions -----------------------------------------------------------------------
    def open_stack(self) -> Volume | None:
        """Open the chosen stack lazily and add it as a layer with its voxel size."""
        try:
            volume = open_volume(self.open_path.text(), voxel_size=self.voxel_size())
        except Exception as err:
            self.fail(f"could not open: {err}")
            return None
        self._add(volume)
        return volume

    def combine(self):
        """Combine the slice folder into the output stack in a background job."""
        return self.start()

    def make_job(self, cancel: CancelToken) -> Job[Volume] | None:
        """The combine job of the chosen folder and output (stopped by Cancel)."""
        folder, out = self.folder_edit.text(), self.out_edit.text()
        if not folder or not out:
            raise ValueError("choose a folder of slices and an output file")
        job = combine_slices(
            folder, out, voxel_size=self.voxel_size(), overwrite=self.overwrite_check.isChecked()
        )
        self.description = f"Combining {Path(folder).name}"
        return until_cancelled(job, cancel)

    def on_result(self, volume: Volume) -> None:
        """Add the combined stack to the viewer."""
        show_info(f"Combined {volume.shape[0]} slices into {volume.source}")
        self._add(volume)
