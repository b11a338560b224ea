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

import contextlib
import logging
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np

from ..core.volume import DEFAULT_VOXEL_SIZE, Volume, check_voxel_size, parse_voxel_size

TIFF_SUFFIXES = (".tif", ".tiff")
H5_SUFFIXES = (".h5", ".hdf5", ".hdf")
ZARR_SUFFIXES = (".zarr",)

#: Length units as written in files, in nanometres.
_UNIT_NM = {
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
        if suffix in ZARR_SUFFIXES or (path.is_dir() and _is_zarr(path)):
            data, file_voxel, source, attrs = _open_zarr(path, key)
        elif path.is_dir():
            from .slices import open_slice_folder

            data, file_voxel = open_slice_folder(path)
            source = str(path)
        elif suffix in TIFF_SUFFIXES:
            data, file_voxel = _open_tiff(path)
            source = str(path)
        elif suffix in H5_SUFFIXES:
            data, file_voxel, source, attrs = _open_h5(path, key)
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
        factor = _UNIT_NM.get(unit.strip().lower())
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


# --- TIFF ------------------------------------------------------------------------


@contextlib.contextmanager
def quiet_tifffile() -> Iterator[list[str]]:
    """Collect tifffile's log messages instead of letting them print to stderr.

    tifffile logs damaged files ("invalid page offset") as warnings before it
    raises or carries on; the readers here report such files in their own
    words (:func:`check_tiff_complete`), so the raw lines are kept out of the
    terminal. Yields the list the messages are collected into.
    """
    messages: list[str] = []

    class _Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            messages.append(record.getMessage())

    logger = logging.getLogger("tifffile")
    handler, propagate = _Collect(), logger.propagate
    logger.addHandler(handler)
    logger.propagate = False
    try:
        yield messages
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate


def check_tiff_complete(tif: Any, path: str | Path, logged: Sequence[str] = ()) -> None:
    """Refuse a TIFF that ends before the image data its tags point to.

    Only the tags are read (page offsets and byte counts, via tifffile), not
    the pixels, so this is cheap even for long stacks. A file cut short by an
    interrupted copy or export would otherwise open, pass a data check and
    fail later in the middle of a job with a bare "failed to read N bytes".

    Parameters
    ----------
    tif : tifffile.TiffFile
        The open file.
    path : str or Path
        Its name, for the message.
    logged : sequence of str
        What tifffile logged while opening it (see :func:`quiet_tifffile`): a page
        or tag value that points past the end of the file means it was cut short.

    Raises
    ------
    VolumeReadError
        Naming the file, the first missing page or byte and the fix.
    """
    fix = "it was cut short (an interrupted copy or export?): copy or export it again"
    size = int(tif.filehandle.size)
    if not tif.pages or not tif.series:
        raise VolumeReadError(
            f"{path}: holds no readable image: it is damaged or was cut short (an "
            "interrupted copy or export?): copy or export it again"
        )
    series = tif.series[0]
    pages = tif.pages
    n = len(pages)
    past_end = [m for m in logged if "invalid page offset" in m or "invalid value offset" in m]
    if past_end:
        raise VolumeReadError(
            f"{path}: is incomplete: it points past its end ({n} readable pages, "
            f"{size:,} bytes); {fix}"
        )
    images = int((tif.imagej_metadata or {}).get("images", 1) or 1)
    if tif.is_imagej and series.kind != "imagej" and images > n:
        raise VolumeReadError(
            f"{path}: is incomplete: it holds {n} readable pages of the {images} its "
            f"ImageJ header announces; {fix}"
        )
    page_size = max(1, int(np.prod(series.keyframe.shape)))
    expected = max(1, int(np.prod(series.shape)) // page_size)
    if series.dataoffset is not None:  # one contiguous block of data
        end = int(series.dataoffset) + int(series.nbytes)
        if end > size:
            raise VolumeReadError(
                f"{path}: is incomplete: its data runs to byte {end:,} but the file "
                f"has {size:,} bytes; {fix}"
            )
        return
    pages.useframes = True  # offsets and byte counts only, not every tag
    for i in range(n):
        page = pages[i]
        ends = [int(o) + int(c) for o, c in zip(page.dataoffsets, page.databytecounts) if o]
        if ends and max(ends) > size:
            raise VolumeReadError(
                f"{path}: is incomplete: page {i + 1} of {n} runs to byte {max(ends):,} "
                f"but the file has {size:,} bytes; {fix}"
            )
    if n < expected:
        raise VolumeReadError(
            f"{path}: is incomplete: it holds {n} readable pages of the {expected} its "
            f"header announces; {fix}"
        )


def _open_tiff(path: Path) -> tuple[da.Array, tuple[float, float, float] | None]:
    import tifffile
    import zarr

    with quiet_tifffile() as logged, tifffile.TiffFile(path) as tif:
        check_tiff_complete(tif, path, logged)
        series = tif.series[0]
        axes, shape = series.axes, series.shape
        voxel = _tiff_voxel(tif)
    with quiet_tifffile():
        store = tifffile.imread(path, aszarr=True, series=0, level=0, chunkmode="page")
    array = zarr.open(store, mode="r")
    data = da.from_zarr(array)
    # Drop singleton axes (ImageJ 'TZCYX' with size-1 T/C); keep y, x.
    drop = tuple(i for i, (ax, n) in enumerate(zip(axes, shape)) if n == 1 and ax not in "YX")
    if drop:
        data = data.squeeze(axis=drop)
    if data.ndim == 3 and axes.replace("Q", "Z").replace("I", "Z")[-1] == "S":
        raise VolumeReadError(
            f"{path}: is a colour (RGB) image; save it as a grey-level stack first"
        )
    # One chunk per page (z slab) keeps reads small.
    if data.ndim == 3:
        data = data.rechunk({0: 1})
    return data, voxel


def _tiff_voxel(tif) -> tuple[float, float, float] | None:
    """Voxel size (z, y, x) nm from ImageJ or OME metadata, when complete."""
    if tif.is_ome and tif.ome_metadata:
        voxel = _ome_xml_voxel(tif.ome_metadata)
        if voxel is not None:
            return voxel
    meta = tif.imagej_metadata
    if meta and "spacing" in meta:
        factor = _UNIT_NM.get(str(meta.get("unit", "")).replace("\\u00B5", "µ").lower())
        page = tif.pages.first
        xres, yres = page.tags.get("XResolution"), page.tags.get("YResolution")
        if factor is None or xres is None or yres is None:
            return None
        try:
            x = xres.value[1] / xres.value[0]
            y = yres.value[1] / yres.value[0]
            z = float(meta["spacing"])
        except (ZeroDivisionError, TypeError, ValueError):
            return None
        if min(x, y, z) > 0:
            return (z * factor, y * factor, x * factor)
    return None


def _ome_xml_voxel(xml: str) -> tuple[float, float, float] | None:
    try:
        root = ET.fromstring(xml)
    except ET.ParseError:
        return None
    for element in root.iter():
        if element.tag.endswith("Pixels"):
            sizes = []
            for axis in "ZYX":
                value = element.get(f"PhysicalSize{axis}")
                unit = element.get(f"PhysicalSize{axis}Unit", "µm")
                factor = _UNIT_NM.get(unit.lower())
                if value is None or factor is None:
                    return None
                sizes.append(float(value) * factor)
            return tuple(sizes)  # type: ignore[return-value]
    return None


# --- HDF5 ------------------------------------------------------------------------


def _open_h5(path: Path, key: str | None):
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


def _is_zarr(path: Path) -> bool:
    return any((path / name).exists() for name in ("zarr.json", ".zarray", ".zgroup"))


def _open_zarr(path: Path, key: str | None):
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
            return _open_zarr(path / key, None)
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
    factors = [_UNIT_NM.get(str(axes[i].get("unit", "micrometer")).lower()) for i in spatial]
    voxel = None
    if len(spatial) >= 2 and None not in factors:
        sizes = [float(scale[i]) * f for i, f in zip(spatial, factors)]
        if len(sizes) == 2:
            sizes = [DEFAULT_VOXEL_SIZE[0], *sizes]
        voxel = tuple(sizes[-3:])
    return data, voxel
