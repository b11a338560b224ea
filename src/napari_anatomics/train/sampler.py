"""Training data at model resolution and random crops from the painted regions.

:func:`prepare_data` reduces the image (block mean) and the labels (centre
voxel of each block) lazily with dask, finds the annotated slices and a coarse
map of where objects are, and keeps the reduced arrays in memory only when
they are small (``cache_mb``); otherwise each crop is read by slicing the dask
arrays and computing just that crop.

:class:`CropSampler` draws windows that always contain an annotated slice;
a share of them (``fg_fraction``) is centred on painted objects so that sparse
objects are seen. Objects are drawn by object, not by area (``balance``): a
small object is as likely to be the centre of a crop as a large one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cc3d
import dask.array as da
import numpy as np

from ..models.config import normalize
from .augment import Augmenter, paste_object, resample_crop
from .targets import contact_band, instance_targets, loss_mask, semantic_targets

#: Cell size (y, x) of the coarse foreground map used to find objects.
FG_CELL = 16


@dataclass
class TrainingData:
    """Image and labels at model resolution plus what sampling needs."""

    image: np.ndarray | da.Array
    labels: np.ndarray | da.Array
    annotated: np.ndarray
    fg_cells: np.ndarray
    normalization: dict[str, float]

    @property
    def shape(self) -> tuple[int, int, int]:
        """(z, y, x) shape at model resolution."""
        return tuple(self.image.shape)  # type: ignore[return-value]

    @property
    def cached(self) -> bool:
        """True when the arrays are held in memory."""
        return isinstance(self.image, np.ndarray)


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
    per_slice = painted.any(axis=(1, 2)).compute()
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
    return TrainingData(image_r, labels_r, annotated, fg_cells, {"mean": mean, "std": std or 1.0})


class CropSampler:
    """Random training crops (image, targets, mask) from the painted regions.

    Parameters
    ----------
    data : TrainingData
    window : (int, int, int)
        Crop size (z, y, x) at model resolution.
    task : {"semantic", "instance"}
    rng : numpy.random.Generator
    x_range : (int, int), optional
        Restrict crops to these x columns.
    holdout : ndarray of bool, optional
        (y, x) voxels held out for validation (see :mod:`~napari_anatomics.train.holdout`):
        out of the loss, never crop centres, never pasted.
    label_values : sequence of int
        Semantic class values.
    ignore_value : int, optional
    distance : bool
        Instance targets with a distance channel.
    boundary_width : int
    contact_weight : float
        Instance: loss weight of voxels where two objects touch (the contact
        band); 1 weighs them like any voxel, and the mask stays boolean.
    fg_fraction : float
        Share of crops centred on a painted object.
    balance : bool
        Draw the object first (each connected patch of painted cells equally
        likely), then a voxel in it; otherwise every painted voxel is equally
        likely, and large objects dominate.
    augmenter : Augmenter, optional
    paste : float
        Share of augmented crops that get one more painted object, copied
        from a random place of the painted data (see :func:`paste_object`).
    """

    def __init__(
        self,
        data: TrainingData,
        window: Sequence[int],
        task: str,
        rng: np.random.Generator,
        *,
        x_range: tuple[int, int] | None = None,
        holdout: np.ndarray | None = None,
        label_values: Sequence[int] = (),
        ignore_value: int | None = None,
        distance: bool = False,
        boundary_width: int = 1,
        contact_weight: float = 1.0,
        fg_fraction: float = 0.5,
        balance: bool = True,
        augmenter: Augmenter | None = None,
        paste: float = 0.0,
    ) -> None:
        self.data = data
        self.window = tuple(int(w) for w in window)
        self.task = task
        self.rng = rng
        self.x_range = x_range or (0, data.shape[2])
        self.label_values = list(label_values)
        self.ignore_value = ignore_value
        self.distance = distance
        self.boundary_width = boundary_width
        self.contact_weight = float(contact_weight)
        self.fg_fraction = fg_fraction
        self.augmenter = augmenter
        self.paste = float(paste)
        self.holdout = holdout
        x0, x1 = self.x_range
        cells = data.fg_cells
        # Whole cells only: a painted voxel drawn from a cell reaching past
        # ``x_range`` could not be held by a window inside it.
        left = cells[:, 2] * FG_CELL
        keep = (left >= x0) & (left + FG_CELL <= x1)
        if holdout is not None and cells.size:
            cy = np.minimum(cells[:, 1] * FG_CELL + FG_CELL // 2, holdout.shape[0] - 1)
            cx = np.minimum(left + FG_CELL // 2, holdout.shape[1] - 1)
            keep &= ~holdout[cy, cx]
        self.fg_cells = cells[keep]
        weights = _object_weights(self.fg_cells) if balance else None
        self._cell_cdf = np.cumsum(weights) if weights is not None else None
        self.annotated_z = np.flatnonzero(data.annotated)

    def _start(self, centre: int, size: int, lo: int, hi: int) -> int:
        return int(np.clip(centre - size // 2, lo, max(lo, hi - size)))

    def _foreground_voxel(self) -> tuple[int, int, int]:
        """A random painted object voxel (from a random foreground cell)."""
        if self._cell_cdf is None:
            pick = self.rng.integers(len(self.fg_cells))
        else:
            pick = min(
                int(np.searchsorted(self._cell_cdf, self.rng.random())), len(self._cell_cdf) - 1
            )
        z, cy, cx = (int(v) for v in self.fg_cells[pick])
        cell = (
            z,
            slice(cy * FG_CELL, (cy + 1) * FG_CELL),
            slice(cx * FG_CELL, (cx + 1) * FG_CELL),
        )
        labels = np.asarray(self.data.labels[cell])
        fg = labels > 0
        if self.ignore_value is not None:
            fg &= labels != self.ignore_value
        ys, xs = np.nonzero(fg)
        i = int(self.rng.integers(len(ys)))
        return z, cy * FG_CELL + int(ys[i]), cx * FG_CELL + int(xs[i])

    def draw(self) -> tuple[int, int, int]:
        """Random crop origin (z, y, x) containing at least one annotated slice."""
        _, wy, wx = self.window
        ny = self.data.shape[1]
        x0, x1 = self.x_range
        if self.fg_cells.size and self.rng.random() < self.fg_fraction:
            z, y, x = self._foreground_voxel()
            # Jitter the object's position inside the window (it stays inside).
            y += int(self.rng.integers(-(wy // 4), wy // 4 + 1))
            x += int(self.rng.integers(-(wx // 4), wx // 4 + 1))
        else:
            z = self.annotated_z[self.rng.integers(len(self.annotated_z))]
            y = int(self.rng.integers(ny))
            x = int(self.rng.integers(x0, x1))
        return self._window_at(z, y, x)

    def _window_at(self, z: int, y: int, x: int) -> tuple[int, int, int]:
        """Origin of a window holding voxel (z, y, x): at a random z offset,
        centred in y and x, moved inside the data (and ``x_range``)."""
        wz, wy, wx = self.window
        nz, ny, _ = self.data.shape
        z0 = int(np.clip(z - self.rng.integers(wz), 0, nz - wz))
        return z0, self._start(y, wy, 0, ny), self._start(x, wx, *self.x_range)

    def crop(self, origin: Sequence[int], augment: bool = True, held_out: bool = False):
        """Image (1, z, y, x), targets and mask for one crop origin.

        With ``held_out`` the mask keeps the held-out voxels instead of the
        training ones (validation).

        Returns
        -------
        image : ndarray of float32, (1, z, y, x)
        target : ndarray, (C, z, y, x) float32 (instance) or (z, y, x) int64 (semantic)
        mask : ndarray of bool, (z, y, x)
            Voxels that count; float32 loss weights instead when an instance
            sampler has a ``contact_weight`` other than 1 (0 where not painted).
        """
        zoom = self.augmenter.zoom(self.rng) if augment and self.augmenter else 1.0
        index = self._source(origin, zoom)
        image = normalize(np.asarray(self.data.image[index]), self.data.normalization)
        labels = np.asarray(self.data.labels[index])
        mask = loss_mask(labels, self.data.annotated[index[0]], self.ignore_value)
        if self.holdout is not None:
            held = self.holdout[index[1], index[2]][None]
            mask &= held if held_out else ~held
        if image.shape[1:] != self.window[1:]:
            image, labels, mask = resample_crop(image, labels, mask, self.window[1:])
        if augment and self.paste > 0 and self.fg_cells.size and self.rng.random() < self.paste:
            image, labels = self._paste(image, labels, mask)
        if augment and self.augmenter is not None:
            image, labels, mask = self.augmenter(self.rng, image, labels, mask)
        if self.task == "semantic":
            target, known = semantic_targets(labels, self.label_values, self.ignore_value)
            mask &= known
        else:
            target = instance_targets(
                labels,
                distance=self.distance,
                boundary_width=self.boundary_width,
                ignore_value=self.ignore_value,
            )
            if self.contact_weight != 1.0:
                contact = contact_band(np.where(mask, labels, 0), self.boundary_width)
                mask = np.where(contact, self.contact_weight, 1.0).astype(np.float32) * mask
        return image[None], target, mask

    def _paste(self, image: np.ndarray, labels: np.ndarray, mask: np.ndarray):
        """Paste a random painted object (the connected piece around a random
        object voxel, within a window-sized box) into the crop."""
        z, y, x = self._foreground_voxel()
        z0, y0, x0 = self._window_at(z, y, x)
        box = tuple(slice(o, o + w) for o, w in zip((z0, y0, x0), self.window))
        source = np.asarray(self.data.labels[box])
        value = int(source[z - z0, y - y0, x - x0])
        pieces = cc3d.connected_components(source == value, connectivity=26)
        obj = pieces == pieces[z - z0, y - y0, x - x0]
        if self.holdout is not None:
            obj &= ~self.holdout[box[1], box[2]][None]
        source_image = normalize(np.asarray(self.data.image[box]), self.data.normalization)
        value_out = value if self.task == "semantic" else None
        return paste_object(self.rng, image, labels, mask, source_image, obj, value_out)

    def _source(self, origin: Sequence[int], zoom: float) -> tuple[slice, slice, slice]:
        """The box to read for a window at ``origin`` seen at ``zoom`` (same centre)."""
        boxes = [slice(origin[0], origin[0] + self.window[0])]
        limits = ((0, self.data.shape[1]), self.x_range)
        for o, w, (lo, hi) in zip(origin[1:], self.window[1:], limits):
            size = min(max(1, round(w / zoom)), hi - lo)
            start = self._start(o + w // 2, size, lo, hi)
            boxes.append(slice(start, start + size))
        return tuple(boxes)  # type: ignore[return-value]

    def batch(self, size: int):
        """Stack ``size`` random augmented crops: image, target, mask arrays."""
        crops = [self.crop(self.draw()) for _ in range(size)]
        return tuple(np.stack(parts) for parts in zip(*crops))


def _object_weights(cells: np.ndarray) -> np.ndarray | None:
    """Sampling weight of each painted cell: 1 / cells in its connected patch.

    Each patch of touching painted cells (about one object, or a few touching
    ones) then gets the same total weight, whatever its size.
    """
    if not cells.size:
        return None
    grid = np.zeros(tuple(cells.max(axis=0) + 1), dtype=np.uint8)
    grid[tuple(cells.T)] = 1
    patches = cc3d.connected_components(grid, connectivity=26)[tuple(cells.T)]
    sizes = np.bincount(patches)
    weights = 1.0 / sizes[patches]
    return weights / weights.sum()
