"""What a BioImage.IO package made elsewhere means here: window, normalization, outputs.

:func:`zoo_config` reads the description of a package whose tensors fit (one
2D or 3D grey-value input, one output of probabilities) into the
:class:`~napari_anatomics.models.config.ModelConfig` of its TorchScript network
(:mod:`~napari_anatomics.models.zoo_net`):

* the window from the input axes' sizes (a fixed size, or ``min + n * step``
  near our default window), the voxel size from their scale and unit;
* the preprocessing as our normalization: fixed steps (``scale_linear``,
  ``fixed_zero_mean_unit_variance``, ``clip``) fold into ``mean`` and ``std``;
  per-sample ones (``scale_range`` percentiles, ``zero_mean_unit_variance``)
  become per-stack ones, computed once per stack at prediction time so that
  every tile gets the same numbers;
* the output channels decide the task: two channels that read as foreground and
  boundary make an instance model, anything else a semantic one (background
  first, added as ``1 - max`` when the package has none); its ``sigmoid`` or
  ``softmax`` postprocessing is applied, ``binarize`` dropped (we threshold).

A package that does not fit raises :class:`~.bioimageio.PackageError` with one
line naming what and what to do.
"""

from __future__ import annotations

from typing import Any

from ..core.volume import DEFAULT_VOXEL_SIZE
from .bioimageio import PackageError
from .config import ModelConfig
from .zoo_net import TORCHSCRIPT

#: Nanometres per unit of a space axis.
NM_PER_UNIT = {
    "angstrom": 0.1,
    "picometer": 1e-3,
    "nanometer": 1.0,
    "micrometer": 1e3,
    "millimeter": 1e6,
    "centimeter": 1e7,
    "meter": 1e9,
}
#: The window aimed at (z, y, x): our default 2D and 3D windows (see train.auto).
TARGET_2D, TARGET_3D = (1, 256, 256), (8, 128, 128)
BOUNDARY_WORDS = ("boundar", "contour", "edge", "border")
BACKGROUND_NAMES = ("background", "bg", "bkg")
GENERIC_NAMES = ("foreground", "fg", "mask", "object", "objects", "channel0", "channel1")


def zoo_config(descr: Any) -> tuple[ModelConfig, Any]:
    """The model config of a foreign package's TorchScript network.

    Parameters
    ----------
    descr : bioimageio.spec.model.v0_5.ModelDescr
        The package's description.

    Returns
    -------
    ModelConfig
        Architecture ``{"name": "torchscript", ...}`` (see
        :mod:`~napari_anatomics.models.zoo_net`), downsample (1, 1, 1).
    float, list of float or None
        The threshold of the package's ``binarize`` postprocessing (its test
        output is binary), which is not applied here.

    Raises
    ------
    PackageError
        When the package's tensors or processing do not fit.
    """
    if len(descr.inputs) != 1 or len(descr.outputs) != 1:
        raise PackageError(
            f"'{descr.name}' has {len(descr.inputs)} inputs and {len(descr.outputs)} outputs; "
            "napari-anatomics runs networks with one image in and one output: "
            "run it with bioimageio.core"
        )
    inp, out = descr.inputs[0], descr.outputs[0]
    in_axes, out_axes = _names(inp, "input"), _names(out, "output")
    space = {a: axis for a, axis in zip(in_axes, inp.axes) if a in "zyx"}
    dims = len(space)
    channels = _channel_names(inp)
    if len(channels) != 1:
        raise PackageError(
            f"'{descr.name}' takes {len(channels)} input channels ({', '.join(channels)}); "
            "napari-anatomics gives it one grey-value image: run it with bioimageio.core"
        )
    _check_output_size(inp, out, in_axes, out_axes)
    target = TARGET_2D if dims == 2 else TARGET_3D
    window = tuple(_size(space[a], t) if a in space else 1 for a, t in zip("zyx", target))
    voxel, known = _voxel_size(space)
    task, targets, classes, picks = _outputs(descr, out)
    activation, threshold = _postprocessing(out.postprocessing)
    architecture = {
        "name": TORCHSCRIPT,
        "spatial_dims": dims,
        "in_channels": 1,
        "out_channels": len(targets),
        "input_axes": in_axes,
        "output_axes": out_axes,
        "activation": activation,
        "channels": picks,
    }
    config = ModelConfig(
        task=task,
        classes=classes,
        window=window,  # type: ignore[arg-type]
        voxel_size=voxel,
        architecture=architecture,
        targets=targets,
        normalization=_normalization(inp.preprocessing, [a for a in in_axes if a in "zyx"]),
        label_values=list(range(1, len(classes) + 1)) if task == "semantic" else [],
        data={
            "package": str(descr.name),
            "package_id": str(descr.id or ""),
            "voxel_size": "from the package" if known else (
                "not in the package: check the image's voxel size (--voxel-size)"
            ),
        },
        versions={"torch": str(descr.weights.torchscript.pytorch_version)}
        if descr.weights.torchscript is not None
        else {},
        created=str(descr.timestamp),
        name=str(descr.name),
    )
    return config, threshold


