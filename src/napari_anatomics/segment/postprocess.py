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
:func:`~napari_anatomics.predict.tiled.predict`, read through
:class:`~napari_anatomics.io.probabilities.ProbabilityMaps`: its attributes
give the task, channel names and voxel size). The settings are a
:class:`~napari_anatomics.segment.config.SegmentConfig`. Output is a uint32
zarr array of sequential ids with the voxel size attached. Memory is bounded
by one block (plus its halo) and one number per object.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage as ndi
from skimage.segmentation import watershed

from ..core.blocks import DEFAULT_CHUNKS, grow_box, iter_blocks
from ..core.files import replace_path
from ..core.progress import CancelToken, Job, Progress, relay
from ..io.probabilities import ProbabilityMaps
from .config import SegmentConfig
from .stitching import label_blocks, relabel_blocks, sequential_lut


def postprocess(
    probabilities: Any,
    out: str | Path,
    config: SegmentConfig | None = None,
    *,
    task: str | None = None,
    component: str = "labels",
    channels: Sequence[str] | None = None,
    voxel_size: Sequence[float] | None = None,
    block: Sequence[int] | None = None,
    overwrite: bool = False,
    cancel: CancelToken | None = None,
    **settings: Any,
) -> Job[Any]:
    """Label objects in probability maps, blockwise, into ``out/component``.

    Parameters
    ----------
    probabilities : zarr.Array or array-like
        ``(C, Z, Y, X)`` maps as :mod:`~napari_anatomics.io.probabilities`
        stores them (uint8 means ``value / 255``).
    out : str or Path
        zarr group to write into (created if missing).
    config : SegmentConfig, optional
        The decoding (:data:`napari_anatomics.segment.config.SETTINGS` says
        what each setting does); default :class:`SegmentConfig`'s. Semantic
        maps: per-class ``thresholds`` (default: argmax), ``connectivity``,
        ``min_size``. Instance maps: seeds where foreground >=
        ``seed_threshold`` and boundary <= ``boundary_threshold`` (and
        distance >= ``distance_threshold`` when there is a distance map),
        thinned by ``seed_erosion`` voxels or to ``seed_depth`` times the
        deepest voxel of their region within ``seed_depth_radius`` (the larger
        wins), seeds under ``min_seed_size`` dropped; a watershed of the
        voxels with foreground >= ``foreground_threshold``, read with ``halo``
        voxels around each block; then ``min_size``.
    task : {"semantic", "instance"}, optional
        Default: the ``task`` attribute of ``probabilities``.
    component : str
        Name of the labels array in the group.
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
    **settings
        Fields of :class:`SegmentConfig` that replace ``config``'s
        (``postprocess(maps, out, min_size=50)``).

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

    config = replace(config or SegmentConfig(), **settings)
    config.check_ranges()
    maps = ProbabilityMaps(probabilities, task, channels)
    task = maps.task
    voxel = voxel_size or maps.voxel_size
    shape = maps.shape
    if block is None:
        block = getattr(probabilities, "chunks", None)
        block = tuple(block[1:]) if block and isinstance(block[0], int) else DEFAULT_CHUNKS
    block = tuple(max(1, min(int(b), s)) for b, s in zip(block, shape))
    recorded = {"task": task, **config.to_dict(), "block": list(block)}

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

    finished = False
    try:
        ids = create(names[0], "uint64")
        final = create(names[2], "uint32")
        if task == "semantic":
            label = _semantic(maps, ids, final, config, cancel)
        else:
            label = _instance(maps, ids, create(names[1], "uint32"), final, config, cancel)
        extra = yield from label
        if extra is None:
            return None
        final.attrs.update(
            {
                "voxel_size_nm": list(voxel) if voxel is not None else None,
                "postprocess": recorded,
                "task": task,
                "classes": list(maps.attrs.get("classes", [])),
                **extra,
            }
        )
        replace_path(Path(out) / names[2], Path(out) / component)
        finished = True
    finally:
        for name in names[:2] if finished else names:
            shutil.rmtree(Path(out) / name, ignore_errors=True)
    return zarr.open_group(str(out), mode="r+")[component]


def _semantic(maps, ids, final, config: SegmentConfig, cancel):
    n_classes = maps.array.shape[0]
    thresholds, connectivity = config.thresholds, config.connectivity
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

    n_blocks = len(list(iter_blocks(ids.shape, ids.chunks)))
    total = 3 * n_blocks
    prov = yield from _counted(
        label_blocks(classes, ids, connectivity=connectivity, cancel=cancel), 0, total
    )
    if prov is None:
        return None
    lut = sequential_lut(prov.roots, prov.sizes, config.min_size)
    label_classes = np.zeros(int(lut.max()) + 1, np.int64)
    label_classes[lut] = prov.classes
    label_classes[0] = 0
    ok = yield from _counted(relabel_blocks(ids, lut, final, cancel=cancel), 2 * n_blocks, total)
    if not ok:
        return None
    return {"n_objects": int(lut.max()), "label_classes": label_classes.tolist()}


def _instance(maps, ids, work, final, config: SegmentConfig, cancel):
    seed_t, boundary_t = config.seed_threshold, config.boundary_threshold
    erosion, depth, radius = config.seed_erosion, config.seed_depth, config.seed_depth_radius
    connectivity = config.connectivity
    has_distance = "distance" in maps.channels
    names = ["foreground", "boundary"] + (["distance"] if has_distance else [])
    # How far a core voxel's seed decision looks (see _deep_seeds).
    reach = max(erosion, 2 * radius if depth else 0)

    def seeds(sl):
        ext = grow_box(sl, (0, reach, reach), maps.shape)
        read = maps.read(ext, names)
        seed = (read[0] >= seed_t) & (read[1] <= boundary_t)
        if has_distance:
            seed &= read[2] >= config.distance_threshold
        if erosion or depth:
            seed = np.stack([_deep_seeds(s, erosion, depth, radius) for s in seed])
        core = tuple(slice(s.start - e.start, s.stop - e.start) for s, e in zip(sl, ext))
        return seed[core].astype(np.uint8)

    blocks = list(iter_blocks(ids.shape, ids.chunks, halo=config.halo))
    total = 4 * len(blocks)
    prov = yield from _counted(
        label_blocks(seeds, ids, connectivity=connectivity, cancel=cancel), 0, total
    )
    if prov is None:
        return None
    seed_lut = sequential_lut(prov.roots, prov.sizes, config.min_seed_size)
    n_seeds = int(seed_lut.max())
    sizes = np.zeros(n_seeds + 1, np.int64)
    for step, block in enumerate(blocks, 2 * len(blocks) + 1):
        read = maps.read(block.read, names)
        elevation = read[1] - read[2] if has_distance else read[1]
        markers = seed_lut[np.asarray(ids[block.read]).astype(np.intp)]
        grown = watershed(elevation, markers, mask=read[0] >= config.foreground_threshold)
        core = grown[block.inner]
        work[block.write] = core
        sizes += np.bincount(core.ravel(), minlength=n_seeds + 1)
        yield Progress(step, total, "watershed")
        if cancel is not None and cancel.cancelled:
            return None
    lut = sequential_lut(np.arange(n_seeds + 1), sizes, config.min_size)
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


def _counted(job, base: int, total: int):
    """Re-yield a sub-job's progress shifted by ``base`` steps of ``total``."""
    return (yield from relay(job, lambda e: Progress(base + e.step, total, e.message)))
