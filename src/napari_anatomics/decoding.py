"""Choose a model's decoding on the painted data, and say how good the model is.

After training, :func:`tune_decoding` predicts the painted slices with the
trained network and picks how its maps become labels:

* instance models: how seeds are thinned (seed erosion, seed depth, minimum
  seed size) and the minimum object size, each scaled to the painted objects'
  size, by AP@0.5 then AP@0.75; ties go to the stronger thinning (new data has
  fainter contacts than the data a model has seen);
* semantic models: one probability threshold per class, by Dice, ties to the
  threshold whose volume fraction is closest to the painted one (the volume
  fraction is the number users report).

It tunes on the held-out strip (the last ``val_fraction`` of x, never trained
on) when that strip holds enough painted objects, else on all painted data;
then it scores the held-out strip with the chosen decoding. Both go into the
model's ``config.json`` (``decoding``, ``validation``); ``anatomics predict``
and the Auto-label panel decode with it unless told otherwise.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

import cc3d
import numpy as np
import torch

from .evaluate import evaluate
from .inference import predict
from .model_config import ModelConfig
from .model_store import TrainedModel
from .postprocess import postprocess
from .progress import CancelToken, Job, Progress
from .volume import Volume

#: Test-time augmentation used to tune, and stored as the model's default for prediction.
DEFAULT_TTA = 4
#: Tune on the held-out strip only when it holds at least this many painted objects.
MIN_HELD_OUT_OBJECTS = 8
#: Largest region predicted for tuning (voxels, full resolution).
MAX_TUNING_VOXELS = 48e6
#: Semantic thresholds tried.
THRESHOLDS = tuple(round(t, 2) for t in np.arange(0.2, 0.91, 0.05))


def tune_decoding(
    net: torch.nn.Module,
    config: ModelConfig,
    image: Volume,
    labels: Volume,
    x_split: int,
    device: torch.device,
    amp: torch.dtype | None,
    cancel: CancelToken | None = None,
) -> Job[tuple[dict[str, Any], dict[str, Any]] | None]:
    """Pick the decoding of a freshly trained model; score it on the held-out data.

    Parameters
    ----------
    net : torch.nn.Module
        The trained network (eval mode).
    config : ModelConfig
        Its config (``training`` holds ``painted`` sizes and the settings).
    image, labels : Volume
        The training data (full resolution).
    x_split : int
        First held-out x column at model resolution (= width: nothing held out).
    device : torch.device
    amp : torch.dtype or None
        The precision training ended in.
    cancel : CancelToken, optional

    Yields
    ------
    Progress

    Returns
    -------
    (decoding, validation) or None when cancelled
        ``decoding``: keywords for :func:`~napari_anatomics.postprocess.postprocess`
        plus ``tta``; ``validation``: scores on the held-out strip (or the
        training data when nothing was held out, then ``on`` says so).
    """
    model = TrainedModel(net, config, device)
    painted = config.training.get("painted", {})
    zs = np.flatnonzero(np.asarray((labels.data != 0).any(axis=(1, 2)).compute()))
    x0 = x_split * config.downsample[2]
    held = (x0, image.shape[2]) if x0 < image.shape[2] else None
    held_objects = _count_objects(labels, zs, held) if held else 0
    tune_box = held if held and held_objects >= MIN_HELD_OUT_OBJECTS else (0, image.shape[2])
    work = Path(tempfile.mkdtemp(prefix="anatomics-tune-"))
    precision = "float32" if amp is None else "mixed"
    try:
        yield Progress(0, 2, f"predicting the painted data (x {tune_box[0]}-{tune_box[1]})")
        probs, truth = yield from _predict_box(
            model, image, labels, zs, tune_box, work / "tune.zarr", precision, cancel
        )
        if probs is None:
            return None
        yield Progress(1, 2, "trying decodings")
        if config.task == "instance":
            decoding = _tune_instance(probs, truth, painted, work / "tune.zarr")
        else:
            decoding = _tune_semantic(probs, truth, config)
        decoding["tta"] = DEFAULT_TTA
        if held and tune_box != held:
            probs, truth = yield from _predict_box(
                model, image, labels, zs, held, work / "held.zarr", precision, cancel
            )
            if probs is None:
                return None
            where = work / "held.zarr"
        else:
            where = work / "tune.zarr"
        validation = _score(probs, truth, decoding, config, where, image.voxel_size)
        validation["on"] = "held-out strip" if held else "training data (nothing held out)"
        validation["x_range"] = list(held or tune_box)
        validation["tuned_on"] = "held-out strip" if tune_box == held else "all painted data"
        yield Progress(2, 2, "decoding chosen")
        return decoding, validation
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _count_objects(labels: Volume, zs: np.ndarray, box: tuple[int, int]) -> int:
    block = np.asarray(labels.data[zs][:, :, box[0] : box[1]].compute())
    return int(cc3d.connected_components(block, connectivity=6).max())


def _predict_box(model, image, labels, zs, box, out, precision, cancel):
    """Probabilities and painted truth on the annotated slices of an x range."""
    z0, z1 = int(zs.min()), int(zs.max()) + 1
    ny = image.shape[1]
    rows = max(1, int(MAX_TUNING_VOXELS // max(1, (z1 - z0) * (box[1] - box[0]))))
    y0 = max(0, (ny - rows) // 2)
    y1 = min(ny, y0 + rows)
    index = (slice(z0, z1), slice(y0, y1), slice(*box))
    region = Volume(image.data[index], image.voxel_size, "user", name="tuning")
    job = predict(
        model,
        region,
        out,
        tta=DEFAULT_TTA,
        batch=2,
        precision=precision,
        threads=torch.get_num_threads(),
        overwrite=True,
        cancel=cancel,
    )
    probs = yield from job
    if probs is None:
        return None, None
    keep = zs - z0
    truth = np.asarray(labels.data[index].compute())[keep]
    return probs, (truth, keep)


def _decode(probs, where: Path, decoding: dict[str, Any]) -> np.ndarray:
    """Labels of ``probs`` decoded with ``decoding`` (semantic: with ``label_classes``)."""
    settings = {k: v for k, v in decoding.items() if k != "tta"}
    job = postprocess(probs, where, component="trial", overwrite=True, **settings)
    try:
        while True:
            next(job)
    except StopIteration as stop:
        array = stop.value
    labels = np.asarray(array)
    labels_classes = array.attrs.get("label_classes")
    return (labels, np.asarray(labels_classes, np.int64)) if labels_classes else labels


def instance_grid(painted: dict[str, float]) -> list[dict[str, Any]]:
    """Decodings tried for an instance model, gentlest seed thinning first.

    Sizes scale with the painted objects: ``d`` their median in-plane diameter,
    ``v`` their median volume (full-resolution voxels). On the chloroplasts
    (d ~ 80, v ~ 50,000) this is the grid tuned by hand before: erosion 0/8/16,
    depth 0/0.5, minimum seed 0/250, minimum size 2,000.
    """
    d = max(float(painted.get("median_diameter", 0.0)), 10.0)
    v = max(float(painted.get("median_volume", 0.0)), 100.0)
    base = {
        "seed_depth_radius": max(4, round(0.6 * d)),
        "min_size": round(0.04 * v),
    }
    return [
        {**base, "seed_erosion": e, "seed_depth": depth, "min_seed_size": m}
        for e in (0, round(0.1 * d), round(0.2 * d))
        for depth in (0.0, 0.5)
        for m in (0, round(0.005 * v))
    ]


def _tune_instance(probs, truth, painted, where: Path) -> dict[str, Any]:
    labels, keep = truth
    objects = cc3d.connected_components(labels, connectivity=6)
    dust = min(100, max(1, int(0.01 * float(painted.get("median_volume", 0.0)))))
    objects = cc3d.dust(objects, threshold=dust)
    grid = instance_grid(painted)
    scores = []
    for trial in grid:
        ev = evaluate(_decode(probs, where, trial)[keep], objects)
        scores.append((round(ev.instances["0.5"].ap, 3), round(ev.instances["0.75"].ap, 3)))
    best = max(range(len(grid)), key=lambda i: (*scores[i], i))
    return dict(grid[best])


def _tune_semantic(probs, truth, config: ModelConfig) -> dict[str, Any]:
    labels, keep = truth
    maps = np.asarray(probs[:, keep] if probs.ndim == 4 else probs)
    scale = 1 / 255 if maps.dtype == np.uint8 else 1.0
    thresholds = []
    for c, value in enumerate(config.label_values, start=1):
        painted = labels == value
        share = painted.mean()
        p = maps[c].astype(np.float32) * scale
        best = (-1.0, 0.0, 0.5)
        for t in THRESHOLDS:
            pred = p >= t
            inter = np.count_nonzero(pred & painted)
            total = np.count_nonzero(pred) + np.count_nonzero(painted)
            dice = 2 * inter / total if total else 1.0
            gap = -abs(pred.mean() - share)
            best = max(best, (round(dice, 3), gap, t))
        thresholds.append(float(best[2]))
    return {"thresholds": thresholds, "min_size": 0}


def _score(probs, truth, decoding, config: ModelConfig, where: Path, voxel) -> dict[str, Any]:
    labels, keep = truth
    decoded = _decode(probs, where, decoding)
    pred, label_classes = decoded if isinstance(decoded, tuple) else (decoded, None)
    pred = pred[keep]
    out: dict[str, Any] = {"slices": len(keep)}
    if config.task == "instance":
        objects = cc3d.connected_components(labels, connectivity=6)
        ev = evaluate(pred, objects, voxel)
        ap = ev.instances["0.5"]
        out |= {
            "dice": round(ev.foreground_dice, 4),
            "ap50": round(ap.ap, 4),
            "tp_fp_fn": [ap.tp, ap.fp, ap.fn],
            "objects_painted": ev.n_gt,
            "objects_found": ev.n_pred,
        }
        return out
    classes = {}
    for c, (name, value) in enumerate(zip(config.classes, config.label_values), start=1):
        predicted = label_classes[pred] == c
        painted = labels == value
        total = np.count_nonzero(predicted) + np.count_nonzero(painted)
        classes[name] = {
            "dice": round(2 * np.count_nonzero(predicted & painted) / total, 4) if total else 1.0,
            "volume_fraction_painted": round(float(painted.mean()), 5),
            "volume_fraction_found": round(float(predicted.mean()), 5),
        }
    out["classes"] = classes
    out["dice"] = round(float(np.mean([c["dice"] for c in classes.values()])), 4)
    out["objects_found"] = int(np.count_nonzero(np.unique(pred)))
    return out
