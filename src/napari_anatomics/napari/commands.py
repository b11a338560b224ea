"""Plain napari commands (npe2 ``commands`` and ``menus``): for scripts, macros and menus.

Functions typed with :mod:`napari.types` take and return arrays, so a script
or a macro calls them on any data (magicgui makes a widget of them too):

* :func:`postprocess_probabilities`: probability maps -> labels
  (:func:`~napari_anatomics.segment.postprocess.postprocess`);
* :func:`remove_small_objects`, :func:`remove_border_objects`: filtered copies of
  labels (:mod:`~napari_anatomics.analyze.proofread`).

The menu commands take the selected layer (napari hands it over) and appear in
the viewer's Layers menu:

* Layers > Measure: :func:`measure_labels` puts the stats table into the
  layer's ``features`` (:mod:`~napari_anatomics.napari.features`);
* Layers > Segment: :func:`label_probabilities` adds the objects of a
  probability image as a Labels layer; :func:`remove_border_labels` deletes the
  objects touching the x/y border of a Labels layer as one undo step.
"""

from __future__ import annotations

import tempfile

import numpy as np
import pandas as pd
from napari.layers import Image, Labels
from napari.types import ImageData, LabelsData, LayerDataTuple

from ..core.progress import run_job
from .features import drop_ids, measure_layer_job, table_features
from .history import apply_edit
from .layers import layer_array, layer_voxel_size


def postprocess_probabilities(
    probabilities: ImageData,
    task: str = "instance",
    min_size: int = 0,
    seed_threshold: float = 0.5,
    boundary_threshold: float = 0.5,
) -> LabelsData:
    """Label the objects of probability maps.

    Parameters
    ----------
    probabilities : ndarray
        ``(C, Z, Y, X)`` maps in [0, 1] (uint8: ``value / 255``): instance maps
        (foreground, boundary[, distance]) or semantic ones (background, class 1...).
        A ``(Z, Y, X)`` image is one foreground probability: semantic, its
        connected components become the objects.
    task : {"instance", "semantic"}
        How to read a 4D array.
    min_size : int
        Objects with fewer voxels are dropped.
    seed_threshold, boundary_threshold : float
        Instance maps: seeds where foreground >= ``seed_threshold`` and boundary
        <= ``boundary_threshold``.

    Returns
    -------
    ndarray of uint32
        Labels, ids 1..n.
    """
    from ..segment.postprocess import postprocess

    maps = np.asarray(probabilities)
    if maps.ndim == 3:  # one foreground probability: background first, then it
        foreground = maps / 255.0 if maps.dtype == np.uint8 else maps.astype(np.float32)
        maps, task = np.stack([1.0 - foreground, foreground]).astype(np.float32), "semantic"
    if maps.ndim != 4:
        raise ValueError(
            f"probability maps are (C, Z, Y, X), or (Z, Y, X) for one class; not {maps.shape}"
        )
    settings = {"min_size": int(min_size)}
    if task == "instance":
        settings |= {"seed_threshold": seed_threshold, "boundary_threshold": boundary_threshold}
    with tempfile.TemporaryDirectory(prefix="anatomics-labels-") as tmp:
        labels = run_job(postprocess(maps, f"{tmp}/out.zarr", task=task, **settings))
        return np.asarray(labels[...])


def remove_small_objects(labels: LabelsData, min_voxels: int = 64) -> LabelsData:
    """A copy of ``labels`` without the objects of fewer than ``min_voxels`` voxels."""
    from ..analyze.proofread import remove_small

    out = np.array(labels, copy=True)
    remove_small(out, min_voxels)
    return out


def remove_border_objects(labels: LabelsData, all_faces: bool = False) -> LabelsData:
    """A copy of ``labels`` without the objects touching its x/y edges (or any face)."""
    from ..analyze.proofread import remove_border

    out = np.array(labels, copy=True)
    remove_border(out, axes="zyx" if all_faces else "yx")
    return out


def _labels_layer(layer: object) -> Labels:
    if not isinstance(layer, Labels):
        raise ValueError("select a labels layer first (in the layer list)")
    return layer


def measure_labels(labels: Labels) -> pd.DataFrame:
    """Measure every object of a Labels layer into its ``features`` (µm); return the table.

    The classes Auto-label recorded are used, grey values are not (the Proofread &
    Stats panel adds them). It runs while napari waits: for large stacks the panel
    measures in the background, with a progress bar.
    """
    layer = _labels_layer(labels)
    table = run_job(measure_layer_job(layer))
    layer.features = table_features(table)
    return table


def remove_border_labels(labels: Labels) -> None:
    """Delete the objects of a Labels layer touching its x/y edges, as one undo step."""
    layer = _labels_layer(labels)
    edit = apply_edit(layer, "remove_border", axes="yx")
    drop_ids(layer, edit.ids)


def label_probabilities(probabilities: Image) -> LayerDataTuple:
    """The objects of a probability Image layer, as a new Labels layer in its scale.

    A 4D layer is read as the maps of ``metadata["task"]`` (instance by default);
    a 3D one as one foreground probability (see :func:`postprocess_probabilities`).
    """
    if not isinstance(probabilities, Image):
        raise ValueError("select a probability image layer first (in the layer list)")
    task = probabilities.metadata.get("task", "instance")
    labels = postprocess_probabilities(np.asarray(layer_array(probabilities)), task=task)
    voxel_size, origin = layer_voxel_size(probabilities)
    options = {
        "name": f"{probabilities.name} objects",
        "scale": voxel_size,
        "metadata": {"voxel_size": voxel_size, "voxel_size_origin": origin, "task": "instance"},
    }
    return labels, options, "labels"
