"""TIFF stacks: lazy pages, truncated-file checks, and the voxel size ImageJ or OME wrote.

A multi-page or 3D TIFF opens as one dask chunk per page. Its voxel size is
read from ImageJ ``spacing``/resolution tags or OME-XML ``PhysicalSize``, in nm.
"""

from __future__ import annotations

import contextlib
import logging
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np

from .formats import UNIT_NM, VolumeReadError


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


def open_tiff(path: Path) -> tuple[da.Array, tuple[float, float, float] | None]:
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
        factor = UNIT_NM.get(str(meta.get("unit", "")).replace("\\u00B5", "µ").lower())
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
                factor = UNIT_NM.get(unit.lower())
                if value is None or factor is None:
                    return None
                sizes.append(float(value) * factor)
            return tuple(sizes)  # type: ignore[return-value]
    return None


# --- HDF5 ------------------------------------------------------------------------
