"""Accept a preview into the labels: one previewed object ("keep this one"), or a whole view.

While a model trains, its preview (:mod:`~napari_anatomics.train.preview`)
shows what it would label in the visible slice or box. :func:`accept` paints
the previewed labels into the **unpainted** voxels of that region of the
user's labels (what the user painted is never replaced), as one
:class:`~napari_anatomics.analyze.proofread.Edit` that
:func:`~napari_anatomics.analyze.proofread.undo` and
:func:`~napari_anatomics.analyze.proofread.redo` take like every other edit.
Instance ids of the preview are renumbered to new ids above the labels' own;
semantic previews keep their class values. The user then corrects what is
wrong, and the slice joins training like any painted one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np

from .proofread import Edit, Region, next_free_id, writable_labels


def accept(
    labels: Any,
    preview: Any,
    where: Sequence[slice],
    *,
    task: Literal["instance", "semantic"] = "instance",
    object_id: int | None = None,
    next_id: int | None = None,
    index: Any = None,
) -> Edit:
    """Paint ``preview`` into the unpainted voxels of ``labels[where]`` (in place).

    Parameters
    ----------
    labels : ndarray, zarr array or h5py dataset
        The user's (z, y, x) labels; changed in place.
    preview : array-like
        The previewed labels of the region ``where`` (its shape; a (y, x)
        slice for a one-slice region), 0 = nothing found.
    where : sequence of 3 slices
        The region of ``labels`` the preview covers.
    task : {"instance", "semantic"}
        Instance previews get new ids; semantic ones keep their class values.
    object_id : int, optional
        Accept only this previewed object (its id in ``preview``); default all.
    next_id : int, optional
        The first new id (instances); default one above the largest id in ``labels``.
    index : ignored
        Accepted for the edit interface (bounding boxes are not needed).

    Returns
    -------
    Edit
        ``operation="accept"``; ``ids`` are the new ids (instances) or the
        classes written (semantic). Nothing changes when every previewed voxel
        was already painted.

    Raises
    ------
    ValueError
        When the preview does not have the region's shape, ``object_id`` is not
        in it, or the new ids do not fit in the labels' type.
    """
    del index
    labels = writable_labels(labels)
    region = tuple(slice(*s.indices(n)[:2]) for s, n in zip(where, labels.shape))
    shape = tuple(s.stop - s.start for s in region)
    found = np.asarray(preview)
    if found.size != int(np.prod(shape)) or found.ndim not in (len(shape), len(shape) - 1):
        raise ValueError(f"the preview {found.shape} does not cover the region {shape}")
    found = found.reshape(shape)
    take = found > 0
    if object_id is not None:
        if not (found == int(object_id)).any():
            raise ValueError(f"object {object_id} is not in the preview")
        take &= found == int(object_id)
    block = np.asarray(labels[region]).copy()
    take &= block == 0
    if not take.any():
        return Edit("accept")
    values = found[take]
    if task == "semantic":
        new = values.astype(labels.dtype)
        ids = tuple(int(v) for v in np.unique(values))
    else:
        start = next_free_id(labels) if next_id is None else int(next_id)
        kept = np.unique(values)
        if start + kept.size - 1 > np.iinfo(labels.dtype).max:
            raise ValueError(
                f"{kept.size} new ids from {start} do not fit in labels of type {labels.dtype}"
            )
        new = (start + np.searchsorted(kept, values)).astype(labels.dtype)
        ids = tuple(range(start, start + kept.size))
    edit = Edit("accept", ids, None, [Region(region, take, block[take].copy(), new)])
    block[take] = new
    labels[region] = block
    return edit

