"""Settings the data decides: network, downsampling, window, batch, depth.

:func:`measure_painted` looks at the painted objects (how many, how large,
on how many slices) and :func:`resolve` turns the ``None``/``"auto"`` fields
of a :class:`~napari_anatomics.train.recipe.TrainConfig` into values, with a line
saying why for each (printed when a run starts and stored in ``config.json``).

Why these rules (measured on the two real stacks, see the benchmarks):

* 2D per slice on anisotropic or thin stacks: on the 10-slice chloroplast
  SBFSEM (10 x 10 x 40 nm) the 2D U-Net reached Dice 0.89 / AP@0.5 0.58 in 15
  CPU minutes where the best 3D U-Net reached 0.79 / 0.25. A 3D network is
  chosen only for near-isotropic voxels with enough painted slices to fill
  its window several times over (16 slices; FIB-SEM); that choice is not yet
  measured here. The bundled sample (40 nm isotropic after its 4x in-plane
  reduction, 10 slices) gets the 2D network.
* Downsampling: 2x beat 4x and 1x for chloroplasts whose median in-plane
  diameter is ~100 voxels; the rule keeps the median object at least 40
  voxels across at model resolution.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass

import cc3d
import dask.array as da
import numpy as np
import torch

from ..core.runtime import THREADS_ENV, cpu_threads, device_for
from ..core.volume import Volume
from .recipe import TrainConfig

#: Default (z, y, x) windows at model resolution.
DEFAULT_WINDOW_3D = (8, 128, 128)
DEFAULT_WINDOW_2D = (1, 256, 256)
#: The median painted object stays at least this many voxels across after downsampling.
MIN_OBJECT_VOXELS = 40
#: z / in-plane voxel size below which a 3D network is chosen...
ISOTROPIC_ENOUGH = 2.5
#: ... when at least this many slices are painted (thinner stacks: 2D learns faster).
MIN_SLICES_3D = 16


@dataclass
class PaintedObjects:
    """What the painted labels hold (objects are connected pieces of one value).

    Parameters
    ----------
    count : int
        3D objects on the annotated slices (6-connected; specks of < 27 voxels left out).
    median_diameter : float
        Median in-plane equivalent diameter of the objects' slice sections (voxels).
    median_volume : float
        Median object volume (voxels, counted on the annotated slices only).
    foreground : float
        Share of the annotated voxels painted as an object.
    annotated : int
        Number of annotated slices.
    """

    count: int
    median_diameter: float
    median_volume: float
    foreground: float
    annotated: int

    def to_dict(self) -> dict[str, float]:
        """Plain numbers for ``config.json``."""
        return {k: float(v) for k, v in dataclasses.asdict(self).items()}


def measure_painted(
    labels: da.Array, ignore_value: int | None = None, max_voxels: float = 64e6
) -> PaintedObjects:
    """Count and size the painted objects (a central crop of at most ``max_voxels``).

    Parameters
    ----------
    labels : dask.array.Array
        (z, y, x) painted labels; a slice with any non-zero voxel is annotated.
    ignore_value : int, optional
        Label value meaning "not painted".
    max_voxels : float
        Read at most this many voxels (annotated slices x a central in-plane box).

    Returns
    -------
    PaintedObjects
    """
    labels = da.asarray(labels)
    painted = labels != 0
    if ignore_value is not None:
        painted &= labels != ignore_value
    zs = np.flatnonzero(np.asarray(painted.any(axis=(1, 2)).compute()))
    if zs.size == 0:
        return PaintedObjects(0, 0.0, 0.0, 0.0, 0)
    ny, nx = labels.shape[1:]
    side = int(np.sqrt(max_voxels / zs.size))
    hy, hx = min(ny, side), min(nx, side)
    y0, x0 = (ny - hy) // 2, (nx - hx) // 2
    stack = np.asarray(labels[zs][:, y0 : y0 + hy, x0 : x0 + hx].compute())
    if ignore_value is not None:
        stack = np.where(stack == ignore_value, 0, stack)
    # A blank slice between annotated slices that are not neighbours keeps
    # objects of distant slices apart.
    gaps = np.flatnonzero(np.diff(zs) > 1) + 1
    stack = np.insert(stack, gaps, 0, axis=0)
    objects = cc3d.connected_components(stack, connectivity=6)
    volumes = np.bincount(objects.ravel())[1:]
    volumes = volumes[volumes >= 27]
    areas = []
    for section in stack:
        pieces = cc3d.connected_components(section, connectivity=8)
        counts = np.bincount(pieces.ravel())[1:]
        areas.append(counts[counts >= 9])
    areas = np.concatenate(areas) if areas else np.zeros(0)
    diameter = float(np.median(np.sqrt(4 * areas / np.pi))) if areas.size else 0.0
    annotated_voxels = zs.size * hy * hx
    return PaintedObjects(
        count=int(volumes.size),
        median_diameter=diameter,
        median_volume=float(np.median(volumes)) if volumes.size else 0.0,
        foreground=float((stack != 0).sum() / max(annotated_voxels, 1)),
        annotated=int(zs.size),
    )


def resolve(
    config: TrainConfig, image: Volume, labels: Volume
) -> tuple[TrainConfig, dict[str, str], PaintedObjects]:
    """Fill in the settings left to the data.

    Parameters
    ----------
    config : TrainConfig
        ``None`` (``"auto"`` for the architecture) means "choose"; other values are kept.
    image, labels : Volume

    Returns
    -------
    config : TrainConfig
        A copy with every data-dependent setting decided.
    why : dict of str to str
        For each decided setting, the value and the reason, in words.
    painted : PaintedObjects
    """
    voxel = tuple(float(v) for v in (config.voxel_size or image.voxel_size))
    anisotropy = voxel[0] / min(voxel[1:])
    painted = measure_painted(labels.data, config.ignore_value)
    why: dict[str, str] = {}
    changes: dict = {}
    arch = config.architecture
    if arch == "auto":
        thick = painted.annotated >= MIN_SLICES_3D
        arch = "resunet3d" if anisotropy < ISOTROPIC_ENOUGH and thick else "unet2d"
        why["architecture"] = (
            f"{arch}: z voxels {anisotropy:.1f}x the in-plane size, "
            f"{painted.annotated} painted slices"
        )
        changes["architecture"] = arch
    if config.downsample is None:
        factor = 1
        while factor < 4 and painted.median_diameter / (2 * factor) >= MIN_OBJECT_VOXELS:
            factor *= 2
        # Keep at least one default window in-plane.
        while factor > 1 and min(image.shape[1:]) // factor < 64:
            factor //= 2
        fz = factor if arch == "resunet3d" and anisotropy < 1.5 else 1
        changes["downsample"] = (fz, factor, factor)
        why["downsample"] = (
            f"{fz},{factor},{factor}: median painted object "
            f"{painted.median_diameter:.0f} voxels across"
        )
    if config.depth is None:
        changes["depth"] = 5 if arch == "unet2d" else 4
        why["depth"] = f"{changes['depth']}: for {arch}"
    if config.batch is None:
        batch = 4 if arch == "unet2d" else 2
        device = device_for(config.device)
        if device.type == "cuda" and torch.cuda.mem_get_info(device)[0] >= 16 * 2**30:
            batch *= 4 if arch == "unet2d" else 2
        changes["batch"] = batch
        why["batch"] = f"{batch}: {arch} on {device.type}"
    if config.threads is None:
        changes["threads"] = cpu_threads()
        source = "the cores this process may use"
        if os.environ.get(THREADS_ENV):
            source = f"${THREADS_ENV}"
        why["threads"] = f"{changes['threads']}: {source}"
    return dataclasses.replace(config, **changes), why, painted


def default_window(architecture: str) -> tuple[int, int, int]:
    """The default (z, y, x) window of an architecture, before fitting it to the volume."""
    return DEFAULT_WINDOW_2D if architecture == "unet2d" else DEFAULT_WINDOW_3D


def describe_recipe(config: TrainConfig, why: dict[str, str], device: torch.device) -> str:
    """One line naming the recipe of a run (the data-decided settings with their reason)."""
    chosen = "; ".join(f"{k} {v}" for k, v in why.items())
    plural = "s" if config.threads != 1 else ""
    threads = f", {config.threads} thread{plural}" if device.type == "cpu" else ""
    return (
        f"recipe: {config.task}, {config.architecture} on {device.type}{threads}, "
        f"downsample {','.join(map(str, config.downsample))}, batch {config.batch}, "
        f"lr {config.lr:g}, zoom {config.zoom:g}, object crops {config.object_crops:g}, "
        f"copy-paste {config.copy_paste:g}, held out {config.val_fraction:g}"
        + (f" (chosen: {chosen})" if chosen else "")
    )
