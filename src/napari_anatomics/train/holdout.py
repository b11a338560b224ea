"""The held-out part of the painted data: tiles spread over the whole painted area.

A strip at one end of the stack holds whatever tissue happens to be there
(on the chloroplast data the x end is the patch of small dense cells, the
hardest objects: holding it out removed most of their painted examples).
Tiles spread evenly over the painted area hold out a little of every tissue
instead. Training never sees their labels (their voxels are masked out of
the loss, their objects are neither crop centres nor pasted), the validation
Dice is computed on them, and :mod:`~napari_anatomics.train.decoding` scores the
model on them after training.
"""

from __future__ import annotations

import math

import numpy as np

from .sampler import TrainingData


def holdout_tiles(shape: tuple[int, int], tile: int, fraction: float) -> np.ndarray | None:
    """A (y, x) mask of the in-plane tiles held out; None when ``fraction`` is 0.

    Parameters
    ----------
    shape : (int, int)
        (y, x) size at model resolution.
    tile : int
        Tile side (voxels at model resolution).
    fraction : float
        Share of the tiles held out (at least one tile when > 0), spread evenly
        along a serpentine path over the tile grid, so every part of the image
        gives some.

    Returns
    -------
    ndarray of bool or None
    """
    if fraction <= 0:
        return None
    ny, nx = shape
    tile = max(1, min(tile, ny, nx))
    rows, cols = math.ceil(ny / tile), math.ceil(nx / tile)
    path = [
        (r, c) for r in range(rows) for c in (range(cols) if r % 2 == 0 else range(cols)[::-1])
    ]
    n = len(path)
    k = max(1, min(n - 1, round(n * fraction))) if n > 1 else 1
    mask = np.zeros((ny, nx), dtype=bool)
    for i in range(k):
        r, c = path[int((i + 0.5) * n / k)]
        mask[r * tile : (r + 1) * tile, c * tile : (c + 1) * tile] = True
    return mask


def validation_origins(
    data: TrainingData, window: tuple[int, int, int], held: np.ndarray, max_crops: int = 8
) -> list[tuple[int, int, int]]:
    """Fixed windows centred on held-out tiles, on annotated slices."""
    nz, ny, nx = data.shape
    wz, wy, wx = window
    zs = sorted({int(np.clip(z - wz // 2, 0, nz - wz)) for z in np.flatnonzero(data.annotated)})
    ys, xs = np.nonzero(held)
    # One centre per held-out tile: the tiles' corners are where the mask starts.
    starts = held & ~np.pad(held, ((1, 0), (0, 0)))[:-1] & ~np.pad(held, ((0, 0), (1, 0)))[:, :-1]
    corners = np.argwhere(starts) if starts.any() else np.array([[ys.min(), xs.min()]])
    origins = []
    for cy, cx in corners:
        y = int(np.clip(cy - wy // 4, 0, ny - wy))
        x = int(np.clip(cx - wx // 4, 0, nx - wx))
        origins.extend((z, y, x) for z in zs)
    step = max(1, len(origins) // max_crops)
    return origins[::step][:max_crops]


def full_resolution(held: np.ndarray, factors: tuple[int, int, int], shape) -> np.ndarray:
    """The held-out mask at full resolution, (y, x) of ``shape`` (z, y, x)."""
    big = np.repeat(np.repeat(held, factors[1], axis=0), factors[2], axis=1)
    ny, nx = shape[1:]
    out = np.zeros((ny, nx), dtype=bool)
    out[: min(ny, big.shape[0]), : min(nx, big.shape[1])] = big[:ny, :nx]
    return out
