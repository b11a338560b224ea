"""Sample data: the bundled real SBFSEM crop and a synthetic volume with exact truth.

:func:`synthetic_sbfsem` draws ellipsoidal organelles (dark membrane rim,
mid-grey lumen) on textured cytoplasm with noise, in physical units so that a
coarse z spacing gives flattened voxels as in real SBFSEM. Its labels are the
exact ground truth: each object's voxel count is known, and objects never
overlap.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources

import numpy as np
from scipy import ndimage as ndi

from ..core.volume import Volume

#: Voxel size (z, y, x, nm) of the bundled sample after 4x in-plane reduction.
SAMPLE_VOXEL_SIZE: tuple[float, float, float] = (40.0, 40.0, 40.0)
SAMPLE_CREDIT = (
    "SBFSEM of an Arabidopsis leaf from the Anatomics MLT example data "
    "(MIT licence, (c) 2021 Aaron Brookhouse; Brookhouse, Ji, Knoblauch et al.)"
)


@dataclass
class SyntheticVolume:
    """A synthetic SBFSEM-like stack and its exact ground truth.

    Attributes
    ----------
    image : ndarray of uint8, (z, y, x)
    labels : ndarray of uint32, (z, y, x)
        Instance ids 1..n, 0 = background.
    classes : ndarray of int
        ``classes[i]`` is the class (1..n_classes) of instance ``i``; index 0 is 0.
    voxel_size : tuple of float
        (z, y, x) in nm.
    """

    image: np.ndarray
    labels: np.ndarray
    classes: np.ndarray
    voxel_size: tuple[float, float, float]

    @property
    def n_objects(self) -> int:
        """Number of instances."""
        return int(self.classes.size - 1)

    @property
    def semantic(self) -> np.ndarray:
        """Class map (uint8): each voxel holds its object's class, 0 = background."""
        return self.classes.astype(np.uint8)[self.labels]

    def volumes(self) -> tuple[Volume, Volume]:
        """The image and labels as :class:`Volume` objects."""
        return (
            Volume(self.image, self.voxel_size, "user", None, "synthetic image"),
            Volume(self.labels, self.voxel_size, "user", None, "synthetic labels"),
        )


