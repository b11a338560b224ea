"""Checks run before training starts: every problem is reported in plain words.

The data itself is checked by :func:`napari_anatomics.datacheck.checks.check` (shapes,
label types, no annotated slice, semantic labels given to the instance task
and the reverse); this module adds what depends on the training settings:
window against the volume at model resolution and against the network's
down-sampling, downsampling factors, validation split, classes.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path

import dask.array as da

from ..core.runtime import check_precision
from ..core.versions import versions
from ..core.volume import Volume
from ..datacheck.checks import check
from ..models import ARCHITECTURES, network_factor, plan_architecture
from ..models.config import CONFIG_NAME, ModelConfig
from .auto import default_window
from .recipe import TrainConfig


def check_training_data(config: TrainConfig, image: Volume, labels: Volume) -> ModelConfig:
    """Validate settings and data; return the :class:`ModelConfig` to train.

    Raises
    ------
    ValueError
        Naming the problem and the fix.
    """
    _check_settings(config)
    if image.ndim != 3 or labels.ndim != 3:
        raise ValueError(
            f"training needs (z, y, x) stacks; got image {image.shape} and labels "
            f"{labels.shape} (a single 2D image is a stack of one slice: shape (1, y, x))"
        )
    if image.shape != labels.shape:
        raise ValueError(
            f"image {_name(image)} has shape (z, y, x) {image.shape} but labels "
            f"{_name(labels)} have {labels.shape}: they must cover the same voxels "
            "(paint the labels on this image)"
        )
    label_data = labels.data
    if config.ignore_value is not None:
        label_data = da.where(label_data == config.ignore_value, 0, label_data)
    report = check(image, Volume(label_data, labels.voxel_size, name=labels.name), config.task)
    if not report.usable:
        problems = "; ".join(f.message for f in report.errors)
        raise ValueError(f"the training data is not usable: {problems}")
    voxel = tuple(float(v) for v in (config.voxel_size or image.voxel_size))
    model_shape = tuple(s // f for s, f in zip(image.shape, config.downsample))
    if min(model_shape) < 1:
        raise ValueError(
            f"downsample {config.downsample} is larger than the volume {image.shape}: "
            "use smaller factors"
        )
    flat = config.architecture == "unet2d"
    requested = config.window
    default = default_window(config.architecture)
    window = tuple(requested or (min(d, s) for d, s in zip(default, model_shape)))
    if flat and window[0] != 1:
        raise ValueError(
            f"2D models take windows with z = 1, not {window}: use 1,{window[1]},{window[2]}"
        )
    model_voxel = tuple(v * f for v, f in zip(voxel, config.downsample))
    classes, values = _classes(config, report.histogram)
    targets = training_targets(config, classes)
    arch = plan_architecture(
        config.architecture,
        len(targets),
        model_voxel,
        window,
        width=config.width,
        depth=config.depth,
        norm=config.norm,
        encoder=config.encoder,
    )
    factor = network_factor(arch)
    if requested is None:
        window = tuple(max(f, w // f * f) for w, f in zip(window, factor))
    too_big = [a for a in range(3) if window[a] > model_shape[a]]
    if too_big:
        raise ValueError(
            f"window (z, y, x) {window} is larger than the volume at model resolution "
            f"{model_shape} (shape {image.shape} reduced by {config.downsample}): use a "
            f"window of at most {model_shape}, or less downsampling"
        )
    if any(w % f for w, f in zip(window, factor)):
        fit = tuple(max(f, w // f * f) for w, f in zip(window, factor))
        raise ValueError(
            f"window (z, y, x) {window} does not suit the network: each size must be a "
            f"multiple of its down-sampling {factor} (depth {config.depth}); try {fit}"
        )
    data = {
        "image": image.source,
        "labels": labels.source,
        "shape": list(image.shape),
        "annotated_slices": report.annotated_slices,
    }
    return ModelConfig(
        task=config.task,
        classes=classes,
        window=window,
        voxel_size=voxel,
        architecture=arch,
        targets=targets,
        downsample=config.downsample,
        label_values=values,
        data=data,
        training=asdict(config),
        versions=versions(),
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )


def _check_settings(config: TrainConfig) -> None:
    config.check_ranges()
    if config.task not in ("semantic", "instance"):
        raise ValueError(f"task must be 'semantic' or 'instance', not {config.task!r}")
    if config.architecture not in ARCHITECTURES:
        raise ValueError(
            f"architecture must be one of {ARCHITECTURES}, not {config.architecture!r}"
        )
    if len(config.downsample) != 3 or min(config.downsample) < 1:
        raise ValueError(
            f"downsample must be three factors >= 1 (z, y, x), not {config.downsample}"
        )
    for name in ("iterations", "batch", "save_every", "width", "depth"):
        if int(getattr(config, name)) < 1:
            raise ValueError(f"{name} must be at least 1, not {getattr(config, name)}")
    if config.window is not None and (len(config.window) != 3 or min(config.window) < 1):
        raise ValueError(f"window must be three positive sizes (z, y, x), not {config.window}")
    if config.init_from and not (Path(config.init_from) / CONFIG_NAME).is_file():
        raise ValueError(f"cannot fine-tune from {config.init_from}: it is not a model folder")
    check_precision(config.precision)


def _classes(config: TrainConfig, histogram: dict) -> tuple[list[str], list[int]]:
    if config.task == "instance":
        names = config.class_names or ["object"]
        if len(names) != 1:
            raise ValueError(f"an instance model learns one structure type, not {names}")
        return list(names), []
    painted = sorted(int(v) for v in histogram if v != 0 and v != config.ignore_value)
    values = [int(v) for v in (config.class_values or painted)]
    names = config.class_names or [f"class_{v}" for v in values]
    if len(names) != len(values):
        raise ValueError(f"{len(names)} class names for {len(values)} class values {values}")
    missing = sorted(set(painted) - set(values))
    if missing:
        raise ValueError(
            f"label values {missing} are painted but are not among the class values "
            f"{values}: add them, or set them to 0 or to the ignore value"
        )
    return list(names), values


def _name(volume: Volume) -> str:
    return repr(volume.source or volume.name)


def training_targets(config: TrainConfig, classes: list[str]) -> list[str]:
    """The output channels a run with these settings learns, in order.

    The window does not change the plan here: rounding it down to the network's
    down-sampling keeps the same number of z poolings (see ``plan_levels``).
    """
    if config.task == "semantic":
        return ["background", *classes]
    return ["foreground", "boundary"] + (["distance"] if config.distance else [])
