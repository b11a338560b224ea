"""HDF5, zarr and OME-Zarr behind :func:`~napari_anatomics.io.read.open_volume`.

One opener per format (TIFF has :mod:`~napari_anatomics.io.tiff`), the voxel-size readers
(ImageJ, OME-XML, h5/zarr attributes, OME-Zarr scale; all converted to nm),
and the checks every reader shares: :class:`VolumeReadError` (one line naming
the file and the fix), :func:`require_3d`, :func:`require_labels`.
Nothing here reads pixels: each opener returns a lazy dask array.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np

from ..core.volume import DEFAULT_VOXEL_SIZE, Volume

TIFF_SUFFIXES = (".tif", ".tiff")
H5_SUFFIXES = (".h5", ".hdf5", ".hdf")
ZARR_SUFFIXES = (".zarr",)

#: Length units as written in files, in nanometres.
UNIT_NM = {
    "nm": 1.0,
    "nanometer": 1.0,
    "nanometre": 1.0,
    "um": 1e3,
    "µm": 1e3,
    "μm": 1e3,
    "micron": 1e3,
    "microns": 1e3,
    "micrometer": 1e3,
    "micrometre": 1e3,
    "mm": 1e6,
    "millimeter": 1e6,
    "millimetre": 1e6,
    "cm": 1e7,
    "m": 1e9,
    "meter": 1e9,
    "metre": 1e9,
    "a": 0.1,
    "angstrom": 0.1,
    "å": 0.1,
}

#: h5 / zarr attributes that may hold a (z, y, x) voxel size, with their default unit.
_VOXEL_ATTRS = (
    ("voxel_size_nm", "nm"),
    ("voxel_size", "nm"),
    ("element_size_um", "um"),
    ("resolution", "nm"),
    ("spacing", "nm"),
)


class VolumeReadError(ValueError):
    """A volume could not be opened; the message names the file and the fix."""


def require_3d(volume: Volume) -> Volume:
    """Return ``volume`` if it is 3D, else raise a clear :class:`VolumeReadError`.

    A 3D stack with a single slice is accepted (shape (1, y, x)).
    """
    if volume.ndim != 3:
        raise VolumeReadError(
            f"{volume.source or volume.name}: is a single 2D image {tuple(volume.shape)}, "
            "but a 3D stack (z, y, x) is needed; open the whole stack (a multi-page TIFF, "
            "or the folder holding all slices) instead"
        )
    return volume


def require_labels(volume: Volume, what: str = "labels") -> Volume:
    """Return ``volume`` if it is a 3D stack of integer labels, else raise one clear line.

    Parameters
    ----------
    volume : Volume
    what : str
        How the message names the input (``labels``, ``--classes``).

    Raises
    ------
    VolumeReadError
        For a 2D image, or grey values (floats) where object ids are expected.
    """
    require_3d(volume)
    if volume.dtype != bool and not np.issubdtype(volume.dtype, np.integer):
        raise VolumeReadError(
            f"{volume.source or volume.name}: holds {volume.dtype} values, but {what} must "
            "be integer ids (0 = background); give the labels file, or label the "
            "probabilities first (anatomics postprocess)"
        )
    return volume


def split_key(path: str | Path, key: str | None = None) -> tuple[Path, str | None]:
    """Split ``"file.h5:key"`` / ``"store.zarr:component"`` into path and key."""
    text = str(path)
    if key is None and not Path(text).exists():
        for suffix in H5_SUFFIXES + ZARR_SUFFIXES:
            marker = suffix + ":"
            at = text.lower().find(marker)
            if at > 0:
                return Path(text[: at + len(suffix)]), text[at + len(marker) :].strip("/") or None
    return Path(text), key


def voxel_from_attrs(attrs: Mapping[str, Any]) -> tuple[float, float, float] | None:
    """Read a (z, y, x) voxel size in nm from h5 / zarr attributes, if present.

    Recognised: ``voxel_size_nm``, ``voxel_size``, ``resolution``, ``spacing``
    (nm unless a ``unit`` attribute says otherwise) and ``element_size_um`` (µm).
    """
    for name, unit in _VOXEL_ATTRS:
        if name not in attrs:
            continue
        try:
            values = [float(v) for v in np.ravel(np.asarray(attrs[name]))]
        except (TypeError, ValueError):
            continue
        if len(values) == 2:  # a 2D image: (y, x)
            values = [values[0], *values]
        if len(values) != 3 or not all(np.isfinite(v) and v > 0 for v in values):
            continue
        if name != "element_size_um" and "unit" in attrs:
            unit = _text(attrs["unit"])
        factor = UNIT_NM.get(unit.strip().lower())
        if factor is None:
            continue
        return tuple(v * factor for v in values[-3:])  # type: ignore[return-value]
    return None


def _plain(value: Any) -> Any:
    """An h5 attribute as a plain Python value."""
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    return value.tolist() if isinstance(value, (np.ndarray, np.generic)) else value


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def open_h5(path: Path, key: str | None):
    import h5py

    try:
        handle = h5py.File(path, "r")
    except OSError as err:
        raise VolumeReadError(
            f"{path}: is not a readable HDF5 file ({err}); the file may be damaged: "
            "copy or export it again"
        ) from None
    if key is None:
        names = _h5_datasets(handle)
        if not names:
            raise VolumeReadError(f"{path}: holds no dataset")
        if len(names) > 1:
            raise VolumeReadError(
                f"{path}: holds several datasets ({', '.join(names)}); choose one, "
                f"e.g. {path}:{names[0]}"
            )
        key = names[0]
    if key not in handle or not isinstance(handle[key], h5py.Dataset):
        raise VolumeReadError(
            f"{path}: has no dataset {key!r}; it has: {', '.join(_h5_datasets(handle))}"
        )
    dset = handle[key]
    # Whole z slabs (one h5 chunk deep, or one slice): few, large reads.
    chunks = (dset.chunks[0] if dset.chunks else 1, *dset.shape[1:]) if dset.ndim == 3 else None
    data = da.from_array(dset, chunks=chunks or dset.shape, lock=True)
    voxel = voxel_from_attrs(dset.attrs) or voxel_from_attrs(handle.attrs)
    attrs = {k: _plain(v) for k, v in {**handle.attrs, **dset.attrs}.items()}
    return data, voxel, f"{path}:{key}", attrs


def _h5_datasets(handle) -> list[str]:
    import h5py

    names: list[str] = []
    handle.visititems(lambda n, obj: names.append(n) if isinstance(obj, h5py.Dataset) else None)
    return names


# --- zarr ------------------------------------------------------------------------


def is_zarr(path: Path) -> bool:
    return any((path / name).exists() for name in ("zarr.json", ".zarray", ".zgroup"))


def open_zarr(path: Path, key: str | None):
    import zarr

    try:
        node = zarr.open(str(path), mode="r")
    except Exception as err:
        raise VolumeReadError(
            f"{path}: is not a readable zarr store ({err}); check it is complete"
        ) from None
    attrs: Mapping[str, Any] = {}
    if isinstance(node, zarr.Group):
        group_attrs = dict(node.attrs)
        multiscales = group_attrs.get("multiscales") or group_attrs.get("ome", {}).get(
            "multiscales"
        )
        if key is not None:
            if key not in node:
                raise VolumeReadError(
                    f"{path}: has no component {key!r}; it has: {', '.join(_arrays(node))}"
                )
            node, attrs = node[key], group_attrs
        elif multiscales:
            data, voxel = _open_ome_zarr(node, multiscales[0], path)
            return data, voxel, f"{path}:{multiscales[0]['datasets'][0]['path']}", group_attrs
        else:
            names = _arrays(node)
            if len(names) != 1:
                raise VolumeReadError(
                    f"{path}: holds {len(names)} arrays ({', '.join(names) or 'none'}); "
                    f"choose one, e.g. {path}:{names[0] if names else 'name'}"
                )
            key = names[0]
            node, attrs = node[key], group_attrs
        if isinstance(node, zarr.Group):
            return open_zarr(path / key, None)
    data = da.from_zarr(node)
    voxel = voxel_from_attrs(dict(node.attrs)) or voxel_from_attrs(attrs)
    source = f"{path}:{key}" if key else str(path)
    return data, voxel, source, {**attrs, **dict(node.attrs)}


def _arrays(group, prefix: str = "") -> list[str]:
    """Paths of all arrays in a zarr group, nested groups included."""
    import zarr

    names = []
    for name, member in group.members():
        if isinstance(member, zarr.Group):
            names += _arrays(member, f"{prefix}{name}/")
        else:
            names.append(prefix + name)
    return sorted(names)


def _open_ome_zarr(group, multiscale: Mapping[str, Any], path: Path):
    level0 = multiscale["datasets"][0]
    data = da.from_zarr(group[level0["path"]])
    axes = multiscale.get("axes") or [{"name": a} for a in "tczyx"[-data.ndim :]]
    axes = [a if isinstance(a, Mapping) else {"name": a} for a in axes]
    scale = np.ones(data.ndim)
    for transforms in (
        level0.get("coordinateTransformations", []),
        multiscale.get("coordinateTransformations", []),
    ):
        for transform in transforms:
            if transform.get("type") == "scale":
                scale = scale * np.asarray(transform["scale"], dtype=float)
    spatial = [
        i
        for i, a in enumerate(axes)
        if a.get("type", "space") == "space" and a["name"] in ("z", "y", "x")
    ]
    other = tuple(i for i in range(data.ndim) if i not in spatial)
    if any(data.shape[i] != 1 for i in other):
        raise VolumeReadError(
            f"{path}: has channel or time axes {tuple(data.shape)}; napari-anatomics "
            "needs one grey-level 3D stack: export a single channel first"
        )
    data = data.squeeze(axis=other) if other else data
    factors = [UNIT_NM.get(str(axes[i].get("unit", "micrometer")).lower()) for i in spatial]
    voxel = None
    if len(spatial) >= 2 and None not in factors:
        sizes = [float(scale[i]) * f for i, f in zip(spatial, factors)]
        if len(sizes) == 2:
            sizes = [DEFAULT_VOXEL_SIZE[0], *sizes]
        voxel = tuple(sizes[-3:])
    return data, voxel
