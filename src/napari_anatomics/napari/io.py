"""napari reader and Labels writers (npe2 contributions) over :mod:`napari_anatomics.io.read`.

The reader opens TIFF, HDF5 (``file.h5`` or ``file.h5:key``), zarr / OME-Zarr
and folders of 2D slices lazily, and makes their layers with the one
Volume -> layer bridge, :func:`napari_anatomics.napari.layers.volume_layer_data`:
the voxel size becomes the layer ``scale`` (nm) so lengths and volumes shown in
napari are physical, and integer data open as Labels when the file says so
(attribute ``layer_type: labels``, written by the writers below) or its name
contains "label", "seg", "mask", "annot" or "gt"; otherwise as an Image.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ..io.read import H5_SUFFIXES, TIFF_SUFFIXES, ZARR_SUFFIXES, open_volume, split_key
from ..io.slices import SLICE_SUFFIXES
from ..io.write import write_h5, write_tif, write_zarr
from .layers import LayerData, volume_layer_data


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
    """Open ``path`` and return one layer data tuple."""
    if isinstance(path, list):
        path = path[0]
    return [volume_layer_data(open_volume(path))]


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
