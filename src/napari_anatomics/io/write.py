"""Write volumes (labels, probability maps, combined stacks) to zarr, TIFF or HDF5.

Every writer streams: the source (a dask or numpy array) is computed one
z-slab at a time, so memory holds one slab (chunk depth x y x x), not the
stack. Each writer first writes to a hidden temporary name next to the target
and renames it when complete, so an interrupted write never leaves a
half-written file under the real name (:func:`~napari_anatomics.core.files.atomic_path`).

The voxel size (z, y, x nm) is stored with the data: zarr and h5 attribute
``voxel_size_nm`` (h5 also ``element_size_um``), ImageJ or OME metadata in TIFF;
:func:`napari_anatomics.io.read.open_volume` reads it back.

Each writer exists as a job generator (``write_*_job``, yields
:class:`~napari_anatomics.core.progress.Progress` per slab and returns the path) and
as a plain function (``write_*``) that runs the job.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import dask
import dask.array as da
import numpy as np

from ..core.blocks import DEFAULT_CHUNKS
from ..core.files import atomic_path
from ..core.progress import Job, Progress, run_job
from ..core.volume import check_voxel_size

#: With default chunks (``core.blocks.DEFAULT_CHUNKS``), the chunk depth shrinks so one
#: z-slab stays under this size.
MAX_SLAB_BYTES = 256 * 2**20


def write_zarr(
    data: Any,
    path: str | Path,
    *,
    component: str | None = None,
    chunks: Sequence[int] | None = None,
    voxel_size: Sequence[float] | None = None,
    attrs: Mapping[str, Any] | None = None,
    overwrite: bool = False,
) -> str:
    """Write an array to a chunked, compressed zarr array; return the path read back.

    Parameters
    ----------
    data : dask or numpy array
        (z, y, x) (or (y, x)) voxels.
    path : str or Path
        The ``.zarr`` store.
    component : str, optional
        Write into this array path inside a zarr group (created if missing);
        other arrays of the group are kept.
    chunks : sequence of int, optional
        Chunk shape; default :data:`~napari_anatomics.core.blocks.DEFAULT_CHUNKS`
        clipped to the shape.
    voxel_size : sequence of 3 float, optional
        (z, y, x) nm, stored as attribute ``voxel_size_nm``.
    attrs : mapping, optional
        More JSON-serialisable attributes.
    overwrite : bool
        Replace an existing array; otherwise an existing target is an error.

    Returns
    -------
    str
        ``path`` or ``path:component``, ready for :func:`~napari_anatomics.io.read.open_volume`.
    """
    return run_job(
        write_zarr_job(
            data,
            path,
            component=component,
            chunks=chunks,
            voxel_size=voxel_size,
            attrs=attrs,
            overwrite=overwrite,
        )
    )


def write_zarr_job(
    data: Any,
    path: str | Path,
    *,
    component: str | None = None,
    chunks: Sequence[int] | None = None,
    voxel_size: Sequence[float] | None = None,
    attrs: Mapping[str, Any] | None = None,
    overwrite: bool = False,
) -> Job[str]:
    """Job form of :func:`write_zarr`: yields progress per slab, returns the path."""
    import zarr
    from zarr.codecs import BloscCodec

    data = da.asarray(data)
    chunks = _chunks(data, chunks)
    path, group = Path(path), None
    final, result = path, str(path)
    if component:
        component = component.strip("/")
        parent = component.rpartition("/")[0]
        group = zarr.open_group(str(path), mode="a")
        if parent:
            group = group.require_group(parent)
        final, result = path / component, f"{path}:{component}"
    with atomic_path(final, overwrite=overwrite) as tmp:
        spec = {
            "shape": data.shape,
            "chunks": chunks,
            "dtype": data.dtype,
            "compressors": BloscCodec(cname="zstd", clevel=3, shuffle="bitshuffle"),
            "attributes": _attrs(voxel_size, attrs),
        }
        if group is None:
            array = zarr.create_array(store=str(tmp), **spec)
        else:  # inside the group, next to its final name
            array = group.create_array(name=tmp.name, **spec)
        yield from _stream(data, chunks[0], array.__setitem__)
    return result


def write_h5(
    data: Any,
    path: str | Path,
    *,
    key: str = "data",
    chunks: Sequence[int] | None = None,
    voxel_size: Sequence[float] | None = None,
    attrs: Mapping[str, Any] | None = None,
    overwrite: bool = False,
) -> str:
    """Write an array to a new HDF5 file (one gzip-compressed, chunked dataset).

    Parameters are as for :func:`write_zarr`; ``key`` names the dataset.
    Returns ``"path:key"``.
    """
    return run_job(
        write_h5_job(
            data,
            path,
            key=key,
            chunks=chunks,
            voxel_size=voxel_size,
            attrs=attrs,
            overwrite=overwrite,
        )
    )


def write_h5_job(
    data: Any,
    path: str | Path,
    *,
    key: str = "data",
    chunks: Sequence[int] | None = None,
    voxel_size: Sequence[float] | None = None,
    attrs: Mapping[str, Any] | None = None,
    overwrite: bool = False,
) -> Job[str]:
    """Job form of :func:`write_h5`."""
    import h5py

    data = da.asarray(data)
    chunks = _chunks(data, chunks)
    final = Path(path)
    with atomic_path(final, overwrite=overwrite) as tmp, h5py.File(tmp, "w") as handle:
        dset = handle.create_dataset(
            key,
            shape=data.shape,
            dtype=data.dtype,
            chunks=chunks,
            compression="gzip",
            compression_opts=4,
            shuffle=True,
        )
        for name, value in _attrs(voxel_size, attrs).items():
            dset.attrs[name] = value
        if voxel_size is not None:
            dset.attrs["element_size_um"] = [float(v) / 1e3 for v in voxel_size]
        yield from _stream(data, chunks[0], dset.__setitem__)
    return f"{final}:{key}"


def write_tif(
    data: Any,
    path: str | Path,
    *,
    voxel_size: Sequence[float] | None = None,
    compression: str | None = "zlib",
    overwrite: bool = False,
) -> str:
    """Write an array to a multi-page TIFF, page by page; return the path.

    uint8, uint16 and float32 stacks under 2 GB are written as ImageJ
    hyperstacks (Fiji reads the voxel size); others as (Big)OME-TIFF.
    """
    return run_job(
        write_tif_job(
            data, path, voxel_size=voxel_size, compression=compression, overwrite=overwrite
        )
    )


def write_tif_job(
    data: Any,
    path: str | Path,
    *,
    voxel_size: Sequence[float] | None = None,
    compression: str | None = "zlib",
    overwrite: bool = False,
) -> Job[str]:
    """Job form of :func:`write_tif`."""
    import tifffile

    data = da.asarray(data)
    final = Path(path)
    imagej = data.dtype in (np.uint8, np.uint16, np.float32) and data.nbytes < 2**31
    kwargs: dict[str, Any] = {
        "compression": compression,
        "metadata": {"axes": "ZYX"[-data.ndim :]},
    }
    if voxel_size is not None:
        z, y, x = (float(v) / 1e3 for v in voxel_size)  # micrometres
        if imagej:
            kwargs["resolution"] = (1 / x, 1 / y)
            kwargs["metadata"].update(spacing=z, unit="um")
        else:
            kwargs["metadata"].update(
                PhysicalSizeX=x,
                PhysicalSizeY=y,
                PhysicalSizeZ=z,
                PhysicalSizeXUnit="µm",
                PhysicalSizeYUnit="µm",
                PhysicalSizeZUnit="µm",
            )
    pages: queue.Queue = queue.Queue(maxsize=8)
    errors: list[BaseException] = []

    def page_iter() -> Iterator[np.ndarray]:
        while (page := pages.get()) is not None:
            yield page

    def writer(tmp: Path) -> None:
        try:
            with tifffile.TiffWriter(
                tmp, imagej=imagej, ome=not imagej, bigtiff=data.nbytes >= 2**31
            ) as tif:
                tif.write(page_iter(), shape=data.shape, dtype=data.dtype, **kwargs)
        except BaseException as err:  # reported in the job's thread
            errors.append(err)

    def put(block_start: Any, block: np.ndarray) -> None:
        for page in block if data.ndim == 3 else [block]:
            _put(pages, np.ascontiguousarray(page), thread)

    with atomic_path(final, overwrite=overwrite) as tmp:
        thread = threading.Thread(
            target=writer, args=(tmp,), name="anatomics-tif-writer", daemon=True
        )
        thread.start()
        try:
            yield from _stream(data, 1 if data.ndim == 3 else None, put)
        finally:  # the end of the pages (early, when stopped: the writer then fails)
            _put(pages, None, thread)
            thread.join()
        if errors:
            raise errors[0]
    return str(final)


def write_volume_job(
    data: Any,
    path: str | Path,
    *,
    chunks: Sequence[int] | None = None,
    labels: bool = False,
    **kwargs: Any,
) -> Job[str]:
    """Pick the writer job from ``path``'s extension (.ome.zarr, .zarr, .tif/.tiff, .h5/.hdf5).

    ``labels`` matters for OME-Zarr only (a subsampled pyramid and ``image-label``
    metadata, see :mod:`~napari_anatomics.io.omezarr`).
    """
    suffix = Path(path).suffix.lower()
    if Path(path).name.lower().endswith(".ome.zarr"):
        return _ome_zarr_job(data, path, chunks=chunks, labels=labels, **kwargs)
    if suffix == ".zarr":
        return write_zarr_job(data, path, chunks=chunks, **kwargs)
    if suffix in (".h5", ".hdf5"):
        return write_h5_job(data, path, chunks=chunks, **kwargs)
    if suffix in (".tif", ".tiff"):
        return write_tif_job(data, path, **kwargs)
    raise ValueError(
        f"{path}: unsupported output type {suffix or '(none)'!r}; end the name with "
        ".ome.zarr, .zarr, .tif or .h5"
    )


def _ome_zarr_job(data: Any, path: str | Path, **kwargs: Any) -> Job[str]:
    from .omezarr import write_ome_zarr_job

    kwargs.pop("attrs", None)  # OME-Zarr carries its own metadata
    written = yield from write_ome_zarr_job(data, path, **kwargs)
    return str(written)


# --- helpers ----------------------------------------------------------------------


def _chunks(data: da.Array, chunks: Sequence[int] | None) -> tuple[int, ...]:
    """Chunk shape clipped to the data; default chunks are shallower for huge slices."""
    shape = data.shape
    if chunks is None:
        chunks = DEFAULT_CHUNKS[-len(shape) :]
        if len(shape) == 3:
            plane = data.dtype.itemsize * shape[1] * shape[2]
            chunks = (max(1, min(chunks[0], MAX_SLAB_BYTES // max(plane, 1))), *chunks[1:])
    chunks = tuple(chunks)
    if len(chunks) != len(shape) or min(chunks) < 1:
        raise ValueError(f"chunks must be {len(shape)} positive sizes, not {chunks}")
    return tuple(min(int(c), int(n)) or 1 for c, n in zip(chunks, shape))


def _attrs(voxel_size: Sequence[float] | None, attrs: Mapping[str, Any] | None) -> dict:
    out: dict[str, Any] = {"axes": "zyx"}
    if voxel_size is not None:
        out["voxel_size_nm"] = list(check_voxel_size(voxel_size))
    out.update({k: _jsonable(v) for k, v in (attrs or {}).items()})
    return out


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return value


def _stream(data: da.Array, depth: int | None, write) -> Job[None]:
    """Compute ``data`` slab by slab and hand each to ``write(region, block)``.

    Slabs are ``depth`` slices deep (a zarr/h5 chunk), computed one slice at a
    time when the source holds one slice per chunk (slice folders, TIFF pages)
    so progress moves per slice; a 2D array is one slab.
    """
    if data.ndim != 3 or depth is None:
        yield Progress(0, 1, "writing")
        write(Ellipsis, np.asarray(data.compute()))
        yield Progress(1, 1, "written")
        return
    n = data.shape[0]
    per_slice = max(data.chunks[0]) == 1
    if per_slice and data.numblocks[1:] == (1, 1):
        # one task per slice: computing it directly skips dask's per-call graph overhead
        planes = data.to_delayed().ravel()

        def read(z: int) -> np.ndarray:
            return np.asarray(dask.compute(planes[z], scheduler="synchronous")[0])[0]

    else:

        def read(z: int) -> np.ndarray:
            return np.asarray(data[z].compute())

    # whole source chunks per slab, so a computed source is not computed twice
    step = depth * -(-max(data.chunks[0]) // depth)
    for z0 in range(0, n, step):
        z1 = min(z0 + step, n)
        if per_slice:
            block = np.empty((z1 - z0, *data.shape[1:]), dtype=data.dtype)
            for z in range(z0, z1):
                block[z - z0] = read(z)
                yield Progress(z + 1, n, f"slice {z + 1}/{n}")
        else:
            block = np.asarray(data[z0:z1].compute())
        write(slice(z0, z1), block)
        yield Progress(z1, n, f"slice {z1}/{n}")


def _put(pages: queue.Queue, item: Any, thread: threading.Thread) -> None:
    """Queue ``item`` for the writer thread unless that thread has stopped."""
    while thread.is_alive():
        try:
            pages.put(item, timeout=0.5)
            return
        except queue.Full:
            continue
