"""A chunked array on disk seen through a write-back cache of decoded chunks.

Proofreading a labels layer that lives in a zarr file (as Auto-label writes it)
changes a few objects at a time, but every change of a zarr array decodes the
chunks under it, changes them and encodes them again, and napari's public edit
path (:meth:`napari.layers.Labels.data_setitem`, its undo and redo) reads the
changed voxels twice and writes them once more. On a 1 GiB array of
32 x 256 x 256 zstd chunks that is 0.1-0.3 s per edit on the GUI thread.

:class:`CachedArray` wraps such an array (anything with ``shape``, ``dtype``,
``chunks``, ``__getitem__`` and ``__setitem__`` on boxes) and is what the layer
holds instead:

* **Edits** (point indexing ``a[(z, y, x)] = v`` as napari's ``data_setitem`` does,
  and box writes ``a[box] = block``) go to decoded chunks kept in memory; the
  chunks they touch are read once (by the edit's worker, off the GUI thread:
  :mod:`napari_anatomics.napari.editing`). A background thread writes changed chunks back to the
  file, one whole chunk at a time (zarr writes each chunk as one object).
  :meth:`CachedArray.flush` waits until the file holds every change; it runs at
  interpreter exit too.
* **Views** (box reads that cover chunks not in memory: the slice napari shows,
  a measurement pass) read the file and lay the unsaved chunks over it, so they
  never populate the cache (its memory stays that of the edits, not of the
  stack). The last few planes viewed are remembered and kept up to date by every write,
  so napari's refresh after an undo or redo reads no file.
* **Changes** since the last :meth:`CachedArray.take_changes` (the box written and
  every id written or overwritten) let a stats table measure again only what an
  edit, a brush stroke, an undo or a redo touched.

Thread-safe: the GUI thread, workers and the writer share one lock for the
cache and one for the file. The writer is :class:`~.writeback.WriteBack`; boxes and
point arrays are read by :mod:`~.boxes`.
"""

from __future__ import annotations

import itertools
import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import fastremap
import numpy as np

from .boxes import Box, bounds, box_of, merge_changes, overlap, paste_into_view, point_arrays
from .writeback import WriteBack

__all__ = ["CachedArray", "merge_changes"]
#: Clean chunks kept in memory up to this size (chunks with unsaved changes are always kept).
CACHE_BYTES = 512 * 2**20
#: Reads up to this many voxels (a voxel under the cursor, a seed point) decode their
#: chunks into the cache; bigger ones (views, measurements) read the file.
SMALL_READ = 4096
#: Planes read (a box one voxel thick, as napari's 2D view reads) remembered, each up to
#: :data:`VIEW_BYTES`.
VIEWS = 4
VIEW_BYTES = 64 * 2**20



