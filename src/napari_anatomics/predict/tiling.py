"""The tile plan of a tiled prediction: windows, strides, blending weights, regions.

Coordinates
-----------
The network runs at *model resolution*: the full-resolution stack reduced by
``downsample`` (block mean). Model voxel ``m`` along an axis with factor ``f``
is the mean of full-resolution voxels ``[m*f, (m+1)*f)`` of the stack extended
by reflection at its edges, so the model grid has ``ceil(S / f)`` voxels.

Tiles of ``window`` model voxels start every ``stride`` voxels. Each tile
trusts only its interior: a ``border`` of voxels on each face gets blending
weight 0 (a network's outermost voxels see zero padding), the rest gets a
Gaussian (or linear) weight that falls towards the faces. Along an axis at
least as long as the window, the first tile starts at 0 and the last one ends
flush with the stack, and their faces on the stack's faces are trusted: the
network sees there what it saw in training, the edge of a crop, and never
mirrored data (a mirrored half-object looks like a whole one). Only an axis
shorter than the window is padded by reflection: its grid starts at
``-border`` and ends at ``ceil(S / f) + border``. Either way the trusted
interiors cover every voxel and the blended value of a voxel is the weighted
mean over *all* tiles that trust it.

Because that mean is defined globally, the stack can be processed region by
region (a region is a block of output chunks, a
:class:`~napari_anatomics.core.blocks.Block` of :func:`~napari_anatomics.core.blocks.iter_blocks`):
a region only needs the tiles whose interiors touch it, and gives the same values as a
single pass over the whole stack. Regions are independent, so they can be skipped
when already written (resume) or run on different workers.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache, cached_property

import numpy as np

from ..core.blocks import DEFAULT_CHUNKS, Block, axis_slices, iter_blocks

#: Default overlap of neighbouring tiles, as a fraction of the window.
DEFAULT_OVERLAP = 0.25


def default_stride(window: Sequence[int], overlap: float = DEFAULT_OVERLAP) -> tuple[int, ...]:
    """Window minus an overlap (at least one voxel of stride per axis)."""
    return tuple(max(1, w - round(w * overlap)) if w > 1 else 1 for w in window)


def check_stride(stride: Sequence[int], window: Sequence[int]) -> tuple[int, int, int]:
    """Validate a (z, y, x) stride against a window; return it as a tuple of int.

    Raises
    ------
    ValueError
        If the stride is not three positive integers or exceeds the window
        along some axis (that would leave unpredicted gaps between tiles).
    """
    try:
        values = tuple(int(s) for s in stride)
    except (TypeError, ValueError):
        raise ValueError(f"stride {stride!r} must be three integers Z,Y,X") from None
    if len(values) != 3 or min(values) < 1:
        raise ValueError(f"stride {stride!r} must be three positive integers Z,Y,X")
    too_big = [f"{axis}: {s} > {w}" for axis, s, w in zip("zyx", values, window) if s > w]
    if too_big:
        raise ValueError(
            f"stride {values} is larger than the model window {tuple(window)} "
            f"({', '.join(too_big)}): tiles would leave gaps that are never predicted. "
            "Use a stride at most the window (smaller strides overlap more and blend better)."
        )
    return values  # type: ignore[return-value]


def blend_profile(window: int, border: int, mode: str = "gaussian") -> np.ndarray:
    """1D blending weights of one tile axis: 0 on the border, positive inside."""
    if mode not in ("gaussian", "linear"):
        raise ValueError(f"blend must be 'gaussian' or 'linear', not {mode!r}")
    pos = np.arange(window, dtype=np.float64) - (window - 1) / 2
    if window == 1:
        profile = np.ones(1)
    elif mode == "gaussian":
        sigma = window / 8.0
        profile = np.exp(-0.5 * (pos / sigma) ** 2)
    else:
        profile = 1.0 - np.abs(pos) / (window / 2.0)
    profile = np.maximum(profile / profile.max(), 1e-3)
    if border:
        profile[:border] = 0.0
        profile[-border:] = 0.0
    return profile.astype(np.float32)


def reflect_index(index: np.ndarray, size: int) -> np.ndarray:
    """Map indices outside ``[0, size)`` back inside by mirror reflection."""
    if size == 1:
        return np.zeros_like(index)
    period = 2 * (size - 1)
    index = np.mod(index, period)
    return np.where(index >= size, period - index, index)


@dataclass(frozen=True)
class TilePlan:
    """Geometry of a tiled prediction (see the module docstring).

    Parameters
    ----------
    shape : tuple of int
        Full-resolution stack shape (z, y, x).
    window, stride, border : tuple of int
        Tile size, step and untrusted border, in model voxels.
    downsample : tuple of int
        Full-resolution voxels per model voxel.
    chunks, region : tuple of int
        Output chunk (default :data:`~napari_anatomics.core.blocks.DEFAULT_CHUNKS`)
        and processing-region shapes (full resolution); the region is a whole number
        of chunks.
    blend : {"gaussian", "linear"}
        Weight profile inside the trusted interior.
    """

    shape: tuple[int, int, int]
    window: tuple[int, int, int]
    stride: tuple[int, int, int]
    border: tuple[int, int, int]
    downsample: tuple[int, int, int]
    chunks: tuple[int, int, int]
    region: tuple[int, int, int]
    blend: str = "gaussian"

    @classmethod
    def create(
        cls,
        shape: Sequence[int],
        window: Sequence[int],
        *,
        stride: Sequence[int] | None = None,
        downsample: Sequence[int] = (1, 1, 1),
        chunks: Sequence[int] | None = None,
        channels: int = 1,
        memory_mb: float = 256.0,
        blend: str = "gaussian",
    ) -> TilePlan:
        """Build a plan, validating the stride and sizing regions to ``memory_mb``."""
        shape = tuple(int(s) for s in shape)
        window = tuple(int(w) for w in window)
        downsample = tuple(int(f) for f in downsample)
        if len(shape) != 3 or min(shape) < 1:
            raise ValueError(f"the image must be a non-empty 3D stack (z, y, x), not {shape}")
        if len(window) != 3 or min(window) < 1 or len(downsample) != 3 or min(downsample) < 1:
            raise ValueError(f"bad model window {window} or downsample {downsample}")
        stride = check_stride(default_stride(window) if stride is None else stride, window)
        # Distrust a quarter of the overlap (at least one voxel) on each face: no gaps.
        border = tuple(max((w - s) // 4, min(1, (w - s) // 2)) for w, s in zip(window, stride))
        if chunks is None:
            chunks = DEFAULT_CHUNKS
        chunks = tuple(max(1, min(int(c), s)) for c, s in zip(chunks, shape))
        blend_profile(2, 0, blend)  # validates the mode
        region = _region_shape(shape, chunks, window, downsample, channels, memory_mb)
        return cls(shape, window, stride, border, downsample, chunks, region, blend)  # type: ignore[arg-type]

    @property
    def model_shape(self) -> tuple[int, int, int]:
        """Size of the stack at model resolution."""
        return tuple(-(-s // f) for s, f in zip(self.shape, self.downsample))  # type: ignore[return-value]

    @cached_property
    def starts(self) -> tuple[tuple[int, ...], ...]:
        """Tile start positions (model voxels) along each axis."""
        out = []
        for size, w, s, b in zip(self.model_shape, self.window, self.stride, self.border):
            pad = b if size < w else 0
            span = size + 2 * pad - w
            if span <= 0:
                out.append((-pad,))
                continue
            n = math.ceil(span / s) + 1
            out.append(tuple(-pad + min(k * s, span) for k in range(n)))
        return tuple(out)

    def trusted(self, axis: int, start: int) -> tuple[int, int]:
        """Voxels [lo, hi) along ``axis`` that a tile starting at ``start`` trusts.

        A face on (or beyond) the stack's face is trusted: no other tile covers it.
        """
        w, b, size = self.window[axis], self.border[axis], self.model_shape[axis]
        lo = start if start <= 0 else start + b
        hi = start + w if start + w >= size else start + w - b
        return lo, hi

    @property
    def n_tiles(self) -> int:
        """Tiles in a single pass over the whole stack."""
        return int(np.prod([len(s) for s in self.starts]))

    def weights(self, tile: Sequence[int]) -> np.ndarray:
        """Blending weights of the tile starting at ``tile``, float32 of shape ``window``."""
        untrusted = []
        for axis, start in enumerate(tile):
            lo, hi = self.trusted(axis, start)
            untrusted.append((lo - start, start + self.window[axis] - hi))
        return self._weights(tuple(untrusted))

    @cache  # noqa: B019 (a plan is small, frozen and lives as long as its prediction)
    def _weights(self, untrusted: tuple[tuple[int, int], ...]) -> np.ndarray:
        """Weights for (low, high) untrusted voxels per axis: at most 4 kinds per axis."""
        prof = []
        for w, (lo_border, hi_border) in zip(self.window, untrusted):
            profile = blend_profile(w, 0, self.blend)
            profile[:lo_border] = 0.0
            profile[w - hi_border :] = 0.0
            prof.append(profile)
        return prof[0][:, None, None] * prof[1][None, :, None] * prof[2][None, None, :]

    @cached_property
    def _axis_regions(self) -> list[tuple[slice, ...]]:
        return axis_slices(self.shape, self.region)

    @cached_property
    def blocks(self) -> list[Block]:
        """Processing regions as blocks (no halo), in C order (x fastest)."""
        return list(iter_blocks(self.shape, self.region))

    @cached_property
    def regions(self) -> list[tuple[slice, slice, slice]]:
        """Processing regions (full-resolution slices): the write boxes of :attr:`blocks`."""
        return [block.write for block in self.blocks]  # type: ignore[misc]

    def model_range(self, region: Sequence[slice]) -> list[tuple[int, int]]:
        """Model voxels [start, stop) needed to upsample a full-resolution region."""
        return [self._axis_model_range(axis, sl) for axis, sl in enumerate(region)]

    def _axis_model_range(self, axis: int, sl: slice) -> tuple[int, int]:
        f, size = self.downsample[axis], self.model_shape[axis]
        if f == 1:
            return (sl.start, sl.stop)
        lo = math.floor((sl.start + 0.5) / f - 0.5)
        hi = math.floor((sl.stop - 0.5) / f - 0.5) + 2
        return (max(lo, 0), min(hi, size))

    def regions_needing(self, tile: Sequence[int]) -> list[int]:
        """Indices (in :attr:`regions` order, ascending) of the regions that need a tile."""
        per_axis = []
        for axis, t in enumerate(tile):
            lo, hi = self.trusted(axis, t)
            ranges = [self._axis_model_range(axis, sl) for sl in self._axis_regions[axis]]
            per_axis.append([j for j, (a, b) in enumerate(ranges) if lo < b and hi > a])
        grid = [len(r) for r in self._axis_regions]
        return sorted(int(np.ravel_multi_index(j, grid)) for j in itertools.product(*per_axis))

    def tiles_for(self, mrange: Sequence[tuple[int, int]]) -> list[tuple[int, int, int]]:
        """Start corners of the tiles whose trusted interior meets a model range."""
        per_axis = []
        for axis, (starts, (lo, hi)) in enumerate(zip(self.starts, mrange)):
            trusted = [(t, *self.trusted(axis, t)) for t in starts]
            per_axis.append([t for t, a, b in trusted if a < hi and b > lo])
        return list(itertools.product(*per_axis))  # type: ignore[arg-type]


def _region_shape(shape, chunks, window, downsample, channels, memory_mb):
    """Grow a region by whole chunks (x, then y, then z) while it fits the budget."""
    budget = memory_mb * 2**20

    def cost(region):
        # Input (raw + float32 at model resolution with a tile margin), accumulators
        # at model resolution, float32 full-resolution output and its quantized copy.
        margin = [r + 2 * w * f for r, w, f in zip(region, window, downsample)]
        full = float(np.prod(region))
        model = float(np.prod([m / f for m, f in zip(margin, downsample)]))
        return full * (4 * channels * 2 + 2) + float(np.prod(margin)) + model * 4 * (channels + 2)

    region = list(chunks)
    grown = True
    while grown:
        grown = False
        for axis in (2, 1, 0):
            if region[axis] >= shape[axis]:
                continue
            trial = list(region)
            trial[axis] = min(region[axis] * 2, -(-shape[axis] // chunks[axis]) * chunks[axis])
            if cost(trial) <= budget:
                region, grown = trial, True
    return tuple(region)
