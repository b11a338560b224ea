"""Edits of the core applied to a napari Labels layer, as steps of its own undo history."""

from __future__ import annotations

from typing import Any

import dask.array as da
import numpy as np
import pandas as pd
from napari.layers import Labels

from .layers import layer_array


def apply_edit(
    layer: Labels, operation: str, *args: Any, index: pd.DataFrame | None = None, **kwargs: Any
):
    """Run a proofreading operation on a layer as one undo step.

    :func:`compute_edit` on the layer's array, then :func:`record_edit`.

    Raises
    ------
    ValueError
        As :func:`compute_edit`.
    """
    edit = compute_edit(layer_array(layer), operation, *args, index=index, **kwargs)
    record_edit(layer, edit)
    return edit


def compute_edit(data: Any, operation: str, *args: Any, index: Any = None, **kwargs: Any):
    """Run a proofreading operation on a layer's array; no napari call (any thread).

    ``operation`` names a function of :mod:`napari_anatomics.analyze.proofread`
    (``delete``, ``merge``, ``remove_small``...), ``split``
    (:func:`napari_anatomics.analyze.split.split`) or ``accept``
    (:func:`napari_anatomics.analyze.accept.accept`).

    The core changes the array in place (only inside the objects' bounding boxes,
    taken from ``index`` when given) and returns an
    :class:`~napari_anatomics.analyze.proofread.Edit`, which :func:`record_edit` then
    puts in the layer's own history (in the GUI thread).

    Raises
    ------
    ValueError
        When the array cannot be edited (not a 3D array in memory or in a zarr
        file), or the operation refuses its arguments; in one line.
    """
    from ..analyze import proofread
    from ..analyze.accept import accept
    from ..analyze.split import split

    writable = not isinstance(data, da.Array) and hasattr(data, "__setitem__")
    if not writable or data.ndim != 3:
        raise ValueError(
            "these labels cannot be edited here (a 3D array in memory or in a zarr file is "
            "needed; labels still being predicted are read-only): wait for Auto-label to "
            "finish, or save them as .zarr and open that file"
        )
    try:
        run = {"split": split, "accept": accept}.get(operation) or getattr(proofread, operation)
        return run(data, *args, index=index, **kwargs)
    except TypeError as err:
        raise ValueError(str(err)) from err


def record_edit(layer: Labels, edit) -> None:
    """Record a core :class:`~napari_anatomics.analyze.proofread.Edit` in a layer's undo history.

    The core computed the edit by applying it; its old values go back and the
    change is made again through napari's public :meth:`napari.layers.Labels.data_setitem`
    (one call per changed region, all in one undo step), so the layer's own undo and
    redo (Ctrl+Z, Ctrl+Shift+Z) take it back and forth, and its ``labels_update`` event
    tells listeners (the stats table) what changed. The last call refreshes only the
    changed part of the view (napari's partial refresh): a whole refresh would read the
    full slice again, every chunk under it for labels in a zarr file (about 0.2 s for a
    2048 x 2048 slice of 32-deep chunks, ``benchmarks/proofread_stall.py``).
    """
    from ..analyze.proofread import undo

    if not edit.regions:
        return
    undo(layer_array(layer), edit)
    last = len(edit.regions) - 1
    with layer.block_history():
        for n, region in enumerate(edit.regions):
            local = np.nonzero(region.mask)
            indices = tuple(i + s.start for i, s in zip(local, region.slices))
            value = edit.new_value if region.new is None else region.new
            layer.data_setitem(indices, value, refresh=n == last)
