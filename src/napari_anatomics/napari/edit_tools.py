"""Proofreading in 3D beyond deleting: merge picked objects, split one from seed points.

:class:`EditTools` is a group of the Proofread & Stats panel:

* **Merge**: select two or more rows of the table (Ctrl/Shift-click), *Merge* makes
  them one object (the smallest id stays).
* **Split**: *Add seeds* makes a Points layer "split seeds"; click points on the object
  for its first part, raise *Part* to 2 and click the second part (and so on); *Split*
  grows the parts by a seeded watershed inside the object's box
  (:func:`napari_anatomics.analyze.split.split`) on the image chosen in the panel, or on
  the object's shape, and gives each part after the first a new id.

Both are one step of the labels layer's own undo history (Ctrl+Z, Ctrl+Shift+Z) and the
table and the layer's features follow. :class:`SaveAndTrain` holds the panel's way back
to training (save the corrected labels, send them to Train).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from napari.layers import Points
from napari.utils.notifications import show_info
from qtpy.QtWidgets import QGroupBox, QHBoxLayout, QLabel, QPushButton, QSpinBox

from ..core.progress import CancelToken
from .fields import tip
from .handoff import send_to_train
from .layers import layer_array, layer_volume
from .worker import until_cancelled

#: The name of the seed-points layer.
SEEDS = "split seeds"


class EditTools(QGroupBox):
    """Merge and split controls bound to a Proofread & Stats panel.

    Parameters
    ----------
    panel : ProofreadWidget
        The panel whose labels layer, image, table and ``edit`` are used.
    """

    def __init__(self, panel: Any) -> None:
        super().__init__("Merge and split in 3D")
        self.panel = panel
        self.merge_button = tip(QPushButton("Merge selected rows"), "edits.merge")
        self.merge_button.clicked.connect(self.merge_selected)
        self.seeds_button = tip(QPushButton("Add seeds"), "edits.seeds")
        self.seeds_button.clicked.connect(self.seeds_layer)
        self.part = QSpinBox()
        self.part.setRange(1, 99)
        self.part.setPrefix("part ")
        self.part.valueChanged.connect(self._set_part)
        self.split_button = tip(QPushButton("Split"), "edits.split")
        self.split_button.clicked.connect(lambda: self.split())
        row = QHBoxLayout(self)
        for widget in (self.merge_button, QLabel(" "), self.seeds_button, self.part,
                       self.split_button):  # fmt: skip
            row.addWidget(widget)

    def merge_selected(self) -> int:
        """Merge the objects of the selected table rows into one; return how many merged."""
        table = self.panel.table
        rows = {index.row() for index in table.selectedIndexes()}
        ids = [table.row_id(r) for r in rows if table.row_id(r) is not None]
        if len(ids) < 2:
            self.panel.fail("select two or more rows of the table to merge (Ctrl-click)")
            return 0
        return self.panel.merge_ids(ids)

    def seeds_layer(self) -> Points:
        """The seed-points layer (made on the labels' grid when missing), selected."""
        viewer = self.panel.viewer
        if SEEDS in viewer.layers:
            layer = viewer.layers[SEEDS]
        else:
            labels = self.panel.labels_combo.layer()
            scale = labels.scale if labels is not None else None
            layer = viewer.add_points(
                np.zeros((0, 3)), name=SEEDS, scale=scale, size=6, ndim=3,
                features={"part": np.zeros(0, int)}, face_color="part",
                face_colormap="tab10",
            )  # fmt: skip
            layer.mode = "add"
        self._set_part(self.part.value())
        viewer.layers.selection.active = layer
        return layer

    def _set_part(self, part: int) -> None:
        viewer = self.panel.viewer
        if SEEDS in viewer.layers:
            viewer.layers[SEEDS].feature_defaults["part"] = int(part)

    def split(self, seeds: dict[int, np.ndarray] | None = None) -> int | None:
        """Split the object under the seeds into one object per part.

        Parameters
        ----------
        seeds : dict of int to (n, 3) array, optional
            Part -> voxel coordinates; default: the "split seeds" layer's points.

        Returns
        -------
        int or None
            The number of objects the object became (0 when refused; None while
            it runs in the background, for labels on disk: see ``panel.edit``).
        """
        panel, labels = self.panel, self.panel.labels_combo.layer()
        if seeds is None:
            seeds = self._seed_points(labels)
        data = layer_array(labels) if labels is not None else None
        points = np.concatenate(list(seeds.values())) if seeds else np.zeros((0, 3))
        inside = [tuple(p) for p in points.round().astype(int)
                  if all(0 <= c < s for c, s in zip(p, data.shape))] if data is not None else []
        ids = {int(data[p]) for p in inside} - {0}
        if len(seeds) < 2 or len(ids) != 1:
            panel.fail("put seed points of two or more parts on one object (Add seeds)")
            return 0
        (obj,) = ids

        def then(_edit) -> None:
            if SEEDS in panel.viewer.layers:
                panel.viewer.layers[SEEDS].data = np.zeros((0, 3))
            show_info(f"object {obj} split into {len(seeds)}; undo with Ctrl+Z")

        image = panel.image_combo.layer()
        made = panel.edit(
            "split", obj, [seeds[k] for k in sorted(seeds)], what="split", then=then,
            image=layer_array(image) if image is not None else None,
        )  # fmt: skip
        return None if made is None else len(seeds) if made else 0

    def _seed_points(self, labels) -> dict[int, np.ndarray]:
        viewer = self.panel.viewer
        if SEEDS not in viewer.layers or labels is None:
            return {}
        layer = viewer.layers[SEEDS]
        coords = np.array([labels.world_to_data(layer.data_to_world(p)) for p in layer.data])
        parts = layer.features["part"].to_numpy() if len(layer.data) else np.zeros(0)
        return {int(k): coords[parts == k] for k in np.unique(parts)}


class SaveAndTrain:
    """The Proofread panel's way back to training: save the labels, send them to Train."""

    def save(self, path: str | None = None):
        """Save the corrected labels (zarr, tif or h5 by the file's extension)."""
        from ..io.write import write_volume_job

        layer = self.labels_combo.layer()
        path = path or self.save_path.text()
        if layer is None or not path:
            self.fail("choose a labels layer and a file name (.zarr, .tif or .h5)")
            return None
        data = np.array(layer_array(layer))
        voxel_size = layer_volume(layer).voxel_size

        def done(written: str) -> None:
            layer.metadata["source"] = written
            self.status.setText(f"Saved corrected labels to {written}")
            show_info(f"Saved corrected labels to {written}")

        cancel = CancelToken()
        job = write_volume_job(data, path, voxel_size=voxel_size, labels=True, overwrite=True)
        saving, description = until_cancelled(job, cancel), f"Saving {layer.name}"
        return self.run(saving, cancel, description=description, on_result=done, main=False)

    def use_for_training(self) -> None:
        """Choose these labels (and the image) in the Train panel, opening it if needed."""
        layer = self.labels_combo.layer()
        if layer is None:
            self.fail("choose a labels layer first")
            return
        send_to_train(self.viewer, layer, self.image_combo.layer())