def _names(tensor: Any, which: str) -> list[str]:
    """The tensor's axes in our words (batch, channel, z, y, x), in its order."""
    names = []
    for axis in tensor.axes:
        kind, ident = str(axis.type), str(axis.id)
        if kind in ("batch", "channel"):
            names.append(kind)
        elif kind == "space" and ident.lower() in ("z", "y", "x"):
            names.append(ident.lower())
        else:
            raise PackageError(
                f"its {which} '{tensor.id}' has a {kind} axis '{ident}' that napari-anatomics "
                "cannot map onto a (z, y, x) stack: run it with bioimageio.core"
            )
    space = sorted(a for a in names if a in "zyx")
    if space not in (["x", "y"], ["x", "y", "z"]):
        raise PackageError(
            f"its {which} '{tensor.id}' has space axes {space}, not (y, x) or (z, y, x): "
            "run it with bioimageio.core"
        )
    return names


def _channel_names(tensor: Any) -> list[str]:
    for axis in tensor.axes:
        if str(axis.type) == "channel":
            return [str(c) for c in axis.channel_names]
    return [str(tensor.id)]


def _check_output_size(inp: Any, out: Any, in_axes: list[str], out_axes: list[str]) -> None:
    """Each output space axis has its input axis' size and scale (the tiles add up)."""
    ids = {a: axis for a, axis in zip(in_axes, inp.axes)}
    for name, axis in zip(out_axes, out.axes):
        if name not in "zyx":
            continue
        if name not in ids:
            raise PackageError(f"its output has a {name} axis its input lacks")
        source, size = ids[name], axis.size
        same = (
            getattr(size, "tensor_id", None) == inp.id
            and str(size.axis_id).lower() == name
            and int(size.offset) == 0
        ) or (isinstance(size, int) and size == source.size)
        if not same or abs(float(axis.scale) - float(source.scale)) > 1e-6 * float(source.scale):
            raise PackageError(
                f"its output is not the size and resolution of its input along {name}; "
                "napari-anatomics blends tiles of equal size: run it with bioimageio.core"
            )


def _size(axis: Any, target: int) -> int:
    """A valid size of an input axis near ``target``: fixed, or ``min + n * step``."""
    size = axis.size
    if isinstance(size, int):
        return size
    if hasattr(size, "step"):
        step, low = int(size.step), int(size.min)
        return low if step == 0 else low + step * max(0, round((target - low) / step))
    raise PackageError(
        f"the size of its input axis '{axis.id}' refers to another tensor; "
        "napari-anatomics needs a fixed or parameterized size"
    )


def _voxel_size(space: dict[str, Any]) -> tuple[tuple[float, float, float], bool]:
    """(z, y, x) nm from the axes' scale and unit; the default when a unit is missing."""
    sizes = list(DEFAULT_VOXEL_SIZE)
    for k, name in enumerate("zyx"):
        axis = space.get(name)
        if axis is None:
            continue
        unit = str(axis.unit) if axis.unit is not None else None
        if unit not in NM_PER_UNIT:
            return DEFAULT_VOXEL_SIZE, False
        sizes[k] = float(axis.scale) * NM_PER_UNIT[unit]
    return (sizes[0], sizes[1], sizes[2]), True


def _scalar(value: Any, what: str) -> float:
    values = value if isinstance(value, (list, tuple)) else [value]
    if len(values) != 1:
        raise PackageError(f"its {what} has one value per channel; it takes one channel")
    return float(values[0])


