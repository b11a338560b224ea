"""Random training crops from the painted regions.

:class:`CropSampler` draws windows that always contain an annotated slice of
the training data (:mod:`~napari_anatomics.train.data`, whose
:func:`prepare_data` and :class:`TrainingData` this module also exports); a
share of them (``fg_fraction``) is centred on painted objects so that sparse
objects are seen. Objects are drawn by object, not by area (``balance``): a
small object is as likely to be the centre of a crop as a large one.
:meth:`CropSampler.add_slices` takes slices painted while training runs, and
:attr:`CropSampler.uses` counts the training crops each slice was in.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import cc3d
import numpy as np

from ..models.config import normalize
from .augment import Augmenter, paste_object, resample_crop
from .data import FG_CELL, SliceUpdate, TrainingData, prepare_data, reduce_image, reduce_labels
from .targets import contact_band, instance_targets, loss_mask, semantic_targets

__all__ = [
    "FG_CELL",
    "CropSampler",
    "SliceUpdate",
    "TrainingData",
    "prepare_data",
    "reduce_image",
    "reduce_labels",
]

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
        Painted objects pasted into each augmented crop on average, copied
        from random places of the painted data (see :func:`paste_object`):
        0.5 puts one into every other crop, 2 two into each.
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
        self.balance = balance
        #: Training crops (from :meth:`batch`) that held each annotated slice (model z).
        self.uses = np.zeros(data.shape[0], dtype=np.int64)
        self._select_cells()

    def _select_cells(self) -> None:
        """The object cells crops are centred on, their weights and the annotated slices."""
        x0, x1 = self.x_range
        cells = self.data.fg_cells
        # Whole cells only: a painted voxel drawn from a cell reaching past
        # ``x_range`` could not be held by a window inside it.
        left = cells[:, 2] * FG_CELL
        keep = (left >= x0) & (left + FG_CELL <= x1)
        if self.holdout is not None and cells.size:
            cy = np.minimum(cells[:, 1] * FG_CELL + FG_CELL // 2, self.holdout.shape[0] - 1)
            cx = np.minimum(left + FG_CELL // 2, self.holdout.shape[1] - 1)
            keep &= ~self.holdout[cy, cx]
        self.fg_cells = cells[keep]
        weights = _object_weights(self.fg_cells) if self.balance else None
        self._cell_cdf = np.cumsum(weights) if weights is not None else None
        self.annotated_z = np.flatnonzero(self.data.annotated)

    def add_slices(self, slices: Mapping[int, np.ndarray]) -> SliceUpdate:
        """Add or replace painted full-resolution slices (:meth:`TrainingData.paint`).

        The next crops come from the new annotated slices and objects too; the
        held-out tiles stay as they are (a slice painted inside one stays held out).

        Parameters
        ----------
        slices : mapping of int to ndarray
            Full-resolution z -> (y, x) labels.

        Returns
        -------
        SliceUpdate
            What changed, at model resolution.
        """
        update = self.data.paint(slices)
        if update.any:
            self._select_cells()
        return update

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
        if augment and self.paste > 0 and self.fg_cells.size:
            # ``paste`` objects on average: its whole part always, one more by chance.
            whole = int(self.paste)
            for _ in range(whole + int(self.rng.random() < self.paste - whole)):
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
        crops = []
        for _ in range(size):
            origin = self.draw()
            z = slice(origin[0], origin[0] + self.window[0])
            self.uses[z] += self.data.annotated[z]
            crops.append(self.crop(origin))
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
