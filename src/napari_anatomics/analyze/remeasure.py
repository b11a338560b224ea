"""Measure again only what changed: the rows of the ids an edit touched.

An edit, a brush stroke, an undo or a redo changes voxels inside one box (the
*changed box*) and touches a few ids (those written and those overwritten). Every
other row of a :func:`~napari_anatomics.analyze.measure.measure` table is still
right, and a touched id's voxels outside the changed box did not move, so its new
extent lies inside its old bounding box joined with the changed box.
:func:`remeasure` measures the touched ids inside that region (plus one voxel, so
their boundary faces are counted as in the whole array) and replaces their rows:
the same numbers as measuring the whole array again
(``tests/test_remeasure.py``), at the cost of the region.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import fastremap
import numpy as np
import pandas as pd

from .measure import BBOX_COLUMNS, measure

Slices = tuple[slice, ...]
_AXES = ("z", "y", "x")


def remeasure(
    table: pd.DataFrame,
    labels: Any,
    changed: Slices,
    ids: Sequence[int],
    voxel_size: Sequence[float],
    *,
    image: Any = None,
    classes: Any = None,
    class_names: Sequence[str] | Mapping[int, str] | None = None,
    surface: bool = True,
) -> pd.DataFrame:
    """``table`` with the rows of ``ids`` measured again after a change inside ``changed``.

    Parameters
    ----------
    table : DataFrame
        A :func:`~napari_anatomics.analyze.measure.measure` table of ``labels`` as they
        were before the change (same options).
    labels : array-like, (z, y, x)
        The labels after the change (numpy, zarr or
        :class:`~napari_anatomics.core.chunkcache.CachedArray`): only a box is read.
    changed : tuple of slice
        A box holding every changed voxel.
    ids : sequence of int
        Every id written or overwritten in it (0 is ignored).
    voxel_size : sequence of 3 floats
        (z, y, x) nm, as for ``measure``.
    image, classes, class_names, surface
        As for :func:`~napari_anatomics.analyze.measure.measure`; a semantic
        ``classes`` map and ``image`` are read in the same box.

    Returns
    -------
    DataFrame
        Sorted by id: rows of ids that are gone are dropped, new ids get rows.
    """
    ids = np.array(sorted({int(i) for i in ids} - {0}), dtype=np.int64)
    if ids.size == 0:
        return table
    shape = tuple(int(s) for s in labels.shape)
    lo = np.array([s.start for s in changed])
    hi = np.array([s.stop for s in changed])
    known = table[table["id"].isin(ids)] if len(table) else table
    if len(known):
        lo = np.minimum(lo, known[BBOX_COLUMNS[:3]].to_numpy().min(axis=0))
        hi = np.maximum(hi, known[BBOX_COLUMNS[3:]].to_numpy().max(axis=0))
    lo, hi = np.maximum(lo - 1, 0), np.minimum(hi + 1, shape)
    box = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))
    crop = np.asarray(labels[box])
    crop = fastremap.mask_except(crop.copy(), ids.astype(crop.dtype).tolist())
    cut = lambda a: None if a is None else np.asarray(a[box])  # noqa: E731
    semantic = classes is not None and not isinstance(classes, Mapping) and np.ndim(classes) > 1
    rows = measure(
        crop, voxel_size, image=cut(image), surface=surface, class_names=class_names,
        classes=cut(classes) if semantic else classes,
    )  # fmt: skip
    rows = _shift(rows, lo, shape, voxel_size)
    kept = table[~table["id"].isin(ids)] if len(table) else table
    parts = [part for part in (kept, rows) if len(part)]
    if not parts:
        return rows
    merged = pd.concat(parts, ignore_index=True)[list(table.columns) or list(rows.columns)]
    return merged.sort_values("id", kind="stable").reset_index(drop=True)


def _shift(rows: pd.DataFrame, offset: np.ndarray, shape, voxel_size) -> pd.DataFrame:
    """Rows measured in a box: positions in the whole array, its borders."""
    rows = rows.copy()
    for k, a in enumerate(_AXES):
        for column in (f"bbox_{a}0", f"bbox_{a}1", f"centroid_{a}"):
            rows[column] = rows[column] + offset[k]
        rows[f"centroid_{a}_um"] = rows[f"centroid_{a}"] * float(voxel_size[k]) * 1e-3
    low = rows[BBOX_COLUMNS[:3]].to_numpy() == 0
    high = rows[BBOX_COLUMNS[3:]].to_numpy() == np.asarray(shape)
    rows["touches_border"] = (low | high).any(axis=1)
    rows["touches_border_xy"] = (low | high)[:, 1:].any(axis=1)
    return rows
