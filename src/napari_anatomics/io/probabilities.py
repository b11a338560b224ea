"""The probability-map format: one owner for how maps are stored and read back.

A prediction is a ``(C, Z, Y, X)`` zarr array, one channel per network output
(instance models: ``foreground``, ``boundary`` and optionally ``distance``;
semantic models: ``background`` then one per class). It is stored as

* ``uint8``: ``round(p * 255)`` (``p`` clipped to [0, 1]), read back as
  ``value / 255``, within 1/510 of the float;
* ``float16`` or ``float32``: the probability itself.

Its attributes (:func:`attributes`) name the channels, the task, the classes,
the voxel size and the encoding. :func:`encode` writes this format,
:func:`decode` and :class:`ProbabilityMaps` read it; prediction
(:mod:`~napari_anatomics.predict.tiled`), post-processing
(:mod:`~napari_anatomics.segment.postprocess`) and the tuning of a model's
decoding (:mod:`~napari_anatomics.train.decoding`) go through here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

#: Storage types of the maps.
ENCODINGS: tuple[str, ...] = ("uint8", "float16", "float32")
#: The uint8 step: a stored value ``v`` means probability ``v / UINT8_SCALE``.
UINT8_SCALE = 255.0


def check_encoding(dtype: Any) -> str:
    """The name of storage type ``dtype``; ValueError when it is not one of :data:`ENCODINGS`."""
    name = str(np.dtype(dtype)) if not isinstance(dtype, str) else dtype
    if name not in ENCODINGS:
        raise ValueError(f"output must be one of {ENCODINGS}, not {dtype!r}")
    return name


def encode(probs: np.ndarray, dtype: str = "uint8") -> np.ndarray:
    """Probabilities (float32) as stored with ``dtype``; uint8 quantizes ``probs`` in place.

    Parameters
    ----------
    probs : ndarray of float32
        Probabilities; for uint8 they are clipped, scaled and rounded in
        place (no full-size temporaries), so do not use them afterwards.
    dtype : {"uint8", "float16", "float32"}

    Returns
    -------
    ndarray
        The stored values.
    """
    if check_encoding(dtype) == "uint8":
        np.clip(probs, 0.0, 1.0, out=probs)
        probs *= UINT8_SCALE
        return np.rint(probs, out=probs).astype(np.uint8)
    return probs.astype(dtype)


def decode(stored: Any) -> np.ndarray:
    """Stored maps (any of :data:`ENCODINGS`, or a dask array) as float32 probabilities."""
    if hasattr(stored, "compute"):
        stored = stored.compute()
    stored = np.asarray(stored)
    if stored.dtype == np.uint8:
        return stored.astype(np.float32) * np.float32(1 / UINT8_SCALE)
    return stored.astype(np.float32, copy=False)


def attributes(
    dtype: str,
    channels: Sequence[str],
    task: str,
    classes: Sequence[str],
    voxel_size: Sequence[float] | None,
) -> dict[str, Any]:
    """The attributes of a probability array: axes, channels, task, classes, voxel, encoding."""
    return {
        "voxel_size_nm": list(voxel_size) if voxel_size is not None else None,
        "axes": ["c", "z", "y", "x"],
        "channels": list(channels),
        "task": task,
        "classes": list(classes),
        "encoding": (
            f"probability = value / {UINT8_SCALE:g}"
            if check_encoding(dtype) == "uint8"
            else "probability"
        ),
    }


def default_channels(task: str, n: int) -> list[str]:
    """The channel names of ``n`` maps of ``task`` when the array does not record them."""
    if task == "semantic":
        return ["background"] + [f"class {i}" for i in range(1, n)]
    return ["foreground", "boundary", "distance"][:n]


class ProbabilityMaps:
    """Read float32 probabilities from a stored ``(C, Z, Y, X)`` array, block by block.

    Parameters
    ----------
    array : zarr.Array or array-like
        The maps, in any of :data:`ENCODINGS`.
    task : {"semantic", "instance"}, optional
        Default: the ``task`` attribute.
    channels : sequence of str, optional
        Default: the ``channels`` attribute, else :func:`default_channels`.

    Raises
    ------
    ValueError
        When the array is not 4D or the task is unknown.
    """

    def __init__(
        self, array: Any, task: str | None = None, channels: Sequence[str] | None = None
    ) -> None:
        self.array = array
        self.attrs: dict[str, Any] = dict(getattr(array, "attrs", {}) or {})
        self.task = task or self.attrs.get("task")
        if self.task not in ("semantic", "instance"):
            raise ValueError(
                "say whether the maps are 'semantic' or 'instance' (--task): "
                f"the input does not record it (got {self.task!r})"
            )
        if np.ndim(array) != 4:
            raise ValueError(f"probabilities must be (C, Z, Y, X), got shape {np.shape(array)}")
        n = array.shape[0]
        self.channels = list(
            channels or self.attrs.get("channels") or default_channels(self.task, n)
        )
        self.shape: tuple[int, ...] = tuple(array.shape[1:])

    @property
    def voxel_size(self) -> list[float] | None:
        """(z, y, x) nm as recorded, or None."""
        return self.attrs.get("voxel_size_nm")

    def read(self, sl: Sequence[slice], channels: Sequence[str] | None = None) -> np.ndarray:
        """Probabilities of the (z, y, x) block ``sl``: all channels, or those named."""
        if channels is None:
            return decode(self.array[(slice(None), *sl)])
        missing = [c for c in channels if c not in self.channels]
        if missing:
            raise ValueError(
                f"the maps have channels {self.channels}, not {missing}: instance "
                "post-processing needs 'foreground' and 'boundary' maps"
            )
        return decode(self.array[(slice(None), *sl)])[[self.channels.index(c) for c in channels]]
