"""Index helpers of :mod:`~napari_anatomics.core.chunkcache`: boxes, point arrays, changes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

Box = tuple[slice, ...]


def union(*boxes: Box) -> Box:
    """The box around every one of ``boxes``."""
    return tuple(slice(min(s.start for s in axis), max(s.stop for s in axis))
                 for axis in zip(*boxes))  # fmt: skip


def overlap(lo_a, hi_a, lo_b, hi_b) -> tuple[Box, Box] | None:
    """Where box a (``lo_a``:``hi_a``) meets box b: as slices into an array of box a, and
    into one of box b (None when they do not meet)."""
    lo = [max(p, q) for p, q in zip(lo_a, lo_b)]
    hi = [min(p, q) for p, q in zip(hi_a, hi_b)]
    if any(x >= y for x, y in zip(lo, hi)):
        return None
    return (tuple(slice(x - a, y - a) for x, y, a in zip(lo, hi, lo_a)),
            tuple(slice(x - b, y - b) for x, y, b in zip(lo, hi, lo_b)))  # fmt: skip


def merge_changes(*changes: tuple[Box, Any] | None) -> tuple[Box, np.ndarray] | None:
    """Join changes ``(box, ids)`` (None for none): the box around them all, every id."""
    changes = tuple(c for c in changes if c is not None)
    if not changes:
        return None
    ids = np.unique(np.concatenate([np.asarray(i).ravel() for _, i in changes]))
    return union(*(box for box, _ in changes)), ids


def point_arrays(key: Any, ndim: int) -> tuple[np.ndarray, ...] | None:
    """``key`` as integer point arrays, one per axis, or None for a box."""
    if (isinstance(key, (tuple, list)) and len(key) == ndim
            and all(isinstance(k, np.ndarray | list) for k in key)):  # fmt: skip
        arrays = tuple(np.asarray(k) for k in key)
        if all(a.dtype.kind in "iu" for a in arrays):
            return tuple(a.astype(np.int64) for a in np.broadcast_arrays(*arrays))
        raise IndexError("CachedArray takes boxes or integer point arrays, not masks")
    return None


def box_of(key: Any, shape: tuple[int, ...]) -> tuple[Box, tuple]:
    """A box (slices of step 1) and the index that squeezes its integer axes."""
    key = key if isinstance(key, tuple) else (key,)
    if any(k is Ellipsis for k in key):
        at = next(i for i, k in enumerate(key) if k is Ellipsis)
        key = key[:at] + (slice(None),) * (len(shape) - len(key) + 1) + key[at + 1 :]
    key = key + (slice(None),) * (len(shape) - len(key))
    if len(key) != len(shape):
        raise IndexError(f"too many indices for an array of shape {shape}")
    box, squeeze = [], []
    for k, n in zip(key, shape):
        if isinstance(k, slice):
            start, stop, step = k.indices(n)
            if step != 1:
                raise IndexError("CachedArray takes slices of step 1")
            box.append(slice(start, max(start, stop)))
            squeeze.append(slice(None))
        elif isinstance(k, int | np.integer):
            i = int(k) + n if int(k) < 0 else int(k)
            if not 0 <= i < n:
                raise IndexError(f"index {int(k)} is out of bounds for an axis of size {n}")
            box.append(slice(i, i + 1))
            squeeze.append(0)
        else:
            raise IndexError(f"CachedArray cannot index with {type(k).__name__}")
    return tuple(box), tuple(squeeze)


def bounds(box: Sequence[slice], shape: Sequence[int]) -> tuple[list[int], list[int]]:
    """A box's start and stop per axis, clipped to ``shape``."""
    lo = [max(0, int(s.start or 0)) for s in box]
    hi = [min(n, int(n if s.stop is None else s.stop)) for s, n in zip(box, shape)]
    return lo, hi


def paste_into_view(view: tuple, out: np.ndarray, lo: Sequence[int], block: np.ndarray) -> None:
    """Copy the part of a box write (``block`` at ``lo``) that falls in a remembered view."""
    hi = [x + n for x, n in zip(lo, block.shape)]
    parts = overlap(*view, lo, hi)
    if parts is not None:
        out[parts[0]] = block[parts[1]]