def synthetic_sbfsem(
    shape: tuple[int, int, int] = (24, 128, 128),
    n_objects: int = 12,
    *,
    voxel_size: tuple[float, float, float] = (40.0, 10.0, 10.0),
    radius_nm: tuple[float, float] = (120.0, 320.0),
    n_classes: int = 1,
    noise: float = 12.0,
    seed: int = 0,
) -> SyntheticVolume:
    """Draw a synthetic SBFSEM stack with ellipsoidal organelles.

    Parameters
    ----------
    shape : tuple of int
        (z, y, x) size in voxels; any size works.
    n_objects : int
        Number of organelles to place; fewer are placed if they do not fit
        without overlapping (the exact number is in the result).
    voxel_size : tuple of float
        (z, y, x) in nm; a coarser z flattens objects in voxel space.
    radius_nm : (float, float)
        Range of ellipsoid semi-axes, in nm.
    n_classes : int
        Number of organelle classes; class ``c`` objects are drawn with a
        different lumen grey so a semantic model can tell them apart.
    noise : float
        Standard deviation of the additive Gaussian noise (grey levels).
    seed : int
        Random seed: the same arguments give the same volume.

    Returns
    -------
    SyntheticVolume
    """
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"shape must be three positive sizes (z, y, x), not {shape}")
    if n_classes < 1:
        raise ValueError("n_classes must be at least 1")
    rng = np.random.default_rng(seed)
    vs = np.asarray(voxel_size, dtype=float)
    labels = np.zeros(shape, dtype=np.uint32)
    classes = [0]
    attempts = 0
    while len(classes) <= n_objects and attempts < n_objects * 50:
        attempts += 1
        radii_vox = rng.uniform(*radius_nm, size=3) / vs
        radii_vox = np.maximum(radii_vox, 1.0)
        center = rng.uniform(0, 1, size=3) * (np.asarray(shape) - 1)
        lo = np.maximum(np.floor(center - radii_vox).astype(int), 0)
        hi = np.minimum(np.ceil(center + radii_vox).astype(int) + 1, shape)
        if np.any(hi <= lo):
            continue
        grid = np.ogrid[tuple(slice(a, b) for a, b in zip(lo, hi))]
        rotation = _random_rotation(rng)
        coords = [g - c for g, c in zip(grid, center)]
        # Rotate in physical space so flattened voxels stay flattened objects.
        phys = [c * v for c, v in zip(coords, vs)]
        dist = np.zeros(tuple(hi - lo), dtype=float)
        radii_nm = radii_vox * vs
        for axis in range(3):
            rotated = sum(rotation[axis, k] * phys[k] for k in range(3))
            dist = dist + (rotated / radii_nm[axis]) ** 2
        inside = dist <= 1.0
        if not inside.any():
            continue
        # Keep a one-voxel gap to other objects (touching membranes, not overlaps):
        # look one voxel beyond the bounding box, where the grown object reaches.
        plo, phi = np.maximum(lo - 1, 0), np.minimum(hi + 1, shape)
        grown = np.zeros(tuple(phi - plo), dtype=bool)
        grown[tuple(slice(a - p, b - p) for a, b, p in zip(lo, hi, plo))] = inside
        grown = ndi.binary_dilation(grown)
        if np.any(labels[tuple(slice(a, b) for a, b in zip(plo, phi))][grown]):
            continue
        labels[tuple(slice(a, b) for a, b in zip(lo, hi))][inside] = len(classes)
        classes.append(int(rng.integers(1, n_classes + 1)))
    class_arr = np.asarray(classes, dtype=np.int64)
    image = _render(labels, class_arr, rng, noise)
    return SyntheticVolume(image, labels, class_arr, tuple(float(v) for v in voxel_size))


def _random_rotation(rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    return q * np.sign(np.diag(r))


def _render(
    labels: np.ndarray, classes: np.ndarray, rng: np.random.Generator, noise: float
) -> np.ndarray:
    """Grey values: textured cytoplasm, dark rims, class-dependent lumen."""
    texture = ndi.gaussian_filter(rng.normal(0, 1, labels.shape), sigma=(0.5, 2, 2))
    texture /= texture.std() or 1.0
    image = 170.0 + 10.0 * texture
    lumen_grey = np.array([170.0] + [110.0 - 35.0 * (c - 1) for c in classes[1:]])
    image = np.where(labels > 0, lumen_grey[labels] + 6.0 * texture, image)
    # Membrane rim: object voxels next to anything else (background or another id).
    eroded = ndi.grey_erosion(labels, size=(1, 3, 3))
    dilated = ndi.grey_dilation(labels, size=(1, 3, 3))
    rim = (labels > 0) & ((eroded != labels) | (dilated != labels))
    image[rim] = 45.0
    image = ndi.gaussian_filter(image, sigma=(0.3, 0.7, 0.7))
    image += rng.normal(0, noise, labels.shape)
    return np.clip(np.round(image), 0, 255).astype(np.uint8)


def load_sample() -> tuple[Volume, Volume]:
    """Open the bundled SBFSEM chloroplast sample lazily.

    Returns
    -------
    image, labels : Volume
        uint8 image and uint8 instance labels as painted, (10, 292, 823),
        voxel size 40 x 40 x 40 nm.
    """
    from .read import open_volume

    folder = resources.files("napari_anatomics") / "data"
    image = open_volume(str(folder / "chloroplasts_image.tif"))
    labels = open_volume(str(folder / "chloroplasts_labels.tif"))
    image.name, labels.name = "chloroplasts image", "chloroplasts labels"
    return image, labels
