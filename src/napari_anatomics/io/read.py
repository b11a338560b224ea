"""Open any supported volume lazily as a :class:`~napari_anatomics.core.volume.Volume`.

Supported inputs (nothing is read whole; dask reads what is asked for):

* multi-page / 3D TIFF (ImageJ, OME or plain), one chunk per page;
* HDF5: ``file.h5`` holding one dataset, or ``file.h5:key`` / ``key=``;
* zarr arrays, zarr groups with ``key`` (a component path), and OME-Zarr
  multiscale groups (level 0 is opened, its scale is the voxel size);
* a folder of 2D slices (tif, png, jpg) in natural order (see
  :mod:`napari_anatomics.io.slices`).

The voxel size is read from the file where it is recorded (ImageJ spacing
and resolution, OME PhysicalSize, OME-Zarr scale, h5/zarr attributes such as
``voxel_size``, ``element_size_um``, ``resolution``) and converted to nm.
A voxel size given by the caller overrides the file; with neither,
:data:`~napari_anatomics.core.volume.DEFAULT_VOXEL_SIZE` is used and marked as
``"default"`` so reports can say it is a guess.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..core.volume import DEFAULT_VOXEL_SIZE, Volume, check_voxel_size, parse_voxel_size
from .formats import (
    H5_SUFFIXES,
    TIFF_SUFFIXES,
    ZARR_SUFFIXES,
    VolumeReadError,
    is_zarr,
    open_h5,
    open_zarr,
    require_3d,
    require_labels,
    split_key,
    voxel_from_attrs,
)
from .slices import open_slice_folder
from .tiff import open_tiff

__all__ = [
    "H5_SUFFIXES",
    "TIFF_SUFFIXES",
    "ZARR_SUFFIXES",
    "VolumeReadError",
    "open_volume",
    "require_3d",
    "require_labels",
    "split_key",
    "voxel_from_attrs",
]


def open_volume(
    path: str | Path,
    key: str | None = None,
    voxel_size: str | Sequence[float] | None = None,
    name: str | None = None,
) -> Volume:
    """Open a volume lazily.

    Parameters
    ----------
    path : str or Path
        A TIFF, HDF5 or zarr file, a folder of 2D slices, or ``file.h5:key`` /
        ``store.zarr:component``.
    key : str, optional
        Dataset inside an HDF5 file or component inside a zarr group.
    voxel_size : str or sequence of 3 floats, optional
        Overrides the file's voxel size: a user string "X,Y,Z" (nm), or a
        (z, y, x) tuple in nm as returned by
        :func:`~napari_anatomics.core.volume.parse_voxel_size`.
    name : str, optional
        Layer / report name; defaults to the file name.

    Returns
    -------
    Volume
        ``data`` is a dask array ordered (z, y, x) (or (y, x) for a 2D file).

    Raises
    ------
    VolumeReadError
        If the path is missing, unreadable, of an unsupported kind, or
        ambiguous (several datasets and no key).
    """
    path, key = split_key(path, key)
    if not path.exists():
        raise VolumeReadError(f"{path}: no such file or folder; check the path and spelling")
    suffix = path.suffix.lower()
    attrs: dict[str, Any] = {}
    try:
        if suffix in ZARR_SUFFIXES or (path.is_dir() and is_zarr(path)):
            data, file_voxel, source, attrs = open_zarr(path, key)
        elif path.is_dir():
            data, file_voxel = open_slice_folder(path)
            source = str(path)
        elif suffix in TIFF_SUFFIXES:
            data, file_voxel = open_tiff(path)
            source = str(path)
        elif suffix in H5_SUFFIXES:
            data, file_voxel, source, attrs = open_h5(path, key)
        else:
            raise VolumeReadError(
                f"{path}: unsupported file type {suffix or '(none)'!r}; "
                "use a .tif/.tiff, .h5/.hdf5 or .zarr file, or a folder of 2D slices"
            )
    except VolumeReadError:
        raise
    except Exception as err:
        raise VolumeReadError(
            f"{path}: cannot be read ({type(err).__name__}: {err}); the file may be "
            "damaged or incomplete: copy it again or re-export it"
        ) from err
    if data.ndim not in (2, 3):
        raise VolumeReadError(
            f"{source}: has {data.ndim} dimensions {tuple(data.shape)}; napari-anatomics "
            "needs one grey-level 3D stack (z, y, x): split channels or time points first"
        )
    if voxel_size is not None:
        vs = parse_voxel_size(voxel_size) if isinstance(voxel_size, str) else voxel_size
        vs, origin = check_voxel_size(vs, "voxel_size"), "user"
    elif file_voxel is not None:
        vs, origin = file_voxel, "file"
    else:
        vs, origin = DEFAULT_VOXEL_SIZE, "default"
    label = name or (path.name + (f":{key}" if key else ""))
    return Volume(data, vs, origin, source, label, metadata=attrs)
