"""Painted labels -> training targets and loss masks.

* **Semantic**: a class index map, 0 = background, ``i + 1`` for the i-th
  painted value in ``label_values``.
* **Instance** (PyTorch Connectomics "BC" / "BCD" targets): a foreground map,
  an instance-boundary map (voxels whose in-plane neighbourhood holds another
  id, background included, so touching objects are kept apart by a band) and
  optionally a normalized in-plane distance map (1 at an object's core,
  falling to 0 at its edge).
* **Contact band**: voxels where two painted objects meet (in-plane), for
  weighting the loss where touching objects must be told apart.
* **Loss mask**: only painted slices count. A z-slice holding any non-zero
  label is annotated (its zeros are background); other slices are masked out.
  Voxels painted with ``ignore_value`` are masked out too, for partially
  painted slices.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage as ndi

#: Channel names of instance targets.
INSTANCE_TARGETS = ("foreground", "boundary")


def annotated_slices(labels: np.ndarray) -> np.ndarray:
    """Per-slice flags: True where a z-slice holds any non-zero label.

    Parameters
    ----------
    labels : ndarray, (z, y, x)

    Returns
    -------
    ndarray of bool, (z,)
    """
    labels = np.asarray(labels)
    return labels.reshape(labels.shape[0], -1).any(axis=1)


def loss_mask(
    labels: np.ndarray, annotated: Sequence[bool] | np.ndarray, ignore_value: int | None = None
) -> np.ndarray:
    """Voxels that count in the loss.

    Parameters
    ----------
    labels : ndarray, (z, y, x)
        Painted labels of a crop.
    annotated : sequence of bool, (z,)
        Whether each slice of the crop is annotated. Decide this on whole
        slices (:func:`annotated_slices`), not on the crop: an annotated slice
        may be all background inside a crop.
    ignore_value : int, optional
        Label value meaning "not painted" (masked out).

    Returns
    -------
    ndarray of bool, (z, y, x)
    """
    labels = np.asarray(labels)
    annotated = np.asarray(annotated, dtype=bool)
    if annotated.shape != labels.shape[:1]:
        raise ValueError(
            f"need one annotated flag per slice: {annotated.shape[0]} flags for "
            f"{labels.shape[0]} slices"
        )
    mask = np.broadcast_to(annotated[:, None, None], labels.shape).copy()
    if ignore_value is not None:
        mask &= labels != ignore_value
    return mask


def semantic_targets(
    labels: np.ndarray, label_values: Sequence[int], ignore_value: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Class index map from painted values.

    Parameters
    ----------
    labels : ndarray, (z, y, x)
    label_values : sequence of int
        Painted value of each class; class ``i + 1`` is ``label_values[i]``.
    ignore_value : int, optional
        Value meaning "not painted".

    Returns
    -------
    classes : ndarray of int64
        0 = background, 1..K classes.
    known : ndarray of bool
        False where a voxel holds a value that is neither 0, a class value nor
        ``ignore_value`` (such voxels should be masked out of the loss).
    """
    labels = np.asarray(labels)
    values = np.asarray(list(label_values), dtype=np.int64)
    lut_keys = np.concatenate([[0], values])
    order = np.argsort(lut_keys)
    flat = labels.astype(np.int64, copy=False)
    pos = np.clip(np.searchsorted(lut_keys[order], flat), 0, lut_keys.size - 1)
    hit = lut_keys[order][pos] == flat
    classes = np.where(hit, order[pos], 0).astype(np.int64)
    known = hit.copy()
    if ignore_value is not None:
        known |= flat == ignore_value
    return classes, known


def instance_targets(
    labels: np.ndarray,
    *,
    distance: bool = False,
    boundary_width: int = 1,
    ignore_value: int | None = None,
) -> np.ndarray:
    """Foreground, boundary (and distance) maps from instance labels.

    Parameters
    ----------
    labels : ndarray, (z, y, x)
        Instance ids, 0 = background. Touching objects must carry different ids.
    distance : bool
        Add a third channel: in-plane distance to the object's edge,
        normalized to 1 at each object's core (per slice).
    boundary_width : int
        Half-width of the boundary band in voxels (in-plane).
    ignore_value : int, optional
        Treated as background here; mask it out of the loss with
        :func:`loss_mask`.

    Returns
    -------
    ndarray of float32, (C, z, y, x)
        C = 2 (foreground, boundary) or 3 (..., distance).
    """
    labels = np.asarray(labels)
    if ignore_value is not None:
        labels = np.where(labels == ignore_value, 0, labels)
    size = (1, 2 * boundary_width + 1, 2 * boundary_width + 1)
    fg = labels > 0
    boundary = ndi.grey_dilation(labels, size=size) != ndi.grey_erosion(labels, size=size)
    maps = [fg.astype(np.float32), boundary.astype(np.float32)]
    if distance:
        maps.append(_normalized_distance(labels, fg & ~boundary))
    return np.stack(maps)


def contact_band(labels: np.ndarray, width: int = 1) -> np.ndarray:
    """Voxels whose in-plane neighbourhood holds two different objects.

    Parameters
    ----------
    labels : ndarray, (z, y, x)
        Instance ids, 0 = background.
    width : int
        Half-width of the neighbourhood (voxels), as ``boundary_width``.

    Returns
    -------
    ndarray of bool, (z, y, x)
        True on both sides of each object-object contact; object-background
        edges are not included.
    """
    labels = np.asarray(labels)
    size = (1, 2 * width + 1, 2 * width + 1)
    top = ndi.grey_dilation(labels, size=size)
    if not top.any():
        return np.zeros(labels.shape, bool)
    # Background counts as "above every id" for the lowest non-zero neighbour.
    lowest = ndi.grey_erosion(np.where(labels > 0, labels, top.max() + 1), size=size)
    return (lowest <= top) & (lowest != top)


def _normalized_distance(labels: np.ndarray, core: np.ndarray) -> np.ndarray:
    out = np.zeros(labels.shape, dtype=np.float32)
    for z in range(labels.shape[0]):
        if not core[z].any():
            continue
        dist = ndi.distance_transform_edt(core[z])
        _, ids = np.unique(np.where(core[z], labels[z], 0), return_inverse=True)
        ids = ids.reshape(core[z].shape)
        peak = np.asarray(ndi.maximum(dist, ids, index=np.arange(ids.max() + 1)), np.float32)
        peak[peak == 0] = 1.0
        out[z] = dist / peak[ids]
    return out
