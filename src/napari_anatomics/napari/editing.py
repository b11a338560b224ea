"""Edits of labels on disk computed off the GUI thread, one after another.

Labels that Auto-label wrote to a zarr file are shown through a
:class:`~napari_anatomics.core.chunkcache.CachedArray`. An edit of them (delete,
merge, split, size cut-off...) first reads the chunks under the objects' boxes
and, for a split, runs a watershed: that work runs in a worker thread
(:class:`EditRunner`). Only the last step returns to the GUI thread: the
edit is put into the layer's own undo history through napari's public
``data_setitem`` (:func:`~napari_anatomics.napari.history.record_edit`), which
now reads and writes decoded chunks in memory. The file is written in the
background by the cache. Edits run in the order they were asked for; each
one's bounding boxes are taken when it starts, so it sees the edits before it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

import pandas as pd
from napari.layers import Labels
from napari.qt.threading import create_worker
from napari.utils.notifications import show_info

from ..analyze.measure import bounding_boxes
from ..core.boxes import union
from ..core.chunkcache import CachedArray, merge_changes
from .history import apply_edit, compute_edit, record_edit
from .layers import layer_array
from .worker import start_worker

#: Operations whose ``Edit.ids`` are gone from the labels afterwards.
REMOVING = ("delete", "remove_small", "remove_border", "merge")
#: Called in the GUI thread when an edit starts: returns the function the worker runs.
Start = Callable[[], Callable[[], Any]]


class EditRunner:
    """A queue of edits, each computed in a worker thread and finished in the GUI thread."""

    def __init__(self) -> None:
        self._queue: deque[tuple[Start, Callable[[Any], Any], Callable[[Exception], Any]]] = (
            deque()
        )
        self.worker: Any = None

    @property
    def busy(self) -> bool:
        """An edit is running or waiting."""
        return self.worker is not None or bool(self._queue)

    def submit(
        self, start: Start, done: Callable[[Any], Any], failed: Callable[[Exception], Any]
    ) -> None:
        """Queue an edit.

        Parameters
        ----------
        start : callable
            Called in the GUI thread when the edit's turn comes; returns the function
            that computes the edit in the worker thread.
        done : callable
            Receives that function's result, in the GUI thread.
        failed : callable
            Receives its exception (a refusal: ``ValueError``), in the GUI thread.
        """
        self._queue.append((start, done, failed))
        if self.worker is None:
            self._next()

    def _next(self) -> None:
        self.worker = None
        if not self._queue:
            return
        start, done, failed = self._queue.popleft()
        try:
            compute = start()
        except Exception as err:  # refused before it ran: say so, go on with the queue
            failed(err)
            self._next()
            return
        def guarded() -> tuple[bool, Any]:  # a refusal (one line) is an answer, not a crash
            try:
                return True, compute()
            except ValueError as err:
                return False, err

        def finish(answer: tuple[bool, Any]) -> None:
            ok, result = answer
            (done if ok else failed)(result)

        worker = create_worker(guarded, _start_thread=False)
        worker.returned.connect(finish)
        worker.errored.connect(failed)
        worker.finished.connect(self._next)
        self.worker = worker
        start_worker(worker)


class Editing:
    """The Proofread panel's edits: one undo step each, on labels in memory or on disk.

    Mixed into the panel, which provides ``frame`` (the table), ``_layer``,
    ``edits`` (an :class:`EditRunner`), ``_measured`` / ``_pending`` (what the table
    describes), ``_state`` / ``_fingerprint``, ``set_frame``, ``refresh``, ``fail``
    and the ``edited`` signal.
    """

    frame: pd.DataFrame
    edits: EditRunner

    def edit(self, operation: str, *args, what: str, then=None, **kwargs) -> int | None:
        """Run an edit on the layer as one undo step (:func:`~..history.apply_edit`).

        Rows of the removed ids leave the table at once; objects that grew or were
        made are measured again. Labels on disk (a
        :class:`~napari_anatomics.core.chunkcache.CachedArray`) are edited in a worker
        (:class:`EditRunner`): this returns None at once, and the
        :attr:`edited` signal (and ``then``) follow. ``then`` receives the Edit.

        Returns
        -------
        int or None
            The number of ids removed, merged or split; None while it runs.
        """
        layer = self._layer
        if layer is None:
            self.fail("choose a labels layer first")
            return 0
        data = layer_array(layer)
        if isinstance(data, CachedArray):

            def start():
                index = self._edit_index(data)
                extra = {}
                if operation == "split" and index and "next_id" not in kwargs:
                    extra["next_id"] = max(index) + 1  # every id is in it: no pass on disk
                return lambda: compute_edit(data, operation, *args, index=index, **kwargs,
                                            **extra)  # fmt: skip

            def done(edit) -> None:
                record_edit(layer, edit)
                self._edited(layer, edit, what, then)

            self.edits.submit(start, done, self.fail)
            return None
        # bounding boxes from the table, unless the layer changed since it was measured
        fresh = "bbox_z0" in self.frame and self._state() == self._fingerprint
        try:
            edit = apply_edit(layer, operation, *args, index=self.frame if fresh else None,
                              **kwargs)  # fmt: skip
        except ValueError as err:
            self.fail(err)
            return 0
        return self._edited(layer, edit, what, then)

    def _edit_index(self, data: CachedArray) -> dict | None:
        """Bounding boxes of every id: from the table, widened where the labels changed
        since (ids written since included)."""
        if self._measured is not data or "bbox_z0" not in self.frame:
            return None
        boxes = bounding_boxes(self.frame)
        changes = merge_changes(self._pending, data.peek_changes())
        if changes is not None:
            box, ids = changes
            for i in ids.tolist():
                boxes[int(i)] = union(boxes.get(int(i), box), box)
        return boxes

    def _edited(self, layer: Labels, edit, what: str, then) -> int:
        """An edit is in the layer's history: the table, the selection, a message."""
        if layer is self._layer:
            if "id" in self.frame and edit.operation in REMOVING:  # their rows go at once
                self.set_frame(self.frame[~self.frame["id"].isin(edit.ids)])
            if isinstance(layer_array(layer), CachedArray) or edit.operation in ("merge", "split"):
                self.refresh()  # what changed is measured again
            else:
                self._fingerprint = self._state()
        if layer.show_selected_label and layer.selected_label in edit.ids:
            layer.show_selected_label = False
        if edit.ids:
            show_info(f"{len(edit.ids)} object(s) {what}; undo with Ctrl+Z")
        if then is not None:
            then(edit)
        self.edited.emit(edit)
        return len(edit.ids)

