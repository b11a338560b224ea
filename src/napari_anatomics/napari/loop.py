"""The whole loop in one dock: Data -> Annotate -> Train -> Auto-label -> Proofread -> Export.

Seven panels opened side by side stack into one tall column; :class:`LoopWidget` holds
the same panels as steps (tabs), each with a line saying what to do there, and keys
for the loop's frequent actions, bound on the viewer while the dock is open
(:data:`SHORTCUTS`, also listed in the dock and in docs/workflow.md). Each panel stays
openable on its own from the Plugins menu; a hand-off between panels (Proofread's
*Use for training*) brings its step to the front.
"""

from __future__ import annotations

from collections.abc import Callable

from qtpy.QtWidgets import QLabel, QTabWidget, QVBoxLayout, QWidget

from .handoff import on_open
from .layers import layer_array
from .panels.annotate import AnnotateWidget, annotated_slices
from .panels.autolabel import AutoLabelWidget
from .panels.data_check import DataCheckWidget
from .panels.export import ExportWidget
from .panels.image_tools import ImageToolsWidget
from .panels.proofread import ProofreadWidget
from .panels.train import TrainWidget

#: The steps: tab title, what to do there, the panels on the page.
STEPS: tuple[tuple[str, str, tuple[type, ...]], ...] = (
    ("1 Data", "Open the stack (voxel size in nm), or combine a folder of slices; then check "
     "an image / labels pair before training.", (ImageToolsWidget, DataCheckWidget)),
    ("2 Annotate", "Paint a few whole slices; unpainted slices are unknown, not background. "
     "N jumps to the next slice not painted yet.", (AnnotateWidget,)),
    ("3 Train", "Start with the defaults: the data chooses the network, window and batch. "
     "While it trains, the preview layer shows the model on the visible slice: paint "
     "corrections (they join the running training), K keeps a previewed object. "
     "Stop keeps a usable model.", (TrainWidget,)),
    ("4 Auto-label", "Run the model over the whole stack; labels you proofread are kept.",
     (AutoLabelWidget,)),
    ("5 Proofread", "Double-click (or Delete) removes the selected object, Ctrl+Z undoes; "
     "cut small or border objects; send the corrected labels back to Train.",
     (ProofreadWidget,)),
    ("6 Export", "Write the table (CSV), meshes, labels (OME-Zarr, zarr, tif, h5) or view "
     "them in Neuroglancer.", (ExportWidget,)),
)

#: Keys bound on the viewer while the dock is open: key -> (what it does, method name).
SHORTCUTS: dict[str, tuple[str, str]] = {
    "N": ("go to the next slice that is not painted yet", "next_unpainted_slice"),
    "K": ("keep (accept) the previewed object under the cursor into the labels, while "
          "training runs", "accept_preview_object"),
    "Shift-K": ("keep (accept) the whole previewed slice into its unpainted voxels",
                "accept_preview_slice"),
    "Delete": ("delete the selected object of the labels being proofread", "delete_selected"),
    "Shift-M": ("merge the objects of the selected table rows", "merge_selected"),
    "Shift-S": ("split the object under the seed points into its parts", "split_selected"),
    "Control-1": ("show the Data step (Control-2 ... Control-6: the other steps)", ""),
}


class LoopWidget(QWidget):
    """One dock with every step of the loop as a tab.

    Parameters
    ----------
    napari_viewer : napari.Viewer
    """

    def __init__(self, napari_viewer) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.tabs = QTabWidget()
        self.panels: dict[type, QWidget] = {}
        for title, hint, kinds in STEPS:
            page = QWidget()
            layout = QVBoxLayout(page)
            note = QLabel(hint)
            note.setWordWrap(True)
            layout.addWidget(note)
            for kind in kinds:
                self.panels[kind] = kind(napari_viewer)
                layout.addWidget(self.panels[kind])
            self.tabs.addTab(page, title)
        keys = QLabel("Keys: " + "; ".join(f"{k}: {what}" for k, (what, _) in SHORTCUTS.items()))
        keys.setWordWrap(True)
        layout = QVBoxLayout(self)
        layout.addWidget(self.tabs)
        layout.addWidget(keys)
        on_open(self.panels[TrainWidget], lambda: self.show_step(TrainWidget))
        self._bound: list[str] = []
        self._bind_keys()

    def show_step(self, kind: type) -> None:
        """Bring the step holding panel ``kind`` to the front."""
        for index, (_, _, kinds) in enumerate(STEPS):
            if kind in kinds:
                self.tabs.setCurrentIndex(index)

    def next_unpainted_slice(self) -> int | None:
        """Move the viewer to the next slice after the current one with nothing painted."""
        layer = self.panels[AnnotateWidget].labels_combo.layer()
        if layer is None or layer.ndim < 3:
            return None
        counts = annotated_slices(layer_array(layer))
        here = round(float(layer.world_to_data(self.viewer.dims.point)[-3]))
        order = [(here + k) % counts.size for k in range(1, counts.size + 1)]
        z = next((z for z in order if not counts[z]), None)
        if z is not None:
            world = layer.data_to_world([z, 0, 0])
            self.viewer.dims.set_point(self.viewer.dims.ndim - layer.ndim, world[0])
        return z

    def delete_selected(self) -> int | None:
        """Delete the selected object (napari's selected label) of the proofread labels."""
        panel = self.panels[ProofreadWidget]
        layer = panel.labels_combo.layer()
        label = int(layer.selected_label) if layer is not None else 0
        if not label:
            return None
        panel.delete_ids([label], f"deleted (id {label})")
        return label

    def accept_preview_object(self) -> int | None:
        """Keep the previewed object under the cursor (the Train panel's live preview)."""
        return self._accept(whole=False)

    def accept_preview_slice(self) -> int | None:
        """Keep the whole previewed slice in its unpainted voxels."""
        return self._accept(whole=True)

    def _accept(self, whole: bool) -> int | None:
        panel = self.panels[TrainWidget]
        if panel.live is None:
            panel.fail("no preview: start training with 'Live preview' on")
            return None
        try:
            edit = panel.live.accept(whole=whole)
        except ValueError as err:
            panel.fail(err)
            return None
        voxels = edit.n_voxels if edit is not None else 0
        panel.status.setText(f"Kept {voxels} previewed voxels"
                             f"{'' if voxels else ' (all were painted already)'}.")
        return voxels

    def merge_selected(self) -> int:
        """Merge the objects of the selected rows of the proofreading table."""
        return self.panels[ProofreadWidget].edit_tools.merge_selected()

    def split_selected(self) -> int:
        """Split the object under the seed points (Proofread's Split)."""
        return self.panels[ProofreadWidget].edit_tools.split()

    def _bind_keys(self) -> None:
        actions: dict[str, Callable[[], object]] = {
            key: getattr(self, method) for key, (_, method) in SHORTCUTS.items() if method
        }
        for index in range(len(STEPS)):
            actions[f"Control-{index + 1}"] = lambda i=index: self.tabs.setCurrentIndex(i)
        for key, action in actions.items():
            self.viewer.bind_key(key, lambda _viewer, act=action: act(), overwrite=True)
            self._bound.append(key)

    def closeEvent(self, event) -> None:
        for key in self._bound:
            self.viewer.bind_key(key, None)
        self._bound = []
        for panel in self.panels.values():
            panel.close()
        super().closeEvent(event)
