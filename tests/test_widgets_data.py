"""Image Tools and Data Check widgets in a napari viewer (pytest-qt)."""

from __future__ import annotations

import numpy as np
import tifffile
from qtpy.QtCore import Qt

from napari_anatomics.io.samples import load_sample
from napari_anatomics.napari.layers import add_volume
from napari_anatomics.napari.panels.data_check import DataCheckWidget
from napari_anatomics.napari.panels.image_tools import ImageToolsWidget

#: qtbot timeouts only detect a hang, they are no speed target: two minutes is far
#: above any step here on a slow or busy machine, and a hang still fails.
HANG_MS = 120_000


def test_image_tools_combines_a_folder_and_opens_stacks(make_napari_viewer, qtbot, tmp_path):
    viewer = make_napari_viewer()
    widget = ImageToolsWidget(viewer)
    qtbot.addWidget(widget)
    folder = tmp_path / "slices"
    folder.mkdir()
    for i in range(1, 11):
        tifffile.imwrite(folder / f"img_{i}.tif", np.full((24, 32), i, np.uint8))
    widget.voxel_edit.setText("8,8,30")
    widget.folder_edit.setText(str(folder))
    assert widget.out_edit.text() == str(tmp_path / "slices.zarr")  # suggested
    widget.format_combo.setCurrentText("HDF5")
    assert widget.out_edit.text() == str(tmp_path / "slices.h5")
    worker = widget.combine()
    assert worker is not None and not widget.combine_button.isEnabled()
    qtbot.waitUntil(lambda: len(viewer.layers) == 1, timeout=HANG_MS)
    layer = viewer.layers[0]
    np.testing.assert_array_equal(np.asarray(layer.data[:, 0, 0]), np.arange(1, 11))
    assert tuple(layer.scale) == (30.0, 8.0, 8.0)
    qtbot.waitUntil(widget.combine_button.isEnabled, timeout=HANG_MS)
    assert (tmp_path / "slices.h5").is_file()

    widget.open_path.setText(str(tmp_path / "slices.h5"))
    widget.voxel_edit.setText("")
    volume = widget.open_stack()
    assert volume.voxel_size == (30.0, 8.0, 8.0) and len(viewer.layers) == 2
    widget.open_path.setText(str(tmp_path / "missing.tif"))
    assert widget.open_stack() is None and "no such file" in widget.status.text()


def test_data_check_reports_and_jumps_to_slice(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    image, labels = load_sample()
    add_volume(viewer, image, "image", name="image")
    layer = add_volume(viewer, labels, "labels", name="labels")
    widget = DataCheckWidget(viewer)
    qtbot.addWidget(widget)
    assert widget.image_combo.layer().name == "image"
    assert widget.labels_combo.layer() is layer
    widget.task_combo.setCurrentText("instance")
    widget.run_check()
    qtbot.waitUntil(lambda: widget.report is not None, timeout=HANG_MS)
    report = widget.report
    assert report.usable and "Usable" in widget.verdict.text()
    assert widget.findings.count() == len(report.findings)
    assert widget.values.rowCount() == len(report.histogram) == 62
    # the sample keeps two stray fragments; clicking the finding shows its slice
    items = [widget.findings.item(i) for i in range(widget.findings.count())]
    finding = report.fragments[0]
    fragment_item = next(i for i in items if i.data(Qt.UserRole).code == "stray_fragments")
    assert fragment_item.text().endswith(f"slice {finding[2][0]}")
    viewer.dims.set_current_step(0, 0)
    widget.findings.itemClicked.emit(fragment_item)
    assert viewer.dims.current_step[0] == finding[2][0] != 0
    widget.select_value(finding[0])
    assert layer.selected_label == finding[0] and layer.show_selected_label
    qtbot.waitUntil(widget.run_button.isEnabled, timeout=HANG_MS)

    layer.data = np.zeros_like(layer.data)  # nothing painted: not usable
    widget.run_check()
    qtbot.waitUntil(lambda: widget.report is not report, timeout=HANG_MS)
    assert not widget.report.usable and "Not usable" in widget.verdict.text()
    qtbot.waitUntil(widget.run_button.isEnabled, timeout=HANG_MS)
