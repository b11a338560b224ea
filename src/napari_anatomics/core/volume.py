"""The :class:`Volume` type: a lazy array that knows its voxel size.

Arrays are always ordered (z, y, x) inside napari-anatomics; voxel sizes are
stored in the same order, in nanometres. Users say voxel sizes as x, y, z
("10,10,40"), so :func:`parse_voxel_size` and :func:`format_voxel_size`
convert at the edges (CLI, widgets, reports).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

import dask.array as da
import numpy as np

#: Voxel size assumed when neither the file nor the user gives one
#: (z, y, x nm): 10 x 10 x 40 nm (x, y, z), typical of SBFSEM.
DEFAULT_VOXEL_SIZE: tuple[float, float, float] = (40.0, 10.0, 10.0)

VoxelSizeOrigin = Literal["file", "user", "default"]


def parse_voxel_size(text: str | Sequence[float]) -> tuple[float, float, float]:
    """Parse a user's voxel size "X,Y,Z" (nm) into (z, y, x).

    Parameters
    ----------
    text : str or sequence of 3 floats
        ``"10,10,40"`` (x, y, z, as users say it) or a sequence in x, y, z order.
        A single number means isotropic voxels.

    Returns
    -------
    tuple of float
        The voxel size in (z, y, x) order, nanometres.

    Raises
    ------
    ValueError
        If the text does not hold one or three positive numbers.
    """
    if isinstance(text, str):
        parts = [p for p in text.replace("x", ",").replace(" ", ",").split(",") if p]
        try:
            values = [float(p) for p in parts]
        except ValueError:
            raise ValueError(
                f"voxel size {text!r} is not understood: give X,Y,Z in nanometres, e.g. 10,10,40"
            ) from None
    else:
        values = [float(v) for v in text]
    if len(values) == 1:
        values = values * 3
    if len(values) != 3 or not all(np.isfinite(v) and v > 0 for v in values):
        raise ValueError(
            f"voxel size {text!r} must be three positive numbers X,Y,Z in nanometres, "
            "e.g. 10,10,40"
        )
    x, y, z = values
    return (z, y, x)


def check_voxel_size(
    voxel_size: Sequence[float], what: str = "voxel_size"
) -> tuple[float, float, float]:
    """Return ``voxel_size`` as three floats, or refuse it in one clear line.

    Parameters
    ----------
    voxel_size : sequence of 3 float
        (z, y, x) in nanometres.
    what : str
        How the caller names the value in the message (an option, a file).

    Returns
    -------
    tuple of float
        The voxel size, (z, y, x) nm.

    Raises
    ------
    ValueError
        If it is not three finite numbers above zero: volumes and lengths
        computed from it would be negative, zero or NaN.
    """
    try:
        values = tuple(float(v) for v in voxel_size)
    except (TypeError, ValueError):
        values = ()
    if len(values) != 3 or not all(np.isfinite(v) and v > 0 for v in values):
        raise ValueError(
            f"{what} {tuple(voxel_size) if np.iterable(voxel_size) else voxel_size!r} must be "
            "three finite numbers above zero (z, y, x nm), e.g. (40, 10, 10): volumes "
            "and lengths are computed from it"
        )
    return values  # type: ignore[return-value]


def format_voxel_size(voxel_size: Sequence[float]) -> str:
    """Format a (z, y, x) voxel size the way users read it: "10 x 10 x 40 nm (x, y, z)"."""
    z, y, x = (float(v) for v in voxel_size)
    return f"{x:g} x {y:g} x {z:g} nm (x, y, z)"


@dataclass
class Volume:
    """A lazy 3D (or 2D) array plus what is known about it.

    Parameters
    ----------
    data : dask.array.Array
        The voxels, ordered (z, y, x). Never computed whole by the library.
    voxel_size : tuple of float
        Voxel size in nanometres, (z, y, x) order.
    voxel_size_origin : {"file", "user", "default"}
        Where the voxel size came from, so reports can warn about a guess.
    source : str or None
        The path (and dataset key) the data was read from.
    name : str
        A short name for layers and reports.
    """

    data: da.Array
    voxel_size: tuple[float, float, float] = DEFAULT_VOXEL_SIZE
    voxel_size_origin: VoxelSizeOrigin = "default"
    source: str | None = None
    name: str = "volume"
    metadata: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.data, da.Array):
            self.data = da.asarray(self.data)
        self.voxel_size = check_voxel_size(self.voxel_size, f"{self.name}: voxel size")

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of the array, (z, y, x)."""
        return tuple(self.data.shape)

    @property
    def dtype(self) -> np.dtype:
        """dtype of the array."""
        return self.data.dtype

    @property
    def ndim(self) -> int:
        """Number of dimensions."""
        return self.data.ndim

    @property
    def scale(self) -> tuple[float, ...]:
        """napari layer ``scale`` in nanometres, matching ``data.ndim``."""
        return tuple(self.voxel_size[-self.ndim :])

    @property
    def voxel_volume_um3(self) -> float:
        """Volume of one voxel in cubic micrometres."""
        return float(np.prod(self.voxel_size)) * 1e-9

    def with_voxel_size(
        self, voxel_size: Sequence[float], origin: VoxelSizeOrigin = "user"
    ) -> Volume:
        """Return a copy with another voxel size ((z, y, x) nm)."""
        return replace(self, voxel_size=tuple(voxel_size), voxel_size_origin=origin)

    def describe(self) -> str:
        """One line for reports: name, shape, dtype, voxel size and its origin."""
        origin = {"file": "from file", "user": "given", "default": "assumed"}
        return (
            f"{self.name}: shape (z, y, x) {self.shape}, {self.dtype}, voxel "
            f"{format_voxel_size(self.voxel_size)} ({origin[self.voxel_size_origin]})"
        )
