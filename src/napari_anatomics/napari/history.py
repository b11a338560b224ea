"""Record edits made by the core in a napari Labels layer's own undo history."""

from __future__ import annotations

import numpy as np
from napari.layers import Labels


def record_edit(layer: Labels, edit) -> None:
    """Record a core :class:`~napari_anatomics.analyze.proofread.Edit` in a layer's undo history.

    The edit is already applied to ``layer.data``; each changed region becomes
    one history atom (indices, previous values, new value), the same form
    :meth:`napari.layers.Labels.data_setitem` records, all in one undo step.
    """
    if not edit.regions:
        return
    with layer.block_history():
        for region in edit.regions:
            local = np.nonzero(region.mask)
            indices = tuple(i + s.start for i, s in zip(local, region.slices))
            layer._save_history((indices, region.previous, edit.new_value))
    layer.refresh()