class CachedArray(WriteBack):
    """A chunked array (e.g. ``zarr.Array``) with a write-back cache of decoded chunks.

    Parameters
    ----------
    array : array-like
        The array on disk: ``shape``, ``dtype``, ``chunks`` and box indexing
        (read and write).
    cache_bytes : int
        Memory for clean decoded chunks (least recently used go first).

    Notes
    -----
    Supported indexing: boxes (ints and slices of step 1, ``...``) for reading and
    writing, and point indexing with a tuple of integer arrays (one per axis)
    as in :meth:`napari.layers.Labels.data_setitem`.
    """

    def __init__(self, array: Any, cache_bytes: int = CACHE_BYTES) -> None:
        if isinstance(array, CachedArray):
            array = array.array
        self.array = array
        self.shape = tuple(int(s) for s in array.shape)
        self.dtype = np.dtype(array.dtype)
        self.chunks = tuple(int(c) for c in array.chunks)
        self.ndim = len(self.shape)
        self.cache_bytes = int(cache_bytes)
        self._grid = tuple(-(-s // c) for s, c in zip(self.shape, self.chunks))
        self._chunks: OrderedDict[tuple[int, ...], np.ndarray] = OrderedDict()
        self._views: OrderedDict[tuple, np.ndarray] = OrderedDict()
        self._changes: list[tuple[Box, np.ndarray]] = []  # (box changed, ids touched)
        self._lock = threading.RLock()  # cache state
        self._init_writer()

    # ---- array protocol ------------------------------------------------------------------
    @property
    def size(self) -> int:
        """Number of voxels."""
        return int(np.prod(self.shape))

    @property
    def nbytes(self) -> int:
        """Bytes of the whole array decoded."""
        return self.size * self.dtype.itemsize

    def __len__(self) -> int:
        return self.shape[0]

    def __repr__(self) -> str:
        return f"CachedArray({self.array!r}, {len(self._dirty)} unsaved chunk(s))"

    @property
    def attrs(self) -> Any:
        """The wrapped array's attributes (zarr ``attrs``), when it has them."""
        return getattr(self.array, "attrs", {})

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        out = self[(slice(None),) * self.ndim]
        return out if dtype is None else out.astype(dtype)

    def __getitem__(self, key: Any) -> np.ndarray:
        points = point_arrays(key, self.ndim)
        if points is not None:
            return self._get_points(points)
        box, squeeze = box_of(key, self.shape)
        return self._get_box(box)[squeeze]

    def __setitem__(self, key: Any, value: Any) -> None:
        self._raise_writer_error()
        points = point_arrays(key, self.ndim)
        if points is not None:
            self._set_points(points, value)
        else:
            box, squeeze = box_of(key, self.shape)
            block = np.empty([s.stop - s.start for s in box], self.dtype)
            block[squeeze] = value
            self._set_box(box, block)
        self._start_writer()

    # ---- public helpers -----------------------------------------------------------------
    def take_changes(self) -> tuple[Box, np.ndarray] | None:
        """What changed since the last call: the box written and every id written or replaced.

        Returns
        -------
        (box, ids) or None
            None when nothing was written.
        """
        with self._lock:
            changes, self._changes = self._changes, []
        return merge_changes(*changes)

    def peek_changes(self) -> tuple[Box, np.ndarray] | None:
        """What :meth:`take_changes` would return, leaving it to be taken."""
        with self._lock:
            return merge_changes(*self._changes)

    # ---- reading and writing --------------------------------------------------------------
    def _chunk_keys(self, lo: Sequence[int], hi: Sequence[int]) -> list[tuple[int, ...]]:
        ranges = [range(a // c, -(-b // c)) for a, b, c in zip(lo, hi, self.chunks)]
        return list(itertools.product(*ranges))

    def _chunk_box(self, key: tuple[int, ...]) -> Box:
        return tuple(slice(k * c, min((k + 1) * c, s))
                     for k, c, s in zip(key, self.chunks, self.shape))  # fmt: skip

    def _chunk(self, key: tuple[int, ...]) -> np.ndarray:
        """The decoded chunk ``key`` (read from the file when not cached)."""
        with self._lock:
            chunk = self._chunks.get(key)
            if chunk is not None:
                self._chunks.move_to_end(key)
                return chunk
        with self._file:
            data = np.array(self.array[self._chunk_box(key)], dtype=self.dtype)
        with self._lock:
            chunk = self._chunks.setdefault(key, data)  # another thread may have read it
            self._chunks.move_to_end(key)
            return chunk

    def _locked_with(self, keys: Sequence[tuple[int, ...]]) -> None:
        """Take the cache lock with every chunk of ``keys`` in memory (read when missing)."""
        while True:
            for key in keys:
                self._chunk(key)
            self._lock.acquire()
            if all(key in self._chunks for key in keys):
                return
            self._lock.release()  # evicted meanwhile by another thread: read again

    def _evict(self) -> None:
        size = sum(c.nbytes for c in self._chunks.values())
        for key in list(self._chunks):
            if size <= self.cache_bytes:
                break
            if key not in self._dirty:
                size -= self._chunks.pop(key).nbytes

    def _get_box(self, box: Box) -> np.ndarray:
        lo, hi = bounds(box, self.shape)
        view = (tuple(lo), tuple(hi))
        keys = self._chunk_keys(lo, hi)
        if np.prod([b - a for a, b in zip(lo, hi)]) <= SMALL_READ:
            self._locked_with(keys)  # a look-up (a voxel, a seed): through the cache
            try:
                return self._read_cached(lo, hi, keys)
            finally:
                self._lock.release()
        with self._lock:
            if view in self._views:
                self._views.move_to_end(view)
                return self._views[view].copy()
            if all(k in self._chunks for k in keys):
                return self._read_cached(lo, hi, keys)
        with self._file:  # the file, then what it does not hold yet
            out = np.array(self.array[box], dtype=self.dtype)
            with self._lock:
                self._overlay(out, lo, hi, [k for k in keys if k in self._dirty])
                if out.nbytes <= VIEW_BYTES and min(b - a for a, b in zip(lo, hi)) == 1:
                    self._views[view] = out.copy()
                    while len(self._views) > VIEWS:
                        self._views.popitem(last=False)
        return out

    def _parts(self, keys, lo, hi):
        """Per chunk of ``keys``: the key, its part of the box ``lo``:``hi`` as slices into an
        array of the box, and as slices into the chunk."""
        for key in keys:
            cbox = self._chunk_box(key)
            parts = overlap(lo, hi, [c.start for c in cbox], [c.stop for c in cbox])
            if parts is not None:
                yield key, *parts

    def _overlay(self, out: np.ndarray, lo, hi, keys) -> None:
        """Copy cached chunks ``keys`` into ``out`` (the box ``lo``:``hi``). Lock held."""
        for key, in_box, in_chunk in self._parts(keys, lo, hi):
            out[in_box] = self._chunks[key][in_chunk]

    def _set_box(self, box: Box, block: np.ndarray) -> None:
        lo, hi = bounds(box, self.shape)
        keys = self._chunk_keys(lo, hi)
        self._locked_with(keys)
        try:
            self._write_block(lo, keys, self._read_cached(lo, hi, keys), block)
        finally:
            self._lock.release()

    def _read_cached(self, lo, hi, keys) -> np.ndarray:
        """The box ``lo``:``hi`` from cached chunks ``keys`` (lock held)."""
        out = np.empty([b - a for a, b in zip(lo, hi)], self.dtype)
        self._overlay(out, lo, hi, keys)
        return out

    def _write_block(self, lo, keys, before: np.ndarray, block: np.ndarray) -> None:
        """Write ``block`` at ``lo`` into cached chunks ``keys`` (lock held); note the change."""
        changed = before != block
        if not changed.any():
            return
        hi = [x + n for x, n in zip(lo, block.shape)]
        for key, in_box, in_chunk in self._parts(keys, lo, hi):
            if changed[in_box].any():
                self._chunks[key][in_chunk] = block[in_box]
                self._dirty[key] = self._dirty.get(key, 0) + 1
        where = [np.flatnonzero(changed.any(axis=tuple(j for j in range(self.ndim) if j != i)))
                 for i in range(self.ndim)]  # fmt: skip
        ids = np.union1d(fastremap.unique(before[changed]), fastremap.unique(block[changed]))
        box = tuple(slice(x + int(w[0]), x + int(w[-1]) + 1) for x, w in zip(lo, where))
        self._changes.append((box, ids))
        for view, out in self._views.items():
            paste_into_view(view, out, lo, block)
        self._evict()

    def _group(self, points: tuple[np.ndarray, ...]):
        """Points grouped by chunk: (chunk key, positions in ``points``, local indices)."""
        cidx = tuple(p // c for p, c in zip(points, self.chunks))
        flat = np.ravel_multi_index(cidx, self._grid)
        order = np.argsort(flat, kind="stable")
        keys, starts = np.unique(flat[order], return_index=True)
        ends = np.append(starts[1:], order.size)
        for k, a, b in zip(keys, starts, ends):
            key = tuple(int(i) for i in np.unravel_index(k, self._grid))
            sel = order[a:b]
            local = tuple(p[sel] - i * c for p, i, c in zip(points, key, self.chunks))
            yield key, sel, local

    @staticmethod
    def _around(flat: tuple[np.ndarray, ...]) -> tuple[list[int], list[int], bool]:
        """The box around the points, and whether it is small enough to read whole."""
        lo = [int(p.min()) for p in flat]
        hi = [int(p.max()) + 1 for p in flat]
        volume = np.prod([b - a for a, b in zip(lo, hi)], dtype=float)
        return lo, hi, volume <= max(8 * flat[0].size, 2**20)

    def _get_points(self, points: tuple[np.ndarray, ...]) -> np.ndarray:
        flat = tuple(p.ravel() for p in points)
        if flat[0].size == 0:
            return np.empty(points[0].shape, self.dtype)
        lo, hi, dense = self._around(flat)
        if dense:
            keys = self._chunk_keys(lo, hi)
            self._locked_with(keys)
            try:
                box = self._read_cached(lo, hi, keys)
            finally:
                self._lock.release()
            return box[tuple(p - a for p, a in zip(flat, lo))].reshape(points[0].shape)
        out = np.empty(flat[0].shape, self.dtype)
        groups = list(self._group(flat))
        self._locked_with([g[0] for g in groups])
        try:
            for key, sel, local in groups:
                out[sel] = self._chunks[key][local]
            self._evict()
        finally:
            self._lock.release()
        return out.reshape(points[0].shape)

    def _set_points(self, points: tuple[np.ndarray, ...], value: Any) -> None:
        flat = tuple(p.ravel() for p in points)
        if flat[0].size == 0:
            return
        values = np.broadcast_to(np.asarray(value, self.dtype), points[0].shape).reshape(-1)
        lo, hi, dense = self._around(flat)
        if dense:
            self._set_dense(flat, values, lo, hi)
            return
        for key, sel, local in list(self._group(flat)):  # far apart: chunk by chunk
            cbox = self._chunk_box(key)
            in_chunk = tuple(q + c.start for q, c in zip(local, cbox))
            self._set_dense(in_chunk, values[sel], *self._around(in_chunk)[:2])

    def _set_dense(self, flat: tuple[np.ndarray, ...], values: np.ndarray, lo, hi) -> None:
        """Write point values through the box ``lo``:``hi`` around the points."""
        keys = self._chunk_keys(lo, hi)
        self._locked_with(keys)
        try:
            before = self._read_cached(lo, hi, keys)
            block = before.copy()
            block[tuple(p - a for p, a in zip(flat, lo))] = values
            self._write_block(lo, keys, before, block)
        finally:
            self._lock.release()
