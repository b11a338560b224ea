"""Turn probability maps into labels, block by block, with exact stitching.

* Semantic models: argmax over classes (or per-class thresholds), then 3D
  connected components per class (6/18/26-connectivity) and removal of objects
  smaller than ``min_size`` voxels. Components are stitched exactly across
  block borders (:mod:`~napari_anatomics.segment.stitching`): the labels equal
  whole-volume connected components.
* Instance models: seeds where the foreground is high and the boundary low,
  optionally thinned in-plane so that objects joined by a neck the boundary
  map missed get two seeds (``seed_erosion``: a fixed depth; ``seed_depth``:
  a fraction of the local object depth; a distance transform of the block
  plus a halo keeps both exact across blocks), as connected components
  stitched exactly, so a seed crossing a border keeps one id; seeds smaller
  than ``min_seed_size`` are dropped (a speck where the boundary map is low
  inside an object would split it; its voxels go to the seeds around); then a
  seeded watershed of the foreground on the boundary map (minus the distance map
  when the model has one), run per block with a halo so objects grow across
  borders with their global seed id; then removal of small objects.

Input is a ``(C, Z, Y, X)`` array (the zarr written by
:func:`~napari_anatomics.predict.tiled.predict`, whose attributes give the task,
channel names and voxel size; uint8 maps are read as ``value / 255``). Output
is a uint32 zarr array of sequential ids with the voxel size attached. Memory
is bounded by one block (plus its halo) and one number per object.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage as ndi
from skimage.segmentation import watershed

from ..core.progress import CancelToken, Job, Progress
from ..predict.tiling import DEFAULT_CHUNKS
from .stitching import block_slices, label_blocks, relabel_blocks, sequential_lut

#: Instance settings that split objects joined by a neck thin for their size,
#: where the model saw no boundary (the Auto-label panel's "Split touching
#: objects" and ``anatomics demo``).
SPLIT_TOUCHING = {"seed_depth": 0.5, "min_seed_size": 100}


def postprocess(
    probabilities: Any,
    out: str | Path,
    *,
    task: str | None = None,
    component: str = "labels",
    min_size: int = 0,
    connectivity: int = 26,
    thresholds: Sequence[float] | None = None,
    seed_threshold: float = 0.8,
    boundary_threshold: float = 0.3,
    foreground_threshold: float = 0.5,
    distance_threshold: float = 0.5,
    seed_erosion: int = 0,
    seed_depth: float = 0.0,
    seed_depth_radius: int = 60,
    min_seed_size: int = 0,
    halo: Sequence[int] = (8, 32, 32),
    channels: Sequence[str] | None = None,
    voxel_size: Sequence[float] | None = None,
    block: Sequence[int] | None = None,
    overwrite: bool = False,
    cancel: CancelToken | None = None,
) -> Job[Any]:
    """Label objects in probability maps, blockwise, into ``out/component``.

    Parameters
    ----------
    probabilities : zarr.Array or array-like
        ``(C, Z, Y, X)`` maps; uint8 means ``value / 255``.
    out : str or Path
        zarr group to write into (created if missing).
    task : {"semantic", "instance"}, optional
        Default: the ``task`` attribute of ``probabilities``.
    component : str
        Name of the labels array in the group.
    min_size : int
        Objects with fewer voxels are removed (become background).
    connectivity : {6, 18, 26}
        Neighbourhood for connected components (semantic objects, instance seeds).
    thresholds : sequence of float, optional
        Semantic: a probability threshold per class (background excluded); a
        voxel takes the most probable class over its threshold. Default: argmax.
    seed_threshold, boundary_threshold : float
        Instance seeds: foreground >= seed_threshold and boundary <= boundary_threshold.
    foreground_threshold : float
        Instance: voxels with foreground below this stay background.
    distance_threshold : float
        Instance maps with a ``distance`` channel: seeds also need distance >= this,
        and the watershed floods ``boundary - distance``.
    seed_erosion : int
        Instance: keep only seed voxels at least this many voxels (in-plane,
        full resolution) inside the seed region. Splits objects joined by a
        neck narrower than twice this; an object thinner than that gets no
        seed and is left out. 0 (default) keeps seeds as thresholded.
    seed_depth : float
        Instance: keep only seed voxels whose in-plane depth (distance to the
        seed region's edge) is at least this fraction of the deepest voxel of
        the same seed region within ``seed_depth_radius`` steps (depths capped
        at the radius). Splits objects joined by a neck that is thin compared
        with the objects, whatever their size; separate seed regions do not
        affect each other. 0.5 is a good start, 0 (default) turns it off.
        Combines with ``seed_erosion`` (the larger wins).
    seed_depth_radius : int
        Instance: the reach of ``seed_depth``, in voxels (full resolution);
        about an object's radius. Blocks are read with a halo of twice this,
        and the cost grows with it (one 3 x 3 filter pass per voxel of radius).
    min_seed_size : int
        Instance: seeds with fewer voxels (after erosion, counted over the
        whole volume) are dropped before the watershed, so a speck of low
        boundary inside an object does not split it off. 0 keeps all seeds.
    halo : sequence of 3 int
        Instance: voxels (z, y, x) read around each block for the watershed.
    channels : sequence of str, optional
        Channel names; default the ``channels`` attribute, else the standard
        order for the task.
    voxel_size : sequence of 3 float, optional
        (z, y, x) nm; default the ``voxel_size_nm`` attribute.
    block : sequence of 3 int, optional
        Processing block and output chunk (z, y, x); default the input's chunks.
    overwrite : bool
        Replace an existing ``component``.
    cancel : CancelToken, optional
        Checked between blocks; a cancelled run returns None and leaves nothing.

    Yields
    ------
    Progress

    Returns
    -------
    zarr.Array or None
        uint32 labels, ids 1..n; attributes ``voxel_size_nm``, ``n_objects``,
        ``postprocess`` (settings) and, for semantic, ``label_classes``.
    """
    import zarr

    attrs = dict(getattr(probabilities, "attrs", {}) or {})
    task = task or attrs.get("task")
    if task not in ("semantic", "instance"):
        raise ValueError(
            "say whether the maps are 'semantic' or 'instance' (--task): "
            f"the input does not record it (got {task!r})"
        )
    if np.ndim(probabilities) != 4:
        raise ValueError(
            f"probabilities must be (C, Z, Y, X), got shape {np.shape(probabilities)}"
        )
    n_channels = probabilities.shape[0]
    channels = list(channels or attrs.get("channels") or _default_channels(task, n_channels))
    voxel = voxel_size or attrs.get("voxel_size_nm")
    shape = tuple(probabilities.shape[1:])
    if block is None:
        block = getattr(probabilities, "chunks", None)
        block = tuple(block[1:]) if block and isinstance(block[0], int) else DEFAULT_CHUNKS
    block = tuple(max(1, min(int(b), s)) for b, s in zip(block, shape))
    settings = {
        "task": task,
        "min_size": int(min_size),
        "connectivity": int(connectivity),
        "thresholds": list(thresholds) if thresholds is not None else None,
        "seed_threshold": seed_threshold,
        "boundary_threshold": boundary_threshold,
        "foreground_threshold": foreground_threshold,
        "distance_threshold": distance_threshold,
        "seed_erosion": int(seed_erosion),
        "seed_depth": float(seed_depth),
        "seed_depth_radius": int(seed_depth_radius),
        "min_seed_size": int(min_seed_size),
        "halo": list(halo),
        "block": list(block),
    }

    group = zarr.open_group(str(out), mode="a")
    if component in group and not overwrite:
        raise FileExistsError(
            f"{out} already holds {component!r}; choose another output or overwrite it"
        )
    names = [f".{component}.{s}" for s in ("ids", "watershed", "partial")]
    for name in names:
        shutil.rmtree(Path(out) / name, ignore_errors=True)

    def create(name, dtype):
        return group.create_array(name=name, shape=shape, chunks=block, dtype=dtype, fill_value=0)

    maps = _Maps(probabilities, channels)
    finished = False
    try:
        ids = create(names[0], "uint64")
        final = create(names[2], "uint32")
        if task == "semantic":
            label = _semantic(maps, ids, final, thresholds, connectivity, min_size, cancel)
        else:
            work = create(names[1], "uint32")
            levels = (seed_threshold, boundary_threshold, foreground_threshold, distance_threshold)
            seeding = (
                int(seed_erosion),
                float(seed_depth),
                int(seed_depth_radius),
                int(min_seed_size),
            )
            label = _instance(
                maps, ids, work, final, connectivity, min_size, levels, seeding, halo, cancel
            )
        extra = yield from label
        if extra is None:
            return None
        final.attrs.update(
            {
                "voxel_size_nm": list(voxel) if voxel is not None else None,
                "postprocess": settings,
                "task": task,
                "classes": list(attrs.get("classes", [])),
                **extra,
            }
        )
        if component in group:
            shutil.rmtree(Path(out) / component)
        (Path(out) / names[2]).rename(Path(out) / component)
        finished = True
    finally:
        for name in names[:2] if finished else names:
            shutil.rmtree(Path(out) / name, ignore_errors=True)
    return zarr.open_group(str(out), mode="r+")[component]


def _default_channels(task: str, n: int) -> list[str]:
    if task == "semantic":
        return ["background"] + [f"class {i}" for i in range(1, n)]
    return ["foreground", "boundary", "distance"][:n]


class _Maps:
    """Read float32 channels of a (C, Z, Y, X) array for a block."""

    def __init__(self, array: Any, channels: Sequence[str]) -> None:
        self.array, self.channels = array, list(channels)
        self.scale = 1 / 255 if np.dtype(array.dtype) == np.uint8 else 1.0
        self.shape = tuple(array.shape[1:])

    def read(self, sl, channels: Sequence[str] | None = None) -> np.ndarray:
        block = self.array[(slice(None), *sl)]
        if hasattr(block, "compute"):
            block = block.compute()
        block = np.asarray(block, dtype=np.float32) * np.float32(self.scale)
        if channels is None:
            return block
        missing = [c for c in channels if c not in self.channels]
        if missing:
            raise ValueError(
                f"the maps have channels {self.channels}, not {missing}: instance "
                "post-processing needs 'foreground' and 'boundary' maps"
            )
        return block[[self.channels.index(c) for c in channels]]


def _semantic(maps, ids, final, thresholds, connectivity, min_size, cancel):
    n_classes = maps.array.shape[0]
    if thresholds is not None:
        thresholds = np.asarray(thresholds, dtype=np.float32)
        expected = max(n_classes - 1, 1)
        if thresholds.size != expected:
            raise ValueError(f"give one threshold per class ({expected}), not {thresholds.size}")

    def classes(sl):
        p = maps.read(sl)
        if n_classes == 1:
            t = thresholds[0] if thresholds is not None else 0.5
            return (p[0] >= t).astype(np.uint8)
        if thresholds is None:
            return np.argmax(p, axis=0).astype(np.uint8)
        fg = p[1:]
        passing = fg >= thresholds[:, None, None, None]
        best = np.argmax(np.where(passing, fg, -1.0), axis=0).astype(np.uint8) + 1
        best[~passing.any(axis=0)] = 0
        return best

    n_blocks = len(block_slices(ids.shape, ids.chunks))
    total = 3 * n_blocks
    prov = yield from _counted(
        label_blocks(classes, ids, connectivity=connectivity, cancel=cancel), 0, total
    )
    if prov is None:
        return None
    lut = sequential_lut(prov.roots, prov.sizes, min_size)
    label_classes = np.zeros(int(lut.max()) + 1, np.int64)
    label_classes[lut] = prov.classes
    label_classes[0] = 0
    ok = yield from _counted(relabel_blocks(ids, lut, final, cancel=cancel), 2 * n_blocks, total)
    if not ok:
        return None
    return {"n_objects": int(lut.max()), "label_classes": label_classes.tolist()}


def _instance(maps, ids, work, final, connectivity, min_size, levels, seeding, halo, cancel):
    seed_t, boundary_t, fg_t, distance_t = levels
    erosion, depth, radius, min_seed_size = seeding
    has_distance = "distance" in maps.channels
    names = ["foreground", "boundary"] + (["distance"] if has_distance else [])
    if erosion < 0:
        raise ValueError(f"seed_erosion must be 0 or more voxels, not {erosion}")
    if min_seed_size < 0:
        raise ValueError(f"min_seed_size must be 0 or more voxels, not {min_seed_size}")
    if not 0 <= depth < 1:
        raise ValueError(f"seed_depth must be a fraction in [0, 1), not {depth}")
    if depth and radius < 1:
        raise ValueError(f"seed_depth_radius must be 1 voxel or more, not {radius}")
    # How far a core voxel's seed decision looks (see _deep_seeds).
    reach = max(erosion, 2 * radius if depth else 0)

    def seeds(sl):
        ext = _grown(sl, (0, reach, reach), maps.shape)
        read = maps.read(ext, names)
        seed = (read[0] >= seed_t) & (read[1] <= boundary_t)
        if has_distance:
            seed &= read[2] >= distance_t
        if erosion or depth:
            seed = np.stack([_deep_seeds(s, erosion, depth, radius) for s in seed])
        core = tuple(slice(s.start - e.start, s.stop - e.start) for s, e in zip(sl, ext))
        return seed[core].astype(np.uint8)

    blocks = block_slices(ids.shape, ids.chunks)
    total = 4 * len(blocks)
    prov = yield from _counted(
        label_blocks(seeds, ids, connectivity=connectivity, cancel=cancel), 0, total
    )
    if prov is None:
        return None
    seed_lut = sequential_lut(prov.roots, prov.sizes, min_seed_size)
    n_seeds = int(seed_lut.max())
    sizes = np.zeros(n_seeds + 1, np.int64)
    for step, sl in enumerate(blocks, 2 * len(blocks) + 1):
        ext = _grown(sl, halo, ids.shape)
        read = maps.read(ext, names)
        elevation = read[1] - read[2] if has_distance else read[1]
        markers = seed_lut[np.asarray(ids[ext]).astype(np.intp)]
        grown = watershed(elevation, markers, mask=read[0] >= fg_t)
        core = grown[tuple(slice(s.start - e.start, s.stop - e.start) for s, e in zip(sl, ext))]
        work[sl] = core
        sizes += np.bincount(core.ravel(), minlength=n_seeds + 1)
        yield Progress(step, total, "watershed")
        if cancel is not None and cancel.cancelled:
            return None
    lut = sequential_lut(np.arange(n_seeds + 1), sizes, min_size)
    ok = yield from _counted(
        relabel_blocks(work, lut, final, cancel=cancel), 3 * len(blocks), total
    )
    if not ok:
        return None
    return {"n_objects": int(lut.max())}


def _deep_seeds(seed: np.ndarray, erosion: int, depth: float, radius: int) -> np.ndarray:
    """One slice's seed voxels deeper than ``erosion`` and than ``depth`` times the
    deepest voxel of their own seed region within ``radius`` steps.

    Depths are in-plane distances to the region's edge, capped at ``radius``;
    the deepest one is found by ``radius`` steps of geodesic dilation (3 x 3,
    staying inside the region), so a nearby but separate region does not
    count. A voxel's decision needs the seed mask within ``max(erosion, 2 *
    radius)`` voxels: with that much halo around a block, blockwise seeds equal
    whole-volume seeds. Outside the array counts as seed, so the faces of the
    stack do not erode objects.
    """
    dist = ndi.distance_transform_edt(seed)
    if not depth:
        return dist > erosion
    local = np.minimum(dist, radius).astype(np.uint8 if radius < 256 else np.float32)
    for _ in range(radius):
        grown = ndi.maximum_filter(local, size=3)
        grown[~seed] = 0
        if np.array_equal(grown, local):
            break
        local = grown
    return dist > np.maximum(erosion, depth * local)


def _grown(sl, halo: Sequence[int], shape: Sequence[int]) -> tuple[slice, ...]:
    """A block's slices grown by ``halo`` voxels per axis, clipped to ``shape``."""
    return tuple(
        slice(max(s.start - h, 0), min(s.stop + h, n)) for s, h, n in zip(sl, halo, shape)
    )


def _counted(job, base: int, total: int):
    """Re-yield a sub-job's progress shifted by ``base`` steps of ``total``."""
    while True:
        try:
            event = next(job)
        except StopIteration as stop:
            return stop.value
        yield Progress(base + event.step, total, event.message)
