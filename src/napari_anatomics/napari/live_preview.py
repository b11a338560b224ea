"""The Train panel's live loop in the viewer: a preview layer, painting that joins the run.

:class:`LiveView` connects a running training job's
:class:`~napari_anatomics.train.live.LiveSession` to the viewer:

* **Preview.** A timer (every 250 ms, in the GUI thread, a few microseconds'
  work) asks the headless :class:`~napari_anatomics.train.preview.LivePreview`
  whether a preview is due: at once for a new slice (2D view) or box (3D
  view: the stack's depth around the camera's centre, at most
  :data:`BOX_YX` across), and for newer weights once the last preview's cost
  allows (at most a tenth of a core). The preview runs in a napari thread
  worker; its labels go into a Labels layer "<labels> preview" placed on the
  slice or box it covers (``metadata["iteration"]``: the step it shows; no
  panel offers it as labels to work on). The GUI thread only swaps the layer's data.
* **Painting during training.** Strokes, fills and edits on the labels layer
  (its ``paint`` event) and undo or redo on the visible slice (its
  ``set_data`` event, the visible slice compared with what was handed over)
  hand the changed slices to the session a second after the last change; the
  job takes them in between two steps and says so.
* **Accept.** :meth:`LiveView.accept` paints the previewed object under the
  cursor, or the whole previewed slice, into the unpainted voxels of the labels
  (:func:`~napari_anatomics.analyze.accept.accept`), one undo step; the slice
  then joins the training like any painted one.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
from napari.layers import Labels, Layer
from napari.qt.threading import create_worker
from qtpy.QtCore import QObject, QTimer

from .history import apply_edit
from .layers import layer_array
from .worker import start_worker

#: Largest (y, x) extent of the box previewed in a 3D view, in voxels.
BOX_YX = 512
#: How often the timer looks at the view and the weights (ms).
TICK_MS = 250
#: Quiet time after the last change before painted slices go to the job (ms).
HAND_OVER_MS = 1000


class LiveView(QObject):
    """The preview layer and the painting hand-over of one training run.

    Parameters
    ----------
    viewer : napari.Viewer
    session : LiveSession
        The running job's session.
    image : Volume
        The stack being trained on (its voxel size places the preview).
    labels : Labels or None
        The labels layer being trained on (None when they came from a file:
        nothing is handed over, nothing can be accepted).
    reference : Layer or None
        The layer whose placement (scale, translate) the preview takes; default
        ``labels``, else the voxel size at the origin.
    task : {"instance", "semantic"}
    name : str
        The preview layer's name.
    layer : Labels, optional
        An earlier run's preview layer to reuse.
    """

    def __init__(
        self, viewer, session, image, labels: Labels | None, *,
        reference: Layer | None = None, task: str = "instance", name: str = "preview",
        layer: Labels | None = None,
    ) -> None:
        from ..train.preview import LivePreview

        super().__init__()
        self.viewer, self.session, self.image = viewer, session, image
        self.labels, self.task, self.name = labels, task, name
        self.reference = reference if reference is not None else labels
        self.preview = LivePreview(session, image)
        #: The preview layer (added empty as the run starts with the preview on).
        self.layer: Labels | None = layer
        #: The latest preview shown (a PreviewResult).
        self.shown: Any = None
        self._worker = None
        self._dirty: set[int] = set()
        self._handed: dict[int, str] = {}
        self._timer = QTimer(self)
        self._timer.setInterval(TICK_MS)
        self._timer.timeout.connect(self.tick)
        self._hand_over = QTimer(self)
        self._hand_over.setSingleShot(True)
        self._hand_over.setInterval(HAND_OVER_MS)
        self._hand_over.timeout.connect(self.hand_over)
        if labels is not None:
            labels.events.paint.connect(self._on_paint)
            labels.events.set_data.connect(self._on_set_data)
        # the layer once the Start click's own work has returned (unless switched off by then)
        QTimer.singleShot(0, lambda: self.session.enabled and self._ensure_layer())
        self._timer.start()

    # ---- where the viewer looks ------------------------------------------------------------
    def _scale_translate(self) -> tuple[np.ndarray, np.ndarray]:
        if self.reference is not None:
            return (np.asarray(self.reference.scale[-3:], float),
                    np.asarray(self.reference.translate[-3:], float))
        return np.asarray(self.image.voxel_size, float), np.zeros(3)

    def visible(self) -> tuple[int | None, tuple[slice, ...] | None]:
        """The visible slice (2D view) or box (3D view) in the stack's voxels."""
        scale, translate = self._scale_translate()
        shape = np.asarray(self.image.shape)
        if self.viewer.dims.ndisplay == 2:
            world = np.asarray(self.viewer.dims.point[-3:], float)
            z = int(np.clip(round((world[0] - translate[0]) / scale[0]), 0, shape[0] - 1))
            return z, None
        centre = (np.asarray(self.viewer.camera.center[-3:], float) - translate) / scale
        box = [slice(0, int(shape[0]))]
        for axis in (1, 2):
            size = min(BOX_YX, int(shape[axis]))
            start = int(np.clip(round(centre[axis] - size / 2), 0, shape[axis] - size))
            box.append(slice(start, start + size))
        return None, tuple(box)

    # ---- the preview -----------------------------------------------------------------------
    @property
    def enabled(self) -> bool:
        """Whether the preview is on (the job publishes weights, the layer updates)."""
        return self.session.enabled

    @enabled.setter
    def enabled(self, value: bool) -> None:
        self.session.enabled = bool(value)
        if value:
            self._ensure_layer()
        if self.layer is not None:
            self.layer.visible = bool(value)

    def _ensure_layer(self) -> Labels:
        """The preview layer, added empty now if it is not in the viewer.

        Adding a layer holds napari's event loop for 50-140 ms (its visuals and
        controls), so it happens here, as the user starts the run or switches the
        preview on, and never when a preview arrives: a preview only swaps data.
        """
        if self.layer is None or self.layer not in self.viewer.layers:
            scale, translate = self._scale_translate()
            self.layer = self.viewer.add_labels(
                np.zeros((1, 1, 1), np.uint8), name=self.name, scale=scale,
                translate=translate, opacity=0.5, blending="translucent",
                metadata={"preview": True, "task": self.task},
            )
            if self.labels is not None and self.labels in self.viewer.layers:
                self.viewer.layers.selection.active = self.labels
        return self.layer

    def tick(self) -> None:
        """Start a preview in a worker when one is due (the timer's slot)."""
        if not self.session.enabled or self._worker is not None:
            return
        z, box = self.visible()
        self.preview.show(z=z, box=box)
        if not self.preview.due():
            return
        self._worker = create_worker(self.preview.run, _start_thread=False)
        self._worker.returned.connect(self.show_result)
        self._worker.finished.connect(self._on_worker_done)
        start_worker(self._worker)

    def _on_worker_done(self) -> None:
        self._worker = None

    def show_result(self, result: Any) -> None:
        """Put a preview into the preview layer, placed on the region it covers."""
        if result is None:
            return
        self.shown = result
        scale, translate = self._scale_translate()
        data = result.stack
        offset = translate + scale * np.array([s.start for s in result.region])
        layer = self._ensure_layer()  # the user may have deleted it
        layer.translate = offset
        layer.data = data
        layer.metadata["iteration"] = result.iteration

    def wait(self, timeout_ms: int = 30000) -> None:
        """Wait for the running preview, if any (tests and closing)."""
        if self._worker is not None:
            self._worker.await_workers(timeout_ms)

    # ---- painting during training ----------------------------------------------------------
    def _on_paint(self, event: Any) -> None:
        for atom in event.value or ():
            # a history atom: (index arrays, old, new) or a masked atom (box slices, ...)
            indices = atom[0] if isinstance(atom, tuple) else None
            if isinstance(indices, tuple) and len(indices) >= 3:
                zs = indices[-3]
                if isinstance(zs, slice):
                    self._dirty.update(range(zs.start or 0, zs.stop or 0))
                else:
                    self._dirty.update(int(z) for z in np.unique(np.asarray(zs)))
            else:  # an atom we cannot read: the visible slice changed
                self._dirty.add(self.visible()[0] or 0)
        self._hand_over.start()

    def _on_set_data(self, _event: Any = None) -> None:
        z = self.visible()[0]
        if z is not None and z in self._handed:  # an undo or redo of a slice handed over
            self._dirty.add(z)
            self._hand_over.start()

    def hand_over(self) -> list[int]:
        """Give the changed slices to the job; returns those that differed from last time."""
        if self.labels is None or not self._dirty:
            return []
        data = layer_array(self.labels)
        changed = []
        for z in sorted(self._dirty):
            if 0 <= z < data.shape[-3]:
                plane = np.asarray(data[z])
                digest = hashlib.blake2b(plane.tobytes(), digest_size=16).hexdigest()
                if self._handed.get(z) != digest:
                    self._handed[z] = digest
                    self.session.update_labels([z], [plane])
                    changed.append(z)
        self._dirty.clear()
        return changed

    # ---- accept ----------------------------------------------------------------------------
    def accept(self, position: Any = None, whole: bool = False):
        """Paint the previewed object at ``position`` (world), or all the preview, into the labels.

        Returns the :class:`~napari_anatomics.analyze.proofread.Edit` (one undo
        step), or None when there is nothing to accept there.

        Raises
        ------
        ValueError
            When there is no preview or no labels layer, or nothing previewed at
            ``position``; in one line.
        """
        if self.shown is None or self.layer is None:
            raise ValueError("no preview yet: wait for the first preview while training runs")
        if self.labels is None:
            raise ValueError("the labels come from a file: open them as a layer to accept")
        labels = self.shown.stack
        object_id = None
        if not whole:
            where = np.round(self.layer.world_to_data(
                self.viewer.cursor.position if position is None else position)).astype(int)
            inside = all(0 <= w < n for w, n in zip(where[-3:], labels.shape))
            object_id = int(labels[tuple(where[-3:])]) if inside else 0
            if not object_id:
                raise ValueError("no previewed object under the cursor")
        edit = apply_edit(self.labels, "accept", labels, self.shown.region,
                          task=self.task, object_id=object_id)
        z = self.shown.region[0]
        self._dirty.update(range(z.start, z.stop))
        self.hand_over()
        return edit if edit.regions else None

    def close(self) -> None:
        """Stop the timers and listening (the preview layer stays in the viewer)."""
        if not self._timer.isActive():
            return
        self._timer.stop()
        self._hand_over.stop()
        self.hand_over()
        if self.labels is not None:
            self.labels.events.paint.disconnect(self._on_paint)
            self.labels.events.set_data.disconnect(self._on_set_data)
        self.wait()
