"""Data augmentation of training crops (numpy, seeded).

Geometric transforms (flips, 90-degree rotations in the x/y plane, optional
in-plane elastic deformation) are applied identically to the image, the
labels and the loss mask *before* targets are computed, so boundaries are
drawn on the transformed labels. In-plane zoom (``scale``) is drawn here but
applied by the crop sampler, which reads a larger or smaller box and resamples
it to the window (:func:`resample_crop`), so a zoomed-out crop shows real
data and not padding. Intensity transforms (brightness, contrast)
touch the image only. z is never rotated into x/y: voxels are anisotropic.
:func:`paste_object` ("copy-paste") puts a painted object from elsewhere
into a crop; the sampler picks the object.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi


@dataclass
class Augmenter:
    """Random transforms for (z, y, x) crops.

    Parameters
    ----------
    flips : bool
        Random flips along z, y and x.
    rotations : bool
        Random multiples of 90 degrees in the x/y plane (180 only when the
        crop is not square in x/y).
    brightness : float
        Largest additive shift of the normalized image (in std units).
    contrast : float
        Largest relative change of contrast (0.2 = x0.8 to x1.2).
    elastic : float
        Strength (in voxels) of a smooth in-plane deformation; 0 disables it.
    scale : float
        Largest in-plane zoom: factors are drawn log-uniformly from
        ``[1 / (1 + scale), 1 + scale]``; 0 disables it.
    """

    flips: bool = True
    rotations: bool = True
    brightness: float = 0.2
    contrast: float = 0.2
    elastic: float = 0.0
    scale: float = 0.0

    def zoom(self, rng: np.random.Generator) -> float:
        """A random in-plane zoom factor (> 1 magnifies); 1 when ``scale`` is 0."""
        if self.scale <= 0:
            return 1.0
        return float(np.exp(rng.uniform(-1.0, 1.0) * np.log1p(self.scale)))

    def __call__(
        self,
        rng: np.random.Generator,
        image: np.ndarray,
        labels: np.ndarray,
        mask: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Transform one crop.

        Parameters
        ----------
        rng : numpy.random.Generator
            Source of randomness (seeded by the training run).
        image : ndarray of float32, (z, y, x)
            Normalized image crop.
        labels : ndarray, (z, y, x)
            Label crop.
        mask : ndarray of bool, (z, y, x)
            Loss mask of the crop.

        Returns
        -------
        image, labels, mask : ndarray
            Transformed, contiguous copies.
        """
        if self.flips:
            for axis, flip in enumerate(rng.random(3) < 0.5):
                if flip:
                    image, labels, mask = (np.flip(a, axis) for a in (image, labels, mask))
        if self.rotations:
            square = image.shape[1] == image.shape[2]
            k = int(rng.integers(4)) if square else 2 * int(rng.integers(2))
            if k:
                image, labels, mask = (np.rot90(a, k, axes=(1, 2)) for a in (image, labels, mask))
        if self.elastic > 0:
            image, labels, mask = _elastic(rng, self.elastic, image, labels, mask)
        image = np.ascontiguousarray(image, dtype=np.float32)
        if self.contrast > 0 or self.brightness > 0:
            gain = 1.0 + rng.uniform(-self.contrast, self.contrast)
            shift = rng.uniform(-self.brightness, self.brightness)
            image = image * np.float32(gain) + np.float32(shift)
        return image, np.ascontiguousarray(labels), np.ascontiguousarray(mask)


def _elastic(
    rng: np.random.Generator,
    strength: float,
    image: np.ndarray,
    labels: np.ndarray,
    mask: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Smooth random in-plane displacement, the same for every slice."""
    _, ny, nx = image.shape
    sigma = max(ny, nx) / 8.0
    dy, dx = (ndi.gaussian_filter(rng.normal(size=(ny, nx)), sigma) for _ in range(2))
    scale = strength / max(np.abs(dy).max(), np.abs(dx).max(), 1e-6)
    yy, xx = np.meshgrid(np.arange(ny), np.arange(nx), indexing="ij")
    coords = np.stack([yy + dy * scale, xx + dx * scale])
    return _sample_slices(coords, image, labels, mask, "reflect")


def resample_crop(
    image: np.ndarray, labels: np.ndarray, mask: np.ndarray, size: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Resample (z, y, x) crops in-plane to ``size`` (y, x).

    The image is interpolated linearly; labels and mask take the nearest
    voxel, so ids stay ids. Voxel centres are aligned (``align_corners=False``
    convention), so a zoom keeps the crop centred.
    """
    ny, nx = image.shape[1:]
    yy = (np.arange(size[0]) + 0.5) * ny / size[0] - 0.5
    xx = (np.arange(size[1]) + 0.5) * nx / size[1] - 0.5
    coords = np.stack(np.meshgrid(yy, xx, indexing="ij"))
    image, labels, mask = _sample_slices(coords, image, labels, mask, "nearest")
    return image.astype(np.float32, copy=False), labels, mask


def _sample_slices(
    coords: np.ndarray, image: np.ndarray, labels: np.ndarray, mask: np.ndarray, mode: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sample every z-slice at in-plane ``coords`` (2, Y, X): image linearly, the rest nearest."""
    out = []
    for array, order in ((image, 1), (labels, 0), (mask.astype(np.uint8), 0)):
        out.append(
            np.stack([ndi.map_coordinates(s, coords, order=order, mode=mode) for s in array])
        )
    return out[0], out[1], out[2].astype(bool)


def paste_object(
    rng: np.random.Generator,
    image: np.ndarray,
    labels: np.ndarray,
    mask: np.ndarray,
    source_image: np.ndarray,
    source_object: np.ndarray,
    value: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Paste one painted object into a crop at a random place ("copy-paste").

    The object's voxels replace the crop's where the crop is painted
    background: objects already there and unpainted voxels are left alone.
    Seeing objects on backgrounds they were not painted on teaches what an
    object looks like rather than where it sits (next to a cell wall...).

    Parameters
    ----------
    rng : numpy.random.Generator
    image, labels, mask : ndarray, (z, y, x)
        The crop: normalized image, labels, loss mask (any non-zero counts).
    source_image : ndarray, (z, y, x)
        Normalized image around the object, same z extent as the crop and no
        larger in y and x.
    source_object : ndarray of bool, same shape as ``source_image``
        The object's voxels.
    value : int, optional
        Label value of the pasted object (semantic class); a new id, one
        above the crop's largest, by default.

    Returns
    -------
    image, labels : ndarray
        New arrays (labels as int32); the inputs are not modified.
    """
    if source_image.shape != source_object.shape or source_image.shape[0] != image.shape[0]:
        raise ValueError("the source must have the crop's z extent and match its object mask")
    if any(s > c for s, c in zip(source_image.shape[1:], image.shape[1:])):
        raise ValueError("the source box must not be larger than the crop in y and x")
    image, labels = image.copy(), labels.astype(np.int32)
    if not source_object.any():
        return image, labels
    _, ys, xs = np.nonzero(source_object)
    box = (slice(None), slice(ys.min(), ys.max() + 1), slice(xs.min(), xs.max() + 1))
    piece, obj = source_image[box], source_object[box]
    y0 = int(rng.integers(image.shape[1] - obj.shape[1] + 1))
    x0 = int(rng.integers(image.shape[2] - obj.shape[2] + 1))
    dest = (slice(None), slice(y0, y0 + obj.shape[1]), slice(x0, x0 + obj.shape[2]))
    free = obj & (labels[dest] == 0) & (mask[dest] != 0)
    image[dest][free] = piece[free]
    labels[dest][free] = int(labels.max()) + 1 if value is None else value
    return image, labels
