"""The readable configuration stored in every model folder (``config.json``).

This is the contract between training (which writes it) and prediction
(which reads it): what the network expects as input and what its output
channels mean. It is plain JSON so a user can read it and a lab can share it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ..core.files import atomic_path

Task = Literal["semantic", "instance"]
CONFIG_NAME = "config.json"


@dataclass
class ModelConfig:
    """Everything needed to rebuild a model and use it on new data.

    Parameters
    ----------
    task : {"semantic", "instance"}
        Semantic: one output channel per class (background first), softmax.
        Instance: one structure type; sigmoid channels named by ``targets``
        (``"foreground"``, ``"boundary"``, optionally ``"distance"``).
    classes : list of str
        Names of the non-background classes (instance: one name).
    label_values : list of int
        For semantic models, the label value painted for each class.
    window : tuple of int
        Network input size (z, y, x) in voxels *at model resolution*
        (after ``downsample``). 2D models have z = 1.
    voxel_size : tuple of float
        Voxel size (z, y, x, nm) of the training data at full resolution.
    downsample : tuple of int
        Factors (z, y, x) by which the input is reduced before the network;
        prediction reduces the same way and restores full resolution.
    normalization : dict
        ``{"mean": m, "std": s}`` of the training image (raw grey values):
        the network sees ``(x - mean) / std`` (then clipped to ``"clip": [lo, hi]``
        when given). Models imported from other tools may instead ask for numbers
        computed once per stack (``"mode": "percentile"`` or ``"meanstd"``, see
        :func:`resolve_normalization`).
    architecture : dict
        ``{"name": ..., "spatial_dims": 2 or 3, "in_channels": 1,
        "out_channels": n, ...}`` plus the builder's own keys (width, depth, ...).
    targets : list of str
        Meaning of each output channel.
    decoding : dict
        How prediction turns this model's maps into labels, chosen on the
        painted data after training (keywords of
        :func:`napari_anatomics.segment.postprocess.postprocess`; empty: its defaults).
    validation : dict
        How good the model is on the held-out painted data (Dice, AP@0.5...).
    """

    task: Task
    classes: list[str]
    window: tuple[int, int, int]
    voxel_size: tuple[float, float, float]
    architecture: dict[str, Any]
    targets: list[str]
    normalization: dict[str, Any] = field(default_factory=lambda: {"mean": 0.0, "std": 1.0})
    downsample: tuple[int, int, int] = (1, 1, 1)
    label_values: list[int] = field(default_factory=list)
    iterations: int = 0
    data: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    decoding: dict[str, Any] = field(default_factory=dict)
    validation: dict[str, Any] = field(default_factory=dict)
    created: str = ""
    name: str = ""

    def __post_init__(self) -> None:
        if self.task not in ("semantic", "instance"):
            raise ValueError(f"task must be 'semantic' or 'instance', not {self.task!r}")
        self.window = tuple(int(v) for v in self.window)  # type: ignore[assignment]
        self.voxel_size = tuple(float(v) for v in self.voxel_size)  # type: ignore[assignment]
        self.downsample = tuple(int(v) for v in self.downsample)  # type: ignore[assignment]

    @property
    def spatial_dims(self) -> int:
        """2 for slice-wise models, 3 for volumetric ones."""
        return int(self.architecture.get("spatial_dims", 3))

    @property
    def out_channels(self) -> int:
        """Number of network output channels."""
        return len(self.targets)

    @property
    def model_voxel_size(self) -> tuple[float, float, float]:
        """Voxel size (z, y, x, nm) the network sees, after downsampling."""
        return tuple(v * f for v, f in zip(self.voxel_size, self.downsample))  # type: ignore[return-value]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ModelConfig:
        """Build from a dict, ignoring unknown keys from newer versions."""
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in values.items() if k in known})

    def save(self, folder: str | Path) -> Path:
        """Write ``config.json`` into ``folder`` atomically; return its path."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / CONFIG_NAME
        with atomic_path(path, overwrite=True) as tmp:
            tmp.write_text(json.dumps(self.to_dict(), indent=2, default=_jsonable))
        return path

    @classmethod
    def load(cls, folder: str | Path) -> ModelConfig:
        """Read ``config.json`` from a model folder."""
        path = Path(folder) / CONFIG_NAME
        if not path.is_file():
            raise FileNotFoundError(
                f"{folder} is not a model folder: it has no {CONFIG_NAME} "
                "(choose the folder `anatomics train --out` wrote)"
            )
        try:
            values = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise ValueError(
                f"{path} is not valid JSON ({err}); the model folder is damaged"
            ) from None
        return cls.from_dict(values)


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot store {type(value).__name__} in a model config")


