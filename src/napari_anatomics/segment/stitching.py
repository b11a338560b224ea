"""Exact blockwise connected components and relabelling of label volumes on disk.

:func:`label_blocks` labels a class map block by block with cc3d, giving each
block's components ids of their own (stored as uint64 in a temporary zarr
array), then reads every block once more with a one-voxel margin on its high
sides and joins components of the same class that touch across a face, edge
or corner (per the connectivity). The joins are resolved as a graph
(scipy's connected components), so the result equals whole-volume
connected components exactly, with memory bounded by one block plus arrays
of one number per component. :func:`relabel_blocks` then writes final uint32
ids: sequential, with objects smaller than ``min_size`` voxels removed. Blocks are
the array's chunks, from :func:`~napari_anatomics.core.blocks.iter_blocks`.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass

import cc3d
import numpy as np
from scipy import sparse
from scipy.sparse import csgraph

from ..core.blocks import iter_blocks
from ..core.progress import Job, Progress

Slices = tuple[slice, slice, slice]


def neighbour_offsets(connectivity: int) -> list[tuple[int, int, int]]:
    """Half of the 6/18/26-neighbourhood: one offset of each opposite pair."""
    if connectivity not in (6, 18, 26):
        raise ValueError(f"connectivity must be 6, 18 or 26, not {connectivity!r}")
    limit = {6: 1, 18: 2, 26: 3}[connectivity]
    offsets = []
    for d in itertools.product((-1, 0, 1), repeat=3):
        if 0 < sum(map(abs, d)) <= limit and d > (0, 0, 0):
            offsets.append(d)
    return offsets


@dataclass
class Provisional:
    """Block-local components and how they join.

    Attributes
    ----------
    array : zarr.Array
        uint64 provisional ids (unique over the volume, 0 = background).
    classes : ndarray
        Class of each provisional id (index 0: background).
    sizes : ndarray of int64
        Voxels of each provisional id.
    roots : ndarray of int64
        The merged object each provisional id belongs to (a representative id).
    """

    array: object
    classes: np.ndarray
    sizes: np.ndarray
    roots: np.ndarray


def label_blocks(
    read: Callable[[Slices], np.ndarray],
    array,
    *,
    connectivity: int = 26,
    cancel=None,
) -> Job[Provisional | None]:
    """Connected components of a class map, block by block, exactly stitched.

    Parameters
    ----------
    read : callable
        ``read(slices)`` returns the class map (integers, 0 = background) of a block.
    array : zarr.Array
        An empty uint64 (z, y, x) array; its chunks are the blocks.
    connectivity : {6, 18, 26}
        Voxel neighbourhood that connects objects.
    cancel : CancelToken, optional
        Checked between blocks; a cancelled run returns None.

    Yields
    ------
    Progress
        One step per block and pass (two passes).
    """
    offsets = neighbour_offsets(connectivity)
    blocks = [block.write for block in iter_blocks(array.shape, array.chunks)]
    total = 2 * len(blocks)
    classes, sizes = [np.zeros(1, np.int64)], [np.zeros(1, np.int64)]
    next_id = 1
    for step, sl in enumerate(blocks, 1):
        cls = np.asarray(read(sl))
        labels, n = cc3d.connected_components(cls, connectivity=connectivity, return_N=True)
        labels = labels.astype(np.uint64)
        block_classes = np.zeros(n + 1, np.int64)
        block_classes[labels.ravel()] = cls.ravel()
        classes.append(block_classes[1:])
        sizes.append(np.bincount(labels.ravel(), minlength=n + 1)[1:].astype(np.int64))
        labels[labels > 0] += np.uint64(next_id - 1)
        array[sl] = labels
        next_id += n
        yield Progress(step, total, "labelling blocks")
        if cancel is not None and cancel.cancelled:
            return None
    id_class, id_size = np.concatenate(classes), np.concatenate(sizes)

    pairs = [np.zeros((0, 2), np.uint64)]
    for step, sl in enumerate(blocks, len(blocks) + 1):
        hi = [min(s.stop + 1, n) for s, n in zip(sl, array.shape)]
        ext = array[tuple(slice(s.start, h) for s, h in zip(sl, hi))]
        for axis in range(3):
            if hi[axis] == sl[axis].stop:  # last block along this axis: no face
                continue
            edge = ext.shape[axis]
            slab = ext[(slice(None),) * axis + (slice(edge - 2, edge),)]
            pairs.append(_touching(slab, offsets, id_class))
        yield Progress(step, total, "stitching blocks")
        if cancel is not None and cancel.cancelled:
            return None
    edges = np.unique(np.concatenate(pairs), axis=0)
    n_ids = id_class.size
    graph = sparse.coo_matrix(
        (
            np.ones(len(edges), np.int8),
            (edges[:, 0].astype(np.int64), edges[:, 1].astype(np.int64)),
        ),
        shape=(n_ids, n_ids),
    )
    _, component = csgraph.connected_components(graph, directed=False)
    # Representative: the smallest provisional id of each merged object.
    first = np.full(component.max() + 1, n_ids, np.int64)
    np.minimum.at(first, component, np.arange(n_ids))
    return Provisional(array, id_class, id_size, first[component])


def _touching(slab: np.ndarray, offsets, id_class: np.ndarray) -> np.ndarray:
    """Pairs of different ids of the same class that touch inside a slab."""
    out = []
    shape = slab.shape
    for d in offsets:
        a = slab[tuple(slice(max(0, -k), n - max(0, k)) for k, n in zip(d, shape))]
        b = slab[tuple(slice(max(0, k), n - max(0, -k)) for k, n in zip(d, shape))]
        hit = (a != b) & (a > 0) & (b > 0)
        if not hit.any():
            continue
        u, v = a[hit], b[hit]
        same = id_class[u.astype(np.int64)] == id_class[v.astype(np.int64)]
        out.append(np.stack([u[same], v[same]], axis=1))
    if not out:
        return np.zeros((0, 2), np.uint64)
    return np.unique(np.concatenate(out), axis=0)


def sequential_lut(roots: np.ndarray, sizes: np.ndarray, min_size: int = 0) -> np.ndarray:
    """Map ids to sequential ids 1..n by merged object, dropping objects under ``min_size``.

    Parameters
    ----------
    roots : ndarray of int
        ``roots[i]`` is the merged object of id ``i`` (``roots[0] == 0``).
    sizes : ndarray of int
        Voxels of each id.
    min_size : int
        Merged objects with fewer voxels become background.

    Returns
    -------
    ndarray of uint32
        ``lut[i]`` is the final id of id ``i``; numbered in order of first id.
    """
    total = np.bincount(roots, weights=sizes, minlength=roots.size)
    keep = total >= max(int(min_size), 1)
    keep[0] = False
    kept_roots = np.flatnonzero(keep)
    final = np.zeros(roots.size, np.uint32)
    final[kept_roots] = np.arange(1, kept_roots.size + 1, dtype=np.uint32)
    return final[roots]


def relabel_blocks(source, lut: np.ndarray, target, *, cancel=None) -> Job[bool]:
    """Write ``lut[source]`` block by block into ``target`` (same shape and chunks)."""
    blocks = [block.write for block in iter_blocks(source.shape, target.chunks)]
    for step, sl in enumerate(blocks, 1):
        target[sl] = lut[np.asarray(source[sl]).astype(np.intp, copy=False)]
        yield Progress(step, len(blocks), "writing labels")
        if cancel is not None and cancel.cancelled:
            return False
    return True
