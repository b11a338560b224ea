"""Reading label arrays block by block, and the partial sums of one block.

:func:`blocks` cuts an array into :class:`~napari_anatomics.core.blocks.Block` s (of
:func:`~napari_anatomics.core.blocks.iter_blocks`) with a one-voxel halo, sized to
the array's storage chunks.

Used by :mod:`~napari_anatomics.analyze.measure` (and, for block iteration, by
:mod:`~napari_anatomics.analyze.evaluate` and :mod:`~napari_anatomics.analyze.proofread`).

A block's partial sums are keyed by instance id and are all exact integers (or
exact float sums of integer grey values), so reducing them gives the same
numbers whatever the blocks. Two strategies give identical partial sums:

* ``"voxels"``: vectorised over the whole block: maximal runs of equal values
  along x give counts, boxes, coordinate sums and the x faces (the runs are a
  few percent of the voxels), and shifted compares give the y and z faces;
  best for many small objects;
* ``"objects"``: ``scipy.ndimage.find_objects``, then each object's numbers
  inside its own bounding box; best for a few large objects on a mostly empty
  stack (the real SBFSEM crops).

Both count a face for each object voxel whose neighbour across it (in the
block's one-voxel halo, or outside the stack) holds another value, so every
block may use either strategy.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import dask.array as da
import fastremap
import numpy as np
from scipy import ndimage as ndi

from ..core.blocks import Block, iter_blocks
from ..core.volume import Volume, check_voxel_size

#: Voxels per block when an in-memory, zarr or h5py array is read in z-slabs.
SLAB_VOXELS = 1 << 25
#: Voxels of stack per object above which the per-object strategy is used.
VOXELS_PER_OBJECT = 100_000

Slices = tuple[slice, ...]


def unwrap(arr: Any, voxel_size: Sequence[float] | None, what: str):
    """The (z, y, x) array behind ``arr`` and the voxel size (given, or the Volume's)."""
    if voxel_size is not None:
        voxel_size = check_voxel_size(voxel_size, f"{what} voxel_size")
    if isinstance(arr, Volume):
        arr, voxel_size = arr.data, voxel_size or arr.voxel_size
    if not hasattr(arr, "shape") or not hasattr(arr, "dtype"):
        arr = np.asarray(arr)
    if len(arr.shape) == 2:
        arr = arr[None] if isinstance(arr, (np.ndarray, da.Array)) else da.from_array(arr)[None]
    if len(arr.shape) != 3:
        raise ValueError(f"{what} must be a 3D (z, y, x) or 2D array, not shape {arr.shape}")
    return arr, voxel_size


def blocks(arr: Any) -> Iterator[Block]:
    """The blocks covering a (z, y, x) ``arr``, with a halo of one voxel.

    Blocks are groups of a dask array's chunks, or z-slabs (of whole zarr/h5py
    chunks), of about :data:`SLAB_VOXELS` voxels. The read box reaches one voxel
    beyond the block on each side, except at the stack's faces.
    """
    shape = arr.shape
    if isinstance(arr, da.Array):  # whole chunks, grouped up to about SLAB_VOXELS
        sizes = [max(c) if c else 1 for c in arr.chunks]
        groups = [1, 1, 1]
        for ax in (2, 1, 0):
            other = int(np.prod([sizes[k] * groups[k] for k in range(3) if k != ax]))
            groups[ax] = int(np.clip(SLAB_VOXELS // (other * sizes[ax]), 1, len(arr.chunks[ax])))
        block_shape: list = [
            [sum(c[i : i + g]) for i in range(0, len(c), g)] for c, g in zip(arr.chunks, groups)
        ]
    else:
        chunks = getattr(arr, "chunks", None)
        per_plane = int(np.prod(shape[1:])) or 1
        step = max(1, SLAB_VOXELS // per_plane)
        if chunks is not None and not isinstance(arr, np.ndarray):  # zarr / h5py
            step = max(1, (step // chunks[0]) * chunks[0]) if chunks[0] <= step else chunks[0]
        block_shape = [step, max(shape[1], 1), max(shape[2], 1)]
    return iter_blocks(shape, block_shape, halo=1)


def read(arr: Any, slices: Slices) -> np.ndarray:
    """One block of ``arr`` as a numpy array."""
    block = arr[slices]
    if isinstance(block, da.Array):
        block = block.compute()
    return np.asarray(block)


def check_labels(block: np.ndarray) -> np.ndarray:
    """Unsigned integer labels, or a clear error."""
    if block.dtype == bool:
        return block.view(np.uint8)
    if not np.issubdtype(block.dtype, np.integer):
        raise TypeError(
            f"labels must hold integers, not {block.dtype}: threshold or label the "
            "probabilities first"
        )
    if np.issubdtype(block.dtype, np.signedinteger):
        if block.size and block.min() < 0:
            raise ValueError("labels must not be negative")
        block = block.astype(np.uint64 if block.dtype.itemsize == 8 else np.uint32)
    return block


def block_stats(
    halo: np.ndarray,
    block: Block,
    image: np.ndarray | None,
    semantic: np.ndarray | None,
    surface: bool = True,
) -> dict[str, np.ndarray]:
    """Partial sums of one block, keyed by global id.

    ``halo`` is the labels of the block's read box; ``image`` and ``semantic`` (if
    given) cover its write box.

    Keys: ``id``, ``voxels``, ``lo``/``hi`` (bbox, end exclusive), ``csum``
    (coordinate sums), ``face_id``/``faces`` (boundary faces per axis),
    ``isum`` (grey-value sums, with ``image``), ``pair_id``/``pair_class``/
    ``pair_count`` (voxels per class, with ``semantic``). Faces are zero
    without ``surface``.
    """
    halo = check_labels(halo)
    pad, offset = tuple(s.start for s in block.inner), block.offset
    core = halo[block.inner]
    hi = int(core.max()) if core.size else 0
    if hi < core.size:
        local, gid = (core.view(np.int64) if core.dtype == np.uint64 else core), None
    else:
        local, mapping = fastremap.renumber(np.ascontiguousarray(core), preserve_zero=True)
        gid = np.zeros(len(mapping), dtype=np.uint64)
        for old, new in mapping.items():
            gid[new] = old
    n_objects = hi if gid is None else len(gid) - 1  # an upper bound
    if n_objects * VOXELS_PER_OBJECT < core.size:
        return _by_object(halo, pad, local, gid, offset, image, semantic, surface)
    n = hi + 1 if gid is None else len(gid)
    return _by_voxel(halo, pad, local, n, gid, offset, image, semantic, surface)


def _by_voxel(halo, pad, local, n, gid, offset, image, semantic, surface) -> dict[str, np.ndarray]:
    local = np.ascontiguousarray(local)
    runs = _runs(local)
    lab, length = runs["label"], runs["length"]
    counts = np.bincount(lab, weights=length, minlength=n).astype(np.int64)
    present = np.flatnonzero(counts[1:]) + 1
    cnt = counts[present]
    off = np.asarray(offset)
    lo = np.full((n, 3), np.iinfo(np.int64).max)
    hi = np.full((n, 3), -1, np.int64)
    csum = np.zeros((n, 3), np.int64)
    ends = (runs["z"], runs["y"], runs["x0"]), (runs["z"], runs["y"], runs["x1"])
    for k in range(3):
        np.minimum.at(lo[:, k], lab, ends[0][k])
        np.maximum.at(hi[:, k], lab, ends[1][k])
    # Coordinate sums per run: z and y are constant, x runs from x0 to x1.
    weights = (runs["z"] * length, runs["y"] * length, (runs["x0"] + runs["x1"]) * length // 2)
    for k, w in enumerate(weights):
        csum[:, k] = np.rint(np.bincount(lab, weights=w, minlength=n)).astype(np.int64)
    part = {
        "id": present.astype(np.uint64) if gid is None else gid[present],
        "voxels": cnt,
        "lo": lo[present] + off,
        "hi": hi[present] + off + 1,
        "csum": csum[present] + cnt[:, None] * off,
    }
    if image is not None:
        sums = np.bincount(
            local.ravel(), weights=np.asarray(image, np.float64).ravel(), minlength=n
        )
        part["isum"] = sums[present]
    if semantic is not None:
        fg = local > 0
        ids = local[fg].astype(np.uint64) if gid is None else gid[local[fg]]
        key = ids << np.uint64(16) | semantic[fg].astype(np.uint64)
        keys, kc = fastremap.unique(key, return_counts=True)
        part["pair_id"], part["pair_class"] = keys >> np.uint64(16), keys & np.uint64(0xFFFF)
        part["pair_count"] = kc.astype(np.int64)
    part["face_id"] = part["id"]
    if surface:
        faces = _faces(halo, pad, local, n, internal_axes=(0, 1))
        # Along x, a maximal run is bounded by other values at both ends, except
        # at the block's x ends, which _faces handles with the halo.
        inner_x = (runs["x0"] > 0).astype(np.int64) + (runs["x1"] < local.shape[2] - 1)
        faces[:, 2] += np.bincount(lab, weights=inner_x, minlength=n).astype(np.int64)
        faces[0] = 0
        part["faces"] = faces[present]
    else:
        part["faces"] = np.zeros((len(present), 3), np.int64)
    return part


def _runs(local: np.ndarray) -> dict[str, Any]:
    """Maximal runs of equal values along x: label, row (z, y), x0, x1, length."""
    shape = local.shape
    flat = local.ravel()
    end = np.empty(flat.size, bool)  # a run ends where the next voxel differs or the row ends
    np.not_equal(flat[:-1], flat[1:], out=end[:-1])
    end[-1:] = True
    end.reshape(shape)[:, :, -1] = True
    last = np.flatnonzero(end)
    first = np.empty_like(last)
    first[:1] = 0
    first[1:] = last[:-1] + 1
    lab = flat[last]
    keep = lab != 0
    first, last, lab = first[keep], last[keep], lab[keep]
    plane = shape[1] * shape[2]
    z, rest = np.divmod(first, plane)
    y, x0 = np.divmod(rest, shape[2])
    length = last - first + 1
    return {
        "label": lab,
        "z": z,
        "y": y,
        "x0": x0,
        "x1": x0 + length - 1,
        "length": length,
    }


def _faces(
    halo: np.ndarray,
    pad: tuple[int, ...],
    local: np.ndarray,
    n: int,
    internal_axes: Sequence[int] = (0, 1, 2),
) -> np.ndarray:
    """Boundary faces of the block's voxels, per local id and axis.

    A face counts for a voxel when its neighbour across it (in the halo, or
    outside the stack) holds another value, exactly as in :func:`_by_object`.
    Faces between two voxels of the block are counted only along
    ``internal_axes``; the block's end layers are always handled.
    """
    shape = local.shape
    core = [slice(p, p + k) for p, k in zip(pad, shape)]
    centre = halo[tuple(core)]
    faces = np.zeros((n, 3), np.int64)
    flat = np.ascontiguousarray(local).ravel()
    strides = (shape[1] * shape[2], shape[2], 1)
    diff = np.empty(flat.size, bool)
    for ax in range(3):
        count = np.zeros(n, np.int64)
        if ax in internal_axes:
            # Pairs inside the block, compared on the flat array (fast, contiguous);
            # pairs that wrap around a row or plane are masked out.
            st = strides[ax]
            np.not_equal(flat[:-st], flat[st:], out=diff[:-st])
            diff[flat.size - st :] = False
            last = [slice(None)] * 3
            last[ax] = -1
            diff.reshape(shape)[tuple(last)] = False
            idx = np.flatnonzero(diff)
            count += np.bincount(flat[idx], minlength=n) + np.bincount(flat[idx + st], minlength=n)
        for step, edge in ((-1, 0), (1, shape[ax] - 1)):  # the block's two end layers
            layer = [slice(None)] * 3
            layer[ax] = edge
            vals = local[tuple(layer)]
            beyond = core[ax].start + edge + step
            if 0 <= beyond < halo.shape[ax]:  # neighbour in the halo: faces where it differs
                sl = list(core)
                sl[ax] = beyond
                vals = vals[centre[tuple(layer)] != halo[tuple(sl)]]
            count += np.bincount(vals.ravel(), minlength=n)  # else the stack's face
        faces[:, ax] = count
    return faces


def _by_object(halo, pad, local, gid, offset, image, semantic, surface) -> dict[str, np.ndarray]:
    objs = ndi.find_objects(local)
    rows, isums, pairs = [], [], []
    for k, sl in enumerate(objs):
        if sl is None:
            continue
        g = k + 1 if gid is None else int(gid[k + 1])
        # The object's box plus one voxel all round, in halo coordinates.
        want_lo = [s.start + p - 1 for s, p in zip(sl, pad)]
        want_hi = [s.stop + p + 1 for s, p in zip(sl, pad)]
        got_lo = [max(a, 0) for a in want_lo]
        got_hi = [min(b, n) for b, n in zip(want_hi, halo.shape)]
        m = halo[tuple(slice(a, b) for a, b in zip(got_lo, got_hi))] == g
        if got_lo != want_lo or got_hi != want_hi:  # at the stack's faces: outside is not g
            m = np.pad(m, [(a - w, v - b) for a, w, b, v in zip(got_lo, want_lo, got_hi, want_hi)])
        c = m[1:-1, 1:-1, 1:-1]
        n = np.count_nonzero(c)
        csum = [
            int(c.sum(axis=axes) @ np.arange(c.shape[ax]))
            for ax, axes in ((0, (1, 2)), (1, (0, 2)), (2, (0, 1)))
        ]
        f = (0, 0, 0)
        if surface:
            f = (
                np.count_nonzero(c > m[:-2, 1:-1, 1:-1]) + np.count_nonzero(c > m[2:, 1:-1, 1:-1]),
                np.count_nonzero(c > m[1:-1, :-2, 1:-1]) + np.count_nonzero(c > m[1:-1, 2:, 1:-1]),
                np.count_nonzero(c > m[1:-1, 1:-1, :-2]) + np.count_nonzero(c > m[1:-1, 1:-1, 2:]),
            )
        start = [s.start + o for s, o in zip(sl, offset)]
        stop = [s.stop + o for s, o in zip(sl, offset)]
        rows.append((g, n, *start, *stop, *(cs + n * a for cs, a in zip(csum, start)), *f))
        if image is not None:
            isums.append(float(np.asarray(image[sl], np.float64)[c].sum()))
        if semantic is not None:
            cls, cnt = np.unique(semantic[sl][c], return_counts=True)
            pairs.append(np.stack([np.full(len(cls), g), cls, cnt], axis=1))
    table = np.asarray(rows, dtype=np.int64).reshape(-1, 14)
    ids = np.asarray([r[0] for r in rows], dtype=np.uint64)
    part = {
        "id": ids,
        "voxels": table[:, 1],
        "lo": table[:, 2:5],
        "hi": table[:, 5:8],
        "csum": table[:, 8:11],
        "face_id": ids,
        "faces": table[:, 11:14],
    }
    if image is not None:
        part["isum"] = np.asarray(isums, dtype=np.float64)
    if semantic is not None:
        p = np.concatenate(pairs) if pairs else np.zeros((0, 3), np.int64)
        part["pair_id"] = p[:, 0].astype(np.uint64)
        part["pair_class"] = p[:, 1].astype(np.uint64)
        part["pair_count"] = p[:, 2].astype(np.int64)
    return part
