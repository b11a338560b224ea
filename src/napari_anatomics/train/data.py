"""Training data at model resolution: prepared once, repainted while training runs.

:func:`prepare_data` reduces the image (block mean) and the labels (centre
voxel of each block) lazily with dask, finds the annotated slices and a coarse
map of where objects are, and keeps the reduced arrays in memory only when
they are small (``cache_mb``); otherwise each crop is read by slicing the dask
arrays and computing just that crop.

:meth:`TrainingData.paint` lets slices painted or corrected while a run goes
on join it (:mod:`~napari_anatomics.train.live`): they are reduced the same
way, and the annotated slices and the object map follow. A slice counts as
annotated when any of its voxels is painted; a slice of zeros is unknown.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import dask.array as da
import numpy as np

#: Cell size (y, x) of the coarse foreground map used to find objects.
FG_CELL = 16


@dataclass(frozen=True)
class SliceUpdate:
    """What painted slices changed in the training data (:meth:`TrainingData.paint`).

    Attributes
    ----------
    received : tuple of int
        The full-resolution slices given.
    joined : tuple of int
        Slices (model resolution) that became annotated.
    changed : tuple of int
        Slices already annotated whose labels changed (corrections).
    left : tuple of int
        Slices no longer annotated (painting erased).
    annotated : int
        Annotated slices (model resolution) after the update.
    """

    received: tuple[int, ...]
    joined: tuple[int, ...]
    changed: tuple[int, ...]
    left: tuple[int, ...]
    annotated: int

    @property
    def any(self) -> bool:
        """True when the training data changed."""
        return bool(self.joined or self.changed or self.left)


@dataclass
class TrainingData:
    """Image and labels at model resolution plus what sampling needs.

    ``painted_slices`` (one flag per full-resolution slice), ``downsample``,
    ``ignore_value`` and ``use_mask`` (False: every slice counts as annotated)
    are what :meth:`paint` needs to reduce new slices as :func:`prepare_data` did.
    """

    image: np.ndarray | da.Array
    labels: np.ndarray | da.Array
    annotated: np.ndarray
    fg_cells: np.ndarray
    normalization: dict[str, float]
    painted_slices: np.ndarray | None = None
    downsample: tuple[int, int, int] = (1, 1, 1)
    ignore_value: int | None = None
    use_mask: bool = True
    _owned: bool = field(default=False, init=False, repr=False)

    @property
    def shape(self) -> tuple[int, int, int]:
        """(z, y, x) shape at model resolution."""
        return tuple(self.image.shape)  # type: ignore[return-value]

    @property
    def cached(self) -> bool:
        """True when the arrays are held in memory."""
        return isinstance(self.image, np.ndarray)

    def paint(self, slices: Mapping[int, np.ndarray]) -> SliceUpdate:
        """Add or replace full-resolution painted slices (reduced as :func:`prepare_data` does).

        The labels are copied before the first change (they may be the caller's
        array). Held-out tiles are (y, x) regions of every slice, so a slice
        painted inside one stays held out.

        Parameters
        ----------
        slices : mapping of int to ndarray
            Full-resolution z index -> its (y, x) labels (0 = not painted).
            Slices in the z remainder that :func:`prepare_data` drops are ignored.

        Returns
        -------
        SliceUpdate

        Raises
        ------
        ValueError
            For a z outside the stack, a slice of the wrong shape, or an update
            that would leave no annotated slice.
        """
        fz, fy, fx = self.downsample
        flags = self.painted_slices
        if flags is None:
            raise ValueError("these training data cannot take painted slices (no slice flags)")
        n = self.shape[0]
        reduced: dict[int, np.ndarray] = {}
        flags = flags.copy()
        for z, full in sorted(slices.items()):
            full = np.asarray(full)
            if not 0 <= z < flags.size or full.ndim != 2:
                raise ValueError(
                    f"painted slice {z} of shape {full.shape} does not fit the stack of "
                    f"{flags.size} slices"
                )
            small = full[fy // 2 : full.shape[0] - full.shape[0] % fy : fy,
                         fx // 2 : full.shape[1] - full.shape[1] % fx : fx]
            if small.shape != self.shape[1:]:
                raise ValueError(
                    f"painted slice {z} has shape {full.shape}: it does not match the image"
                )
            flags[z] = bool(full.any())
            if z // fz < n and z % fz == fz // 2:
                reduced[z // fz] = small
        touched = sorted({z // fz for z in slices if z // fz < n})
        was = self.annotated.copy()
        now = was.copy()
        if self.use_mask:
            for zm in touched:
                now[zm] = flags[zm * fz : (zm + 1) * fz].any()
        if not now.any():
            raise ValueError("an update cannot erase the last painted slice of a running job")
        changed = [zm for zm in reduced if was[zm] and now[zm] and self._differs(zm, reduced[zm])]
        self._write(reduced)
        self.painted_slices, self.annotated[:] = flags, now
        redo = sorted(set(touched) & set(np.flatnonzero(now | was).tolist()))
        self.fg_cells = self._cells_without(redo)
        return SliceUpdate(
            received=tuple(sorted(int(z) for z in slices)),
            joined=tuple(int(z) for z in touched if now[z] and not was[z]),
            changed=tuple(int(z) for z in sorted(changed)),
            left=tuple(int(z) for z in touched if was[z] and not now[z]),
            annotated=int(now.sum()),
        )

    def _differs(self, z: int, labels: np.ndarray) -> bool:
        return not np.array_equal(np.asarray(self.labels[z]), labels)

    def _write(self, reduced: dict[int, np.ndarray]) -> None:
        """Write reduced label slices; the labels are copied first, widened when values need it."""
        if not reduced:
            return
        values = [v for s in reduced.values() if s.size for v in (s.min(), s.max())]
        dtype = np.result_type(self.labels.dtype, *map(np.min_scalar_type, values))
        if dtype != self.labels.dtype or not self._owned:
            self.labels = self.labels.astype(dtype)  # numpy: a copy, never the caller's array
            self._owned = True
        for z, labels in reduced.items():
            self.labels[z] = labels

    def _cells_without(self, redo: Sequence[int]) -> np.ndarray:
        """The object cells with those of slices ``redo`` found again."""
        keep = self.fg_cells[~np.isin(self.fg_cells[:, 0], redo)]
        found = [keep]
        for z in redo:
            if self.annotated[z]:
                cells = object_cells(np.asarray(self.labels[z]), self.ignore_value)
                found.append(np.column_stack([np.full(len(cells), z), cells]))
        cells = np.concatenate(found).astype(keep.dtype)
        return cells[np.lexsort(cells.T[::-1])]


def object_cells(labels: np.ndarray, ignore_value: int | None = None) -> np.ndarray:
    """(cy, cx) of the :data:`FG_CELL` cells of one (y, x) label slice holding an object voxel."""
    fg = labels > 0
    if ignore_value is not None:
        fg &= labels != ignore_value
    ny, nx = (s // FG_CELL * FG_CELL for s in fg.shape)
    cells = fg[:ny, :nx].reshape(ny // FG_CELL, FG_CELL, nx // FG_CELL, FG_CELL).any(axis=(1, 3))
    return np.argwhere(cells)


def reduce_image(data: da.Array, factors: Sequence[int]) -> da.Array:
    """Block mean by (z, y, x) factors (edges that do not fill a block are dropped)."""
    factors = tuple(int(f) for f in factors)
    if factors == (1, 1, 1):
        return data
    trimmed = data[tuple(slice(0, s - s % f) for s, f in zip(data.shape, factors))]
    return da.coarsen(
        np.mean, trimmed.astype(np.float32), dict(enumerate(factors)), trim_excess=True
    )


def reduce_labels(data: da.Array, factors: Sequence[int]) -> da.Array:
    """Centre voxel of each (z, y, x) block (labels must not be averaged)."""
    factors = tuple(int(f) for f in factors)
    if factors == (1, 1, 1):
        return data
    index = tuple(slice(f // 2, s - s % f, f) for s, f in zip(data.shape, factors))
    return data[index]


def prepare_data(
    image: da.Array,
    labels: da.Array,
    downsample: Sequence[int] = (1, 1, 1),
    *,
    ignore_value: int | None = None,
    cache_mb: float = 1024.0,
) -> TrainingData:
    """Reduce, scan and (if small) cache the training data.

    Parameters
    ----------
    image, labels : dask.array.Array, (z, y, x)
        Full-resolution arrays of the same shape.
    downsample : sequence of 3 ints
        (z, y, x) reduction factors.
    ignore_value : int, optional
        Label value meaning "not painted".
    cache_mb : float
        Keep the reduced arrays in memory when together they are smaller.

    Returns
    -------
    TrainingData
    """
    image_r = reduce_image(image, downsample)
    labels_r = reduce_labels(labels, downsample)
    fz = int(downsample[0])
    painted = labels != 0
    per_slice = np.asarray(painted.any(axis=(1, 2)).compute())
    n = labels_r.shape[0]
    annotated = np.array([per_slice[z * fz : (z + 1) * fz].any() for z in range(n)])
    size_mb = (image_r.size * 4 + labels_r.size * labels_r.dtype.itemsize) / 1e6
    if size_mb <= cache_mb:
        image_r = image_r.astype(np.float32).compute()
        labels_r = np.asarray(labels_r.compute())
    lab = da.asarray(labels_r)
    fg = lab > 0
    if ignore_value is not None:
        fg &= lab != ignore_value
    fg = fg & da.asarray(annotated)[:, None, None]
    ny, nx = (s // FG_CELL * FG_CELL for s in fg.shape[1:])
    cells = da.coarsen(np.any, fg[:, :ny, :nx], {1: FG_CELL, 2: FG_CELL})
    fg_cells = np.argwhere(np.asarray(cells.compute()))
    idx = np.flatnonzero(annotated)
    stride = max(1, int(np.sqrt(image_r.shape[1] * image_r.shape[2] * idx.size / 4e6)))
    sample = da.asarray(image_r)[idx][:, ::stride, ::stride].astype(np.float64)
    mean, std = (float(v) for v in da.compute(sample.mean(), sample.std()))
    return TrainingData(
        image_r,
        labels_r,
        annotated,
        fg_cells,
        {"mean": mean, "std": std or 1.0},
        painted_slices=per_slice.astype(bool),
        downsample=tuple(int(f) for f in downsample),  # type: ignore[arg-type]
        ignore_value=ignore_value,
    )