#: Normalizations whose numbers come from the stack: percentiles, or mean and std.
STACK_MODES = ("percentile", "meanstd")
#: The most voxels :func:`stack_sample` reads.
SAMPLE_VOXELS = 2**22
#: The most slices :func:`stack_sample` reads.
SAMPLE_SLICES = 16


def normalize(block: np.ndarray, normalization: dict[str, Any]) -> np.ndarray:
    """Apply a model's intensity normalization to raw grey values.

    Parameters
    ----------
    block : ndarray
        Raw image voxels of any numeric dtype.
    normalization : dict
        ``{"mean": m, "std": s}`` as stored in :class:`ModelConfig`, optionally with
        ``"clip": [lo, hi]`` (None: no bound); a per-stack one must be resolved first
        (:func:`resolve_normalization`).

    Returns
    -------
    ndarray of float32
        ``(block - mean) / std``, clipped when asked.
    """
    if per_stack(normalization):
        raise ValueError(
            f"the normalization {normalization} needs numbers from the stack: "
            "resolve it first (resolve_normalization)"
        )
    mean = float(normalization.get("mean", 0.0))
    std = float(normalization.get("std", 1.0)) or 1.0
    out = (np.asarray(block, dtype=np.float32) - np.float32(mean)) / np.float32(std)
    clip = normalization.get("clip")
    if clip is not None:  # [lo, hi], None: unbounded
        low, high = (np.float32(v) if v is not None else None for v in clip)
        out = np.clip(out, low, high)
    return out


def per_stack(normalization: dict[str, Any]) -> bool:
    """True when a normalization's numbers are computed from each stack."""
    return normalization.get("mode") in STACK_MODES


def stack_sample(data: Any) -> np.ndarray:
    """A small sample of a lazy (z, y, x) stack for its intensity statistics.

    At most :data:`SAMPLE_SLICES` slices evenly spaced in z, each read with one
    in-plane stride so that the sample holds at most :data:`SAMPLE_VOXELS`
    voxels; a small stack is read whole.

    Parameters
    ----------
    data : array-like
        The (z, y, x) stack (numpy, dask or zarr); only the sample is read.

    Returns
    -------
    ndarray
        The sampled voxels, (slices, y', x').
    """
    z, y, x = data.shape
    slices = np.unique(np.linspace(0, z - 1, min(z, SAMPLE_SLICES)).round().astype(int))
    stride = max(1, int(np.ceil(np.sqrt(len(slices) * y * x / SAMPLE_VOXELS))))
    planes = []
    for k in slices:
        plane = data[int(k), ::stride, ::stride]
        planes.append(np.asarray(plane.compute() if hasattr(plane, "compute") else plane))
    return np.stack(planes)


def resolve_normalization(normalization: dict[str, Any], data: Any) -> dict[str, Any]:
    """The fixed normalization of one stack: per-stack numbers computed once, from a sample.

    A per-stack normalization is ``{"mode": "percentile", "min": p, "max": q}``
    (``(x - P_p) / (P_q - P_p + eps)``) or ``{"mode": "meanstd"}``
    (``(x - mean) / (std + eps)``), optionally followed by ``gain`` and
    ``offset`` (``y * gain + offset``) and ``"clip": [lo, hi]``. Every tile of
    the stack then gets the same numbers, computed on :func:`stack_sample`.

    Parameters
    ----------
    normalization : dict
        A model's normalization; a fixed one is returned as is.
    data : array-like
        The (z, y, x) stack.

    Returns
    -------
    dict
        ``{"mean": m, "std": s}`` (and ``"clip"``) for :func:`normalize`.
    """
    if not per_stack(normalization):
        return dict(normalization)
    sample = stack_sample(data).astype(np.float64)
    eps = float(normalization.get("eps", 1e-6))
    if normalization["mode"] == "percentile":
        low, high = np.percentile(
            sample, [float(normalization.get("min", 0.0)), float(normalization.get("max", 100.0))]
        )
        centre, spread = float(low), float(high - low) + eps
    else:
        centre, spread = float(sample.mean()), float(sample.std()) + eps
    std = spread / float(normalization.get("gain", 1.0))
    resolved: dict[str, Any] = {
        "mean": centre - float(normalization.get("offset", 0.0)) * std,
        "std": std,
    }
    if normalization.get("clip") is not None:
        resolved["clip"] = list(normalization["clip"])
    return resolved


def window_fits(window: Sequence[int], shape: Sequence[int]) -> bool:
    """True when a (z, y, x) window fits inside a (z, y, x) shape."""
    return all(w <= s for w, s in zip(window, shape))
