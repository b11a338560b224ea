"""OME-Zarr (NGFF 0.4): multiscale images and labels with physical units.

:func:`write_ome_zarr_job` writes a (z, y, x) stack as an OME-Zarr image, or as a
labels image inside one (``image.zarr/labels/<name>``), with:

* axes ``z, y, x`` of type space, unit ``nanometer``, and a scale per level from the
  voxel size;
* a pyramid built block by block with :mod:`~napari_anatomics.core.blocks` (memory
  holds one block, never a level): each level halves y and x, and z too once the
  voxels are no longer flat (z spacing under twice the in-plane spacing); images are
  averaged, labels are subsampled (every second voxel: ids stay ids);
* for labels, the ``image-label`` metadata: a colour per id and, when given, the
  per-object properties of the stats table (``properties``: one dict per id).

NGFF 0.4 (zarr format 2) is what the readers in use read today: ome-zarr-py,
napari-ome-zarr, Fiji/MoBIE, Neuroglancer. The store is written under a
temporary name and renamed when complete.

:func:`open_multiscale` reads every level of an OME-Zarr image back as
:class:`~napari_anatomics.core.volume.Volume` objects (level 0 first), each with
its own voxel size, for a multiscale napari layer.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np

from ..core.blocks import DEFAULT_CHUNKS, iter_blocks, run_blocks
from ..core.files import atomic_path
from ..core.progress import Job, Progress, run_job
from ..core.volume import Volume, check_voxel_size
from .formats import VolumeReadError

NGFF_VERSION = "0.4"
#: A level is added while the last one is larger than this in y or x (two levels at least).
SMALLEST_LEVEL = 256
MAX_LEVELS = 8


def pyramid_factors(
    shape: Sequence[int], voxel_size: Sequence[float], levels: int | None = None
) -> list[tuple[int, int, int]]:
    """The downsampling of each level relative to level 0 (level 0: (1, 1, 1)).

    Parameters
    ----------
    shape : sequence of 3 int
        (z, y, x) of level 0.
    voxel_size : sequence of 3 float
        (z, y, x) nm of level 0.
    levels : int, optional
        Number of levels; default: halve until y and x fit in :data:`SMALLEST_LEVEL`,
        with at least two levels.

    Returns
    -------
    list of (int, int, int)
    """
    factors = [(1, 1, 1)]
    while len(factors) < (levels or MAX_LEVELS):
        fz, fy, fx = factors[-1]
        size = [s // f for s, f in zip(shape, factors[-1])]
        if levels is None and max(size[1:]) <= SMALLEST_LEVEL and len(factors) > 1:
            break  # small enough (a second level is always made: a pyramid to browse)
        if min(size[1:]) < 2:
            break
        flat = voxel_size[0] * fz >= 2 * min(voxel_size[1] * fy, voxel_size[2] * fx)
        step_z = 1 if flat or size[0] < 2 else 2
        factors.append((fz * step_z, fy * 2, fx * 2))
    return factors


def _colour(label: int) -> list[int]:
    """A bright, stable colour per id (golden-ratio hues)."""
    import colorsys

    r, g, b = colorsys.hsv_to_rgb((label * 0.618033988749895) % 1.0, 0.75, 1.0)
    return [round(r * 255), round(g * 255), round(b * 255), 255]


def _multiscales(
    name: str,
    voxel: Sequence[float] | None,
    factors: list[tuple[int, ...]],
    labels: bool,
    channels: bool = False,
) -> dict[str, Any]:
    axes = [{"name": a, "type": "space", "unit": "nanometer"} for a in "zyx"]
    if voxel is None:  # unknown voxel size: voxel units, no physical unit claimed
        voxel, axes = (1.0, 1.0, 1.0), [{"name": a, "type": "space"} for a in "zyx"]
    if channels:
        axes, voxel = [{"name": "c", "type": "channel"}, *axes], (1.0, *voxel)
    return {
        "version": NGFF_VERSION,
        "name": name,
        "axes": axes,
        "datasets": [
            {
                "path": str(i),
                "coordinateTransformations": [
                    {"type": "scale", "scale": [float(v) * f for v, f in zip(voxel, fac)]}
                ],
            }
            for i, fac in enumerate(factors)
        ],
        "type": "subsample" if labels else "mean",
        "metadata": {"method": "napari_anatomics.io.omezarr"},
    }


def _reduce(level: np.ndarray, step: tuple[int, ...], labels: bool) -> np.ndarray:
    """A block of the next level: every ``step``-th voxel (labels) or block means."""
    if all(s == 1 for s in step):
        return level
    if labels:
        return level[tuple(slice(None, None, s) for s in step)]
    shape = [s // f for s, f in zip(level.shape, step)]
    cut = level[tuple(slice(0, n * f) for n, f in zip(shape, step))]
    blocks = cut.reshape([d for n, f in zip(shape, step) for d in (n, f)])
    mean = blocks.mean(axis=tuple(range(1, 2 * len(step), 2)), dtype=np.float64)
    if np.issubdtype(level.dtype, np.integer):
        mean = np.round(mean)
    return mean.astype(level.dtype)


def _write_level(block, source, target, step, labels) -> None:
    """One block of a level from the level before it (level 0: a copy of the data)."""
    read = tuple(slice(w.start * s, w.stop * s) for w, s in zip(block.write, step))
    target[block.write] = _reduce(np.asarray(source[read]), step, labels)


def write_ome_zarr_job(
    data: Any,
    path: str | Path,
    *,
    voxel_size: Sequence[float] | None,
    labels: bool = False,
    channels: Sequence[str] | None = None,
    name: str | None = None,
    chunks: Sequence[int] | None = None,
    levels: int | None = None,
    properties: Sequence[Mapping[str, Any]] | None = None,
    overwrite: bool = False,
) -> Job[Path]:
    """Write a (z, y, x) stack as a multiscale OME-Zarr; a job yielding progress per block.

    Parameters
    ----------
    data : dask or numpy array
        (z, y, x) voxels: grey values, or integer ids with ``labels``.
    path : str or Path
        The image store (``stack.ome.zarr``), or with ``labels`` either its own store
        or ``image.ome.zarr/labels/<name>`` inside an existing image.
    voxel_size : sequence of 3 float or None
        (z, y, x) nm of ``data``; None writes voxel units (scale 1, no unit).
    labels : bool
        Labels: subsampled pyramid and ``image-label`` metadata.
    channels : sequence of str, optional
        ``data`` is ``(C, Z, Y, X)`` (e.g. probability maps), one name per channel:
        a ``c`` axis of type channel, the names as OMERO channel labels.
    name : str, optional
        Name in the metadata (default: the store's name).
    chunks : sequence of 3 int, optional
        Chunk shape; default :data:`~napari_anatomics.core.blocks.DEFAULT_CHUNKS`.
    levels : int, optional
        Pyramid levels; default: down to :data:`SMALLEST_LEVEL` in y and x.
    properties : sequence of mapping, optional
        Labels only: per-object properties, each with a ``label-value`` key (e.g. the
        stats table's rows: volume in µm³, class).
    overwrite : bool
        Replace an existing store.

    Returns
    -------
    Path
        The store written.
    """
    import zarr

    data = da.asarray(data)
    lead = 1 if channels is not None else 0
    if data.ndim != 3 + lead or (channels is not None and len(channels) != data.shape[0]):
        expected = f"({len(channels)}, z, y, x)" if channels is not None else "(z, y, x)"
        raise ValueError(f"OME-Zarr writing needs a {expected} stack, not shape {data.shape}")
    if labels and not (np.issubdtype(data.dtype, np.integer) or data.dtype == bool):
        raise ValueError(f"labels must be integer ids, not {data.dtype}")
    voxel = None if voxel_size is None else check_voxel_size(voxel_size, "voxel_size")
    path = Path(path)
    name = name or path.name.split(".")[0]
    space = data.shape[lead:]
    chunk = (1,) * lead + tuple(min(c, s) for c, s in zip(chunks or DEFAULT_CHUNKS, space))
    factors = [
        (1,) * lead + f for f in pyramid_factors(space, voxel or (1.0, 1.0, 1.0), levels)
    ]
    in_image = labels and path.parent.name == "labels" and is_ome_zarr(path.parent.parent)
    if in_image:  # the image's labels/ group lists its label images
        labels_group = zarr.open_group(str(path.parent), mode="a", zarr_format=2)
    shapes = [tuple(s // f for s, f in zip(data.shape, fac)) for fac in factors]
    total = sum(int(np.prod([-(-s // c) for s, c in zip(shape, chunk)])) for shape in shapes)
    done = 0
    with atomic_path(path, overwrite=overwrite) as tmp:
        group = zarr.open_group(str(tmp), mode="w", zarr_format=2)
        source, previous = data, factors[0]
        for level, (factor, shape) in enumerate(zip(factors, shapes)):
            target = group.create_array(
                str(level), shape=shape, chunks=chunk, dtype=data.dtype, fill_value=0
            )
            step = tuple(f // p for f, p in zip(factor, previous))
            blocks = iter_blocks(shape, chunk)
            for event in run_blocks(
                blocks, _write_level, args=(source, target, step, labels), what="block"
            ):
                if event.payload is not None:
                    done += 1
                    yield Progress(done, total, f"level {level + 1}/{len(factors)}")
            source, previous = target, factor
        multiscale = _multiscales(name, voxel, factors, labels, bool(lead))
        attrs: dict[str, Any] = {"multiscales": [multiscale]}
        if channels is not None:
            attrs["omero"] = {"channels": [{"label": str(c), "active": True} for c in channels]}
        if labels:
            attrs["image-label"] = _image_label(data, properties, in_image)
        group.attrs.update(attrs)
    if in_image:
        listed = [str(n) for n in labels_group.attrs.get("labels", []) if n != path.name]
        labels_group.attrs["labels"] = [*listed, path.name]
    return path


def _image_label(
    data: da.Array, properties: Sequence[Mapping[str, Any]] | None, in_image: bool
) -> dict[str, Any]:
    values = [int(p["label-value"]) for p in properties] if properties else None
    if values is None:  # colours for every id present (one pass over the labels)
        values = [int(v) for v in np.unique(da.unique(data).compute()) if v != 0]
    meta: dict[str, Any] = {
        "version": NGFF_VERSION,
        "colors": [{"label-value": v, "rgba": _colour(v)} for v in values],
    }
    if properties:
        meta["properties"] = [_plain(p) for p in properties]
    if in_image:
        meta["source"] = {"image": "../../"}
    return meta


def _plain(row: Mapping[str, Any]) -> dict[str, Any]:
    out = {}
    for key, value in row.items():
        if isinstance(value, np.generic):
            value = value.item()
        out[str(key)] = value
    return out


def write_ome_zarr(data: Any, path: str | Path, **kwargs: Any) -> Path:
    """Run :func:`write_ome_zarr_job` to the end; same parameters, returns the store."""
    return run_job(write_ome_zarr_job(data, path, **kwargs))


def is_ome_zarr(path: str | Path, labels: bool = False) -> bool:
    """True when ``path`` is a zarr group with NGFF ``multiscales`` metadata.

    With ``labels``, only a label image (``image-label`` metadata) counts.
    """
    import zarr

    try:
        group = zarr.open_group(str(path), mode="r")
    except Exception:  # not a group (an array, a plain folder, missing)
        return False
    attrs = dict(group.attrs.get("ome", group.attrs))
    return "multiscales" in attrs and (not labels or "image-label" in attrs)


def open_multiscale(path: str | Path) -> list[Volume]:
    """Every level of an OME-Zarr image, level 0 first, each a lazy Volume in nm.

    Parameters
    ----------
    path : str or Path
        An OME-Zarr image (or labels) group, NGFF 0.4 or 0.5.

    Returns
    -------
    list of Volume
        One per level, with that level's voxel size (from its scale and axis units).

    Raises
    ------
    VolumeReadError
        When ``path`` is not an OME-Zarr multiscale image.
    """
    import zarr

    from .formats import UNIT_NM

    path = Path(path)
    if not is_ome_zarr(path):
        raise VolumeReadError(f"{path}: is not an OME-Zarr image (no multiscales metadata)")
    group = zarr.open_group(str(path), mode="r")
    attrs = dict(group.attrs.get("ome", group.attrs))
    multiscale = attrs["multiscales"][0]
    axes = multiscale.get("axes", [{"name": a, "type": "space"} for a in "zyx"])
    spatial = [i for i, a in enumerate(axes) if a.get("type", "space") == "space"][-3:]
    factors = [UNIT_NM.get(str(axes[i].get("unit", "micrometer")).lower(), 1e3) for i in spatial]
    volumes = []
    for dataset in multiscale["datasets"]:
        array = group[dataset["path"]]
        scale = next(
            (t["scale"] for t in dataset.get("coordinateTransformations", []) if "scale" in t),
            [1.0] * len(axes),
        )
        voxel = tuple(float(scale[i]) * f for i, f in zip(spatial, factors))
        data = da.from_zarr(array)
        if data.ndim > 3:  # (t, c, z, y, x): the first time point and channel
            data = data[(0,) * (data.ndim - 3)]
        volumes.append(Volume(data, voxel, "file", f"{path}/{dataset['path']}", path.name))
    return volumes
