"""Combine a folder of 2D slices into one stack on disk (zarr, TIFF or HDF5).

The folder is read lazily (:mod:`~napari_anatomics.io.slices`) and streamed to
the output slab by slab (:mod:`~napari_anatomics.io.write`), so memory holds one
chunk-deep slab of slices however many slices there are.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ..core.progress import Job, Progress
from ..core.volume import Volume
from .read import open_volume, require_3d
from .write import write_volume_job


def combine_slices(
    folder: str | Path,
    out: str | Path,
    *,
    chunks: Sequence[int] | None = None,
    voxel_size: Sequence[float] | None = None,
    overwrite: bool = False,
) -> Job[Volume]:
    """Combine a folder of 2D slices into one stack on disk.

    A generator job: yields :class:`~napari_anatomics.core.progress.Progress` as
    slices are written and returns the written stack opened lazily. Memory
    holds at most one chunk-deep slab of slices, however many slices there are.

    Parameters
    ----------
    folder : str or Path
        Folder of 2D slices (tif, png, jpg), read in natural order.
    out : str or Path
        Output ``.zarr`` (chunked, compressed), ``.tif``/``.tiff`` or ``.h5``/``.hdf5``.
    chunks : sequence of 3 int, optional
        Chunk shape (z, y, x) for zarr and h5 output.
    voxel_size : sequence of 3 float, optional
        (z, y, x) nm, stored with the output.
    overwrite : bool
        Replace an existing output.

    Returns
    -------
    Volume
        The combined stack, opened from ``out``.
    """
    volume = require_3d(open_volume(folder, voxel_size=voxel_size))
    stored_voxel = volume.voxel_size if volume.voxel_size_origin != "default" else None
    yield Progress(0, volume.shape[0], f"{volume.shape[0]} slices")
    written = yield from write_volume_job(
        volume.data, out, chunks=chunks, voxel_size=stored_voxel, overwrite=overwrite
    )
    return open_volume(written, voxel_size=voxel_size)
