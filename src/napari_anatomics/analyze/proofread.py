"""Proofreading operations on label arrays, each returning an undo record.

Every operation changes ``labels`` **in place** and touches only the bounding
boxes of the objects it changes, so it stays fast on big arrays. ``labels`` may
be a numpy array (e.g. a napari Labels layer's ``data``: call
``layer.refresh()`` afterwards; a 2D array is handled as one slice, so its
edits have (1, y, x) boxes), a zarr array or an h5py dataset (regions are
read, changed and written back). Dask arrays are read-only: write them to zarr
first.

Each operation returns an :class:`Edit`; :func:`undo` restores exactly what
was there and :func:`redo` applies it again. Undo edits in the reverse order
they were made.

Bounding boxes come from a :func:`~napari_anatomics.analyze.measure.measure` table
when given (``index=table``), so repeated edits cost no pass over the data;
otherwise one pass finds them (:func:`~napari_anatomics.analyze.measure.index_instances`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import dask.array as da
import fastremap
import numpy as np
import pandas as pd

from .blockstats import blocks as _blocks
from .measure import bounding_boxes, index_instances

Slices = tuple[slice, ...]
#: Bounding boxes: a measure/index table, or ``{id: slices}``.
Index = pd.DataFrame | Mapping[int, Slices]


@dataclass
class Region:
    """Voxels changed inside one box: where (``mask``), what was there, what was written.

    ``new`` holds the written values when they differ voxel by voxel (a split);
    otherwise the edit's ``new_value`` was written everywhere.
    """

    slices: Slices
    mask: np.ndarray
    previous: np.ndarray
    new: np.ndarray | None = None


@dataclass
class Edit:
    """What an operation changed, enough to undo and redo it.

    Attributes
    ----------
    operation : str
        ``"delete"``, ``"remove_small"``, ``"remove_border"``, ``"merge"``,
        ``"split"`` or ``"relabel"``.
    ids : tuple of int
        The ids that were removed, merged, split (the object, then its new ids)
        or renumbered.
    new_value : int or None
        The value written into the changed voxels (0 when deleting, the
        target id when merging); None for relabelling and splits.
    regions : list of Region
        Per changed box: its slices, the changed voxels and their old values.
    mapping : dict or None
        For relabelling: old id -> new id over the whole array.
    """

    operation: str
    ids: tuple[int, ...] = ()
    new_value: int | None = None
    regions: list[Region] = field(default_factory=list)
    mapping: dict[int, int] | None = None

    @property
    def n_voxels(self) -> int:
        """Number of voxels changed (all voxels of renumbered ids for relabelling)."""
        return int(sum(int(r.mask.sum()) for r in self.regions))

    @property
    def bbox(self) -> Slices | None:
        """The box around every changed region (None when nothing changed or relabelled)."""
        if not self.regions:
            return None
        lo = np.min([[s.start for s in r.slices] for r in self.regions], axis=0)
        hi = np.max([[s.stop for s in r.slices] for r in self.regions], axis=0)
        return tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))


def delete(labels: Any, ids: int | Iterable[int], *, index: Index | None = None) -> Edit:
    """Set every voxel of the given ids to 0.

    Parameters
    ----------
    labels : ndarray, zarr array or h5py dataset
        Changed in place.
    ids : int or iterable of int
    index : DataFrame or mapping, optional
        Bounding boxes (a :func:`~napari_anatomics.analyze.measure.measure` table or
        ``{id: slices}``); found with one pass when omitted.

    Returns
    -------
    Edit
    """
    labels, ids = writable_labels(labels), _id_tuple(ids)
    return _paint(labels, ids, 0, object_boxes(labels, ids, index), "delete")


def merge(
    labels: Any, ids: Iterable[int], *, into: int | None = None, index: Index | None = None
) -> Edit:
    """Merge ids into one: every voxel of ``ids`` takes the value ``into``.

    Parameters
    ----------
    labels : ndarray, zarr array or h5py dataset
        Changed in place.
    ids : iterable of int
        At least two ids (or one plus ``into``).
    into : int, optional
        The id to keep; the smallest of ``ids`` by default.
    index : DataFrame or mapping, optional
        Bounding boxes, as for :func:`delete`.
    """
    labels, ids = writable_labels(labels), _id_tuple(ids)
    target = min(ids) if into is None else int(into)
    if target <= 0:
        raise ValueError("merge target must be a positive id")
    others = tuple(i for i in ids if i != target)
    if not others:
        raise ValueError(f"merge needs at least two different ids, got {ids}")
    return _paint(labels, others, target, object_boxes(labels, others, index), "merge")


def remove_small(
    labels: Any,
    min_size: float,
    *,
    unit: Literal["voxels", "um3"] = "voxels",
    voxel_size: Sequence[float] | None = None,
    index: pd.DataFrame | None = None,
) -> Edit:
    """Delete every instance smaller than ``min_size``.

    Parameters
    ----------
    labels : ndarray, zarr array or h5py dataset
        Changed in place.
    min_size : float
        Instances with fewer voxels (or a smaller volume in µm³) are removed.
    unit : {"voxels", "um3"}
    voxel_size : sequence of float, optional
        (z, y, x) nm; required with ``unit="um3"``.
    index : DataFrame, optional
        A :func:`~napari_anatomics.analyze.measure.measure` table of ``labels``
        (avoids a pass over the data).
    """
    labels = writable_labels(labels)
    table = index_instances(labels) if index is None else index
    sizes = table["voxels"].to_numpy(dtype=float)
    if unit == "um3":
        if voxel_size is None:
            raise ValueError("remove_small with unit='um3' needs voxel_size (z, y, x nm)")
        sizes = sizes * float(np.prod(voxel_size)) * 1e-9
    elif unit != "voxels":
        raise ValueError(f"unit must be 'voxels' or 'um3', not {unit!r}")
    small = table[sizes < min_size]
    ids = tuple(int(i) for i in small["id"])
    return _paint(labels, ids, 0, bounding_boxes(small), "remove_small")


def remove_border(
    labels: Any,
    *,
    axes: Literal["zyx", "yx"] = "zyx",
    index: pd.DataFrame | None = None,
) -> Edit:
    """Delete every instance touching the stack border.

    Parameters
    ----------
    labels : ndarray, zarr array or h5py dataset
        Changed in place.
    axes : {"zyx", "yx"}
        Which stack faces count: all, or only the y/x sides (for stacks of a
        few slices, where nearly every object meets the first or last slice).
    index : DataFrame, optional
        A :func:`~napari_anatomics.analyze.measure.measure` table of ``labels``.
    """
    if axes not in ("zyx", "yx"):
        raise ValueError(f"axes must be 'zyx' or 'yx', not {axes!r}")
    labels = writable_labels(labels)
    table = index_instances(labels) if index is None else index
    shape = np.asarray(labels.shape[-3:])
    lo = table[["bbox_z0", "bbox_y0", "bbox_x0"]].to_numpy() == 0
    hi = table[["bbox_z1", "bbox_y1", "bbox_x1"]].to_numpy() == shape
    touch = lo | hi
    if axes == "yx":
        touch = touch[:, 1:]
    border = table[touch.any(axis=1)]
    ids = tuple(int(i) for i in border["id"])
    return _paint(labels, ids, 0, bounding_boxes(border), "remove_border")


def relabel_sequential(labels: Any) -> Edit:
    """Renumber the ids present to 1..n in increasing order (0 stays 0).

    Works over the whole array (block by block for zarr/h5py).
    """
    labels = writable_labels(labels)
    present = present_ids(labels)
    mapping = {int(old): new for new, old in enumerate(present[present > 0], start=1)}
    changed = {k: v for k, v in mapping.items() if k != v}
    if changed:
        _remap(labels, changed)
    return Edit("relabel", tuple(changed), None, [], changed)


def undo(labels: Any, edit: Edit) -> None:
    """Restore what ``edit`` changed (in place)."""
    labels = writable_labels(labels)
    if edit.mapping is not None:
        if edit.mapping:
            _remap(labels, {v: k for k, v in edit.mapping.items()})
        return
    for region in reversed(edit.regions):
        block = labels[region.slices]
        block[region.mask] = region.previous
        if not isinstance(labels, np.ndarray):
            labels[region.slices] = block


def redo(labels: Any, edit: Edit) -> None:
    """Apply ``edit`` again after :func:`undo` (in place)."""
    labels = writable_labels(labels)
    if edit.mapping is not None:
        if edit.mapping:
            _remap(labels, edit.mapping)
        return
    for region in edit.regions:
        block = labels[region.slices]
        block[region.mask] = edit.new_value if region.new is None else region.new
        if not isinstance(labels, np.ndarray):
            labels[region.slices] = block


# -- helpers (also used by :mod:`~napari_anatomics.analyze.split`) ---------------


def _id_tuple(ids: int | Iterable[int]) -> tuple[int, ...]:
    if isinstance(ids, (int, np.integer)):
        ids = [ids]
    out = tuple(dict.fromkeys(int(i) for i in ids))
    if any(i <= 0 for i in out):
        raise ValueError(f"ids must be positive (0 is background), got {out}")
    return out


def writable_labels(labels: Any) -> Any:
    """``labels`` as a writable 3D array (a 2D numpy array becomes a one-slice view).

    Raises
    ------
    TypeError
        For a (read-only) dask array.
    """
    if isinstance(labels, da.Array):
        raise TypeError(
            "labels is a read-only dask array: write it to zarr (or load it into memory) "
            "before proofreading"
        )
    if isinstance(labels, np.ndarray) and labels.ndim == 2:
        return labels[None]
    if len(labels.shape) != 3:
        raise ValueError(f"labels must be 3D (z, y, x) or a 2D numpy array, not {labels.shape}")
    return labels


def object_boxes(labels: Any, ids: tuple[int, ...], index: Index | None) -> dict[int, Slices]:
    """The bounding box of each id found: from ``index`` when given, else one pass."""
    if index is None:
        return bounding_boxes(index_instances(labels, ids))
    if isinstance(index, pd.DataFrame):
        index = bounding_boxes(index[index["id"].isin(ids)])
    return {i: tuple(index[i]) for i in ids if i in index}


def _paint(
    labels: Any, ids: tuple[int, ...], value: int, boxes: Mapping[int, Slices], op: str
) -> Edit:
    """Write ``value`` over ``ids`` within their boxes; record the old values."""
    if value and value > np.iinfo(labels.dtype).max:
        raise ValueError(f"id {value} does not fit in labels of type {labels.dtype}")
    edit = Edit(op, ids, value)
    for i in ids:
        if i not in boxes:
            continue
        slices = boxes[i]
        block = labels[slices]
        mask = block == i
        if not mask.any():
            continue
        edit.regions.append(Region(slices, mask, block[mask].copy()))
        block[mask] = value
        if not isinstance(labels, np.ndarray):
            labels[slices] = block
    edit.ids = tuple(i for i in ids if i in boxes)
    return edit


def next_free_id(labels: Any, index: Index | None = None) -> int:
    """One above the largest id: from a measure table when given (it lists every id),
    else a numpy maximum in memory, else one pass block by block on disk."""
    if isinstance(index, pd.DataFrame) and len(index):
        return int(index["id"].max()) + 1
    if isinstance(labels, np.ndarray):
        return int(labels.max(initial=0)) + 1
    return int(present_ids(labels).max(initial=0)) + 1


def present_ids(labels: Any) -> np.ndarray:
    """Every value in ``labels`` (0 included), block by block for arrays on disk."""
    if isinstance(labels, np.ndarray):
        return np.asarray(fastremap.unique(labels))
    found = [fastremap.unique(np.asarray(labels[b.write])) for b in _blocks(labels)]
    return np.unique(np.concatenate(found)) if found else np.zeros(0, labels.dtype)


def _remap(labels: Any, mapping: Mapping[int, int]) -> None:
    if isinstance(labels, np.ndarray):
        if labels.flags.writeable and labels.flags.c_contiguous:
            fastremap.remap(labels, mapping, preserve_missing_labels=True, in_place=True)
        else:
            labels[...] = fastremap.remap(labels, mapping, preserve_missing_labels=True)
        return
    for inner in (b.write for b in _blocks(labels)):
        block = np.asarray(labels[inner])
        labels[inner] = fastremap.remap(block, mapping, preserve_missing_labels=True)
