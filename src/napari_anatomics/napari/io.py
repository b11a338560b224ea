"""napari reader and Labels writers (npe2 contributions) over :mod:`napari_anatomics.io.read`.

The reader opens TIFF, HDF5 (``file.h5`` or ``file.h5:key``), zarr, OME-Zarr
and folders of 2D slices lazily, and makes their layers with the one
Volume -> layer bridge, :func:`napari_anatomics.napari.layers.volume_layer_data`:
the voxel size becomes the layer ``scale`` (nm) so lengths and volumes shown in
napari are physical, and integer data open as Labels when the file says so
(attribute ``layer_type: labels``, written by the writers below) or its name
contains "label", "seg", "mask", "annot" or "gt"; otherwise as an Image.

An OME-Zarr image opens with every level as one multiscale Image layer (browsing
a stack of any size stays smooth), scaled in nm by level 0; each of its
``labels/<name>`` opens as a Labels layer at level 0, paintable (napari cannot
paint multiscale labels), with the per-object properties of its ``image-label``
metadata as the layer's ``features``. The OME-Zarr writer saves a Labels layer
as a multiscale labels image (NGFF 0.4) with its measured ``features`` as those
properties; saved as ``image.ome.zarr/labels/<name>`` it joins that image.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..io.omezarr import is_ome_zarr, open_multiscale, write_ome_zarr
from ..io.read import H5_SUFFIXES, TIFF_SUFFIXES, ZARR_SUFFIXES, open_volume, split_key
from ..io.slices import SLICE_SUFFIXES
from ..io.write import write_h5, write_tif, write_zarr
from .features import features_table, table_features
from .layers import LayerData, multiscale_layer_data, volume_layer_data


def get_reader(path: str | list[str]) -> Callable[[str | list[str]], list[LayerData]] | None:
    """Return a reader for ``path`` when napari-anatomics can open it, else None."""
    if isinstance(path, list):
        if len(path) != 1:
            return None
        path = path[0]
    file, _ = split_key(path)
    suffix = file.suffix.lower()
    if suffix in TIFF_SUFFIXES + H5_SUFFIXES + ZARR_SUFFIXES:
        return read_layers
    if file.is_dir() and (
        any((file / n).exists() for n in ("zarr.json", ".zarray", ".zgroup"))
        or any(p.suffix.lower() in SLICE_SUFFIXES for p in file.iterdir())
    ):
        return read_layers
    return None


def read_layers(path: str | list[str]) -> list[LayerData]:
    """Open ``path``: one layer data tuple, or an OME-Zarr image and its labels."""
    if isinstance(path, list):
        path = path[0]
    file, key = split_key(path)
    if key is None and file.is_dir() and is_ome_zarr(file):
        return ome_zarr_layers(file)
    return [volume_layer_data(open_volume(path))]


def ome_zarr_layers(path: str | Path) -> list[LayerData]:
    """An OME-Zarr image as a multiscale Image layer, then its labels as Labels layers.

    A labels image opened on its own (``image.ome.zarr/labels/<name>``) is one
    Labels layer.
    """
    import zarr

    path = Path(path)
    attrs = dict(zarr.open_group(str(path), mode="r").attrs)
    attrs = dict(attrs.get("ome", attrs))
    if "image-label" in attrs:
        return [_labels_layer(path, attrs["image-label"])]
    layers = [multiscale_layer_data(open_multiscale(path), "image")]
    labels = path / "labels"
    if labels.is_dir():
        group = dict(zarr.open_group(str(labels), mode="r").attrs)
        for name in dict(group.get("ome", group)).get("labels", []):
            if is_ome_zarr(labels / name):
                meta = dict(zarr.open_group(str(labels / name), mode="r").attrs)
                layers.append(_labels_layer(labels / name, meta.get("ome", meta)["image-label"]))
    return layers


def _labels_layer(path: Path, image_label: dict[str, Any]) -> LayerData:
    """Level 0 of an OME-Zarr labels image, its properties as ``features``."""
    data, options, kind = multiscale_layer_data(open_multiscale(path), "labels")
    properties = image_label.get("properties") or []
    rows = [p for p in properties if "label-value" in p]
    if rows:
        table = pd.DataFrame(rows).rename(columns={"label-value": "id"})
        options["features"] = table_features(table)
    return data, options, kind


def _voxel_size(meta: dict, ndim: int) -> tuple[float, float, float] | None:
    """Voxel size (z, y, x nm) of a layer being saved; None when it has no physical scale."""
    stored = (meta.get("metadata") or {}).get("voxel_size")
    if stored is not None and (meta.get("metadata") or {}).get("voxel_size_origin") != "default":
        return tuple(float(v) for v in stored)
    scale = [float(s) for s in meta.get("scale", [1.0] * ndim)][-3:]
    if all(s == 1.0 for s in scale) or len(scale) < 3:
        return None
    return tuple(scale)  # type: ignore[return-value]


def write_labels_zarr(path: str, data: Any, meta: dict) -> list[str]:
    """Save a Labels layer as chunked, compressed zarr (voxel size from its scale)."""
    write_zarr(
        data,
        path,
        voxel_size=_voxel_size(meta, np.ndim(data)),
        attrs={"layer_type": "labels"},
        overwrite=True,
    )
    return [path]


def write_labels_ome_zarr(path: str, data: Any, meta: dict) -> list[str]:
    """Save a Labels layer as an OME-Zarr labels image (NGFF 0.4, multiscale).

    Its measured ``features`` go in as per-object properties; a path
    ``image.ome.zarr/labels/<name>`` adds the labels to that image.
    """
    features = meta.get("features")
    table = features_table(pd.DataFrame(features)) if features is not None else None
    properties = None
    if table is not None and len(table):
        properties = [
            {"label-value": int(row.pop("id")), **{k: _known(v) for k, v in row.items()}}
            for row in table.to_dict("records")
        ]
    write_ome_zarr(
        data,
        path,
        voxel_size=_voxel_size(meta, np.ndim(data)),
        labels=True,
        name=meta.get("name"),
        properties=properties,
        overwrite=True,
    )
    return [path]


def _known(value: Any) -> Any:
    """A table value for JSON: NaN (not measured) as None."""
    return None if isinstance(value, float) and value != value else value


def write_labels_tif(path: str, data: Any, meta: dict) -> list[str]:
    """Save a Labels layer as a compressed multi-page TIFF."""
    write_tif(data, path, voxel_size=_voxel_size(meta, np.ndim(data)), overwrite=True)
    return [path]


def write_labels_h5(path: str, data: Any, meta: dict) -> list[str]:
    """Save a Labels layer as HDF5 (dataset ``labels``)."""
    write_h5(
        data,
        path,
        key="labels",
        voxel_size=_voxel_size(meta, np.ndim(data)),
        attrs={"layer_type": "labels"},
        overwrite=True,
    )
    return [path]