def _normalization(steps: list[Any], space: list[str]) -> dict[str, Any]:
    """Our normalization for the input preprocessing (see the module docstring)."""
    per: dict[str, Any] = {}
    gain, offset, clip = 1.0, 0.0, None
    for step in steps:
        kind, kw = str(step.id), getattr(step, "kwargs", None)
        if kind == "ensure_dtype":
            if not str(kw.dtype).startswith("float"):
                raise PackageError(f"its preprocessing casts the input to {kw.dtype}")
            continue
        if clip is not None:
            raise PackageError(f"its preprocessing has {kind} after clip, which cannot be folded")
        if kind in ("scale_range", "zero_mean_unit_variance"):
            axes = {str(a).lower() for a in kw.axes} if kw.axes is not None else set(space)
            if per or (gain, offset) != (1.0, 0.0) or not set(space) <= axes:
                raise PackageError(
                    f"its preprocessing {kind} (axes {sorted(axes)}) is not one per image; "
                    "napari-anatomics computes it once per stack"
                )
            per = {"mode": "meanstd", "eps": float(kw.eps)}
            if kind == "scale_range":
                per = {"mode": "percentile", "min": float(kw.min_percentile),
                       "max": float(kw.max_percentile), "eps": float(kw.eps)}
        elif kind == "scale_linear":
            g, o = _scalar(kw.gain, "scale_linear"), _scalar(kw.offset, "scale_linear")
            gain, offset = g * gain, g * offset + o
        elif kind == "fixed_zero_mean_unit_variance":
            std = _scalar(kw.std, kind) + 1e-6  # bioimageio.core's eps
            gain, offset = gain / std, (offset - _scalar(kw.mean, kind)) / std
        elif kind == "clip" and kw.min_percentile is None and kw.max_percentile is None:
            clip = [kw.min, kw.max]
        else:
            raise PackageError(
                f"its preprocessing '{kind}' is not one napari-anatomics can repeat on tiles "
                "of a stack: run it with bioimageio.core"
            )
    if gain == 0:
        raise PackageError("its preprocessing scales the input by 0")
    if per:
        norm = {**per, **({"gain": gain, "offset": offset} if (gain, offset) != (1, 0) else {})}
    else:
        norm = {"mean": -offset / gain, "std": 1.0 / gain}
    return {**norm, "clip": clip} if clip is not None else norm


def _outputs(descr: Any, out: Any) -> tuple[str, list[str], list[str], list[Any]]:
    """Task, targets, classes and the channel picks of :class:`~.zoo_net.ZooNet`."""
    names = _channel_names(out)
    low = [n.lower() for n in names]
    boundary = [i for i, n in enumerate(low) if any(w in n for w in BOUNDARY_WORDS)]
    text = " ".join([descr.description, out.description, *map(str, descr.tags)]).lower()
    if len(names) == 2 and (len(boundary) == 1 or (not boundary and "boundar" in text)):
        edge = boundary[0] if boundary else 1
        core = 1 - edge
        name = names[core] if low[core] not in GENERIC_NAMES else "object"
        return "instance", ["foreground", "boundary"], [name], [core, edge]
    background = [i for i, n in enumerate(low) if n in BACKGROUND_NAMES]
    if background and len(names) > 1:
        rest = [i for i in range(len(names)) if i != background[0]]
        picks: list[Any] = [background[0], *rest]
    else:
        rest = list(range(len(names)))
        picks = [rest, *rest]  # background: 1 - max of the classes
    classes = [names[i] for i in rest]
    return "semantic", ["background", *classes], classes, picks


def _postprocessing(steps: list[Any]) -> tuple[str | None, Any]:
    """The activation to apply (sigmoid, softmax over channels) and a dropped threshold."""
    activation, threshold = None, None
    for step in steps:
        kind, kw = str(step.id), getattr(step, "kwargs", None)
        if kind == "ensure_dtype" and str(kw.dtype).startswith("float"):
            continue
        if kind in ("sigmoid", "softmax") and activation is None and threshold is None:
            if kind == "softmax" and str(kw.axis) != "channel":
                raise PackageError(f"its output softmax runs over '{kw.axis}', not channels")
            activation = kind
        elif kind == "binarize" and threshold is None:
            threshold = kw.threshold
        else:
            raise PackageError(
                f"its output postprocessing '{kind}' is not one napari-anatomics applies "
                "(sigmoid, softmax, binarize): run it with bioimageio.core"
            )
    return activation, threshold
