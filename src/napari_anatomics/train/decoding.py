"""Choose a model's decoding on the painted data, and say how good the model is.

After training, :func:`tune_decoding` predicts the painted slices with the
trained network and picks how its maps become labels:

* instance models: how seeds are thinned (seed erosion, seed depth, minimum
  seed size) and the minimum object size, each scaled to the painted objects'
  size, by AP@0.5; among the trials within :data:`AP_TOLERANCE` of the best it
  takes the strongest thinning, largest minimum seed first, then deepest seed
  depth, then erosion: new data has fainter contacts than the data a model has
  seen, and on its own training data a model's maps flatter the gentle
  decodings. Dropping small seeds can only remove false objects and false
  splits; a deeper seed depth also cuts elongated objects with a waist in two,
  so it comes second;
* semantic models: one probability threshold per class, by Dice, ties to the
  threshold whose volume fraction is closest to the painted one (the volume
  fraction is the number users report).

It tunes on the held-out tiles (:mod:`~napari_anatomics.train.holdout`, never
trained on) when they hold enough painted objects (voxels of each class for
semantic models), else on all painted data; then it scores the held-out
tiles with the chosen decoding. Both go into the
model's ``config.json`` (``decoding``, ``validation``); the decoding is a
:class:`~napari_anatomics.segment.config.SegmentConfig` (plus the prediction's
``tta``), which ``anatomics predict`` and the Auto-label panel use unless told
otherwise.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

import cc3d
import numpy as np
import torch

from ..analyze.evaluate import evaluate
from ..core.progress import CancelToken, Job, Progress, run_job
from ..core.volume import Volume
from ..io.probabilities import decode
from ..models.config import ModelConfig
from ..models.store import TrainedModel
from ..predict.config import PredictConfig
from ..predict.tiled import predict
from ..segment.config import SegmentConfig
from ..segment.postprocess import postprocess
from .holdout import full_resolution

#: Test-time augmentation used to tune, and stored as the model's default for prediction.
DEFAULT_TTA = 4
#: Tune instance decodings on the held-out tiles only when they hold this many objects...
MIN_HELD_OUT_OBJECTS = 8
#: ... and semantic thresholds when they hold this many painted voxels of the class.
MIN_HELD_OUT_VOXELS = 2000
#: Instance trials within this AP@0.5 of the best count as equal (the strongest thinning
#: wins; on the chloroplast benchmark's 33 painted objects, two objects are 0.06). On the saved
#: maps of eight chloroplast runs 0.07 and 0.08 made the same choices; 0.06 one worse and 0.05
#: two (a lone best trial at seed depth 0.7 that split objects), 0.09 and over worse in six.
#: Picked looking at those runs' test strips: the benchmark's later fresh runs are its test.
AP_TOLERANCE = 0.07
#: Largest region predicted for tuning (voxels, full resolution).
MAX_TUNING_VOXELS = 48e6
#: Semantic thresholds tried (up to 0.98: on the fly mitochondria the best held-out
#: threshold was the old grid's edge, 0.9, and the maps still over-covered new slices).
THRESHOLDS = (*(round(t, 2) for t in np.arange(0.2, 0.91, 0.05)), 0.95, 0.98)


def tune_decoding(
    net: torch.nn.Module,
    config: ModelConfig,
    image: Volume,
    labels: Volume,
    held: np.ndarray | None,
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
    held : ndarray of bool or None
        (y, x) held-out tiles at model resolution (:mod:`~napari_anatomics.train.holdout`).
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
        ``decoding``: :class:`~napari_anatomics.segment.config.SegmentConfig`
        settings (read back with :meth:`~napari_anatomics.segment.config.SegmentConfig.tuned`)
        plus the prediction's ``tta``; ``validation``: scores on the held-out tiles (or the
        training data when nothing was held out, then ``on`` says so).
    """
    model = TrainedModel(net, config, device)
    painted = config.training.get("painted", {})
    zs = np.flatnonzero(np.asarray((labels.data != 0).any(axis=(1, 2)).compute()))
    work = Path(tempfile.mkdtemp(prefix="anatomics-tune-"))
    precision = "float32" if amp is None else "mixed"
    try:
        yield Progress(0, 2, "predicting the painted slices")
        region = _painted_region(image, zs)
        settings = PredictConfig(
            tta=DEFAULT_TTA, batch=2, precision=precision, threads=torch.get_num_threads()
        )
        probs = yield from predict(
            model,
            Volume(image.data[region], image.voxel_size, "user", name="tuning"),
            work / "tune.zarr",
            settings,
            overwrite=True,
            cancel=cancel,
        )
        if probs is None:
            return None
        keep = zs - region[0].start
        truth = np.asarray(labels.data[region].compute())[keep]
        mask = None
        if held is not None:
            mask = full_resolution(held, config.downsample, image.shape)[region[1], region[2]]
        yield Progress(1, 2, "trying decodings")
        where = work / "tune.zarr"
        if config.task == "instance":
            decoding, tuned_on = _tune_instance(probs, truth, keep, mask, painted, where)
        else:
            decoding, tuned_on = _tune_semantic(probs, truth, keep, mask, config)
        decoding["tta"] = DEFAULT_TTA
        validation = _score(probs, truth, keep, mask, decoding, config, where, image.voxel_size)
        validation["on"] = "the held-out tiles" if mask is not None else "the training data"
        validation["tuned_on"] = tuned_on
        yield Progress(2, 2, "decoding chosen")
        return decoding, validation
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _painted_region(image: Volume, zs: np.ndarray) -> tuple[slice, slice, slice]:
    """The annotated z range, all x, and as many central rows as the budget allows."""
    z0, z1 = int(zs.min()), int(zs.max()) + 1
    ny, nx = image.shape[1:]
    rows = max(1, int(MAX_TUNING_VOXELS // max(1, (z1 - z0) * nx)))
    y0 = max(0, (ny - rows) // 2)
    return slice(z0, z1), slice(y0, min(ny, y0 + rows)), slice(0, nx)


def _region(mask: np.ndarray | None, shape) -> np.ndarray:
    """The (z, y, x) voxels a score counts: the (y, x) ``mask`` on every slice, or all."""
    return np.ones(shape, bool) if mask is None else np.broadcast_to(mask, shape)


def _masked(array: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """``array`` (z, y, x) with the voxels outside the (y, x) ``mask`` set to 0."""
    return array if mask is None else np.where(mask[None], array, 0)


def _decode(probs, where: Path, decoding: dict[str, Any]) -> np.ndarray:
    """Labels of ``probs`` decoded with ``decoding`` (semantic: with ``label_classes``)."""
    config = SegmentConfig.tuned(decoding)
    array = run_job(postprocess(probs, where, config, component="trial", overwrite=True))
    labels = np.asarray(array)
    labels_classes = array.attrs.get("label_classes")
    return (labels, np.asarray(labels_classes, np.int64)) if labels_classes else labels


def instance_grid(painted: dict[str, float]) -> list[dict[str, Any]]:
    """Decodings tried for an instance model, gentlest seed thinning first.

    Sizes scale with the painted objects: ``d`` their median in-plane diameter,
    ``v`` their median volume (full-resolution voxels). On the chloroplasts
    (d ~ 95, v ~ 70,000): erosion 0/9, depth 0/0.5/0.7, minimum seed
    0/352/704/1,409, minimum size 2,817 (erosion 0.2 d never beat 0.1 d there;
    depth 0.5 with minimum seeds of 0.01-0.02 v did best on unseen data; depth 0.7 split
    elongated ones).
    """
    d = max(float(painted.get("median_diameter", 0.0)), 10.0)
    v = max(float(painted.get("median_volume", 0.0)), 100.0)
    base = {
        "seed_depth_radius": max(4, round(0.6 * d)),
        "min_size": round(0.04 * v),
    }
    return [
        {**base, "seed_erosion": e, "seed_depth": depth, "min_seed_size": m}
        for e in (0, round(0.1 * d))
        for depth in (0.0, 0.5, 0.7)
        for m in (0, round(0.005 * v), round(0.01 * v), round(0.02 * v))
    ]


def _objects(labels: np.ndarray, painted: dict[str, float]) -> np.ndarray:
    """Connected painted objects; painting slips (a few voxels) left out."""
    objects = cc3d.connected_components(labels, connectivity=6)
    dust = min(100, max(1, int(0.01 * float(painted.get("median_volume", 0.0)))))
    return cc3d.dust(objects, threshold=dust)


def _strength(trial: dict[str, Any]) -> tuple[float, int, int]:
    """How strongly a trial thins seeds: minimum seed, then depth, then erosion."""
    return trial["min_seed_size"], trial["seed_depth"], trial["seed_erosion"]


def choose_trial(grid: list[dict[str, Any]], scores: list[float]) -> int:
    """The index of the strongest-thinning trial within :data:`AP_TOLERANCE` of the best.

    Parameters
    ----------
    grid : list of dict
        Trials of :func:`instance_grid`.
    scores : list of float
        Their AP@0.5 on the painted data.
    """
    near = [i for i, ap in enumerate(scores) if ap >= max(scores) - AP_TOLERANCE]
    return max(near, key=lambda i: (_strength(grid[i]), scores[i]))


def _tune_instance(probs, truth, keep, mask, painted, where: Path):
    """The strongest-thinning grid setting within :data:`AP_TOLERANCE` of the best AP@0.5."""
    objects = _objects(truth, painted)
    held_objects = len(np.unique(_masked(objects, mask))) - 1 if mask is not None else 0
    if held_objects < MIN_HELD_OUT_OBJECTS:
        mask, tuned_on = None, "all the painted data"
    else:
        tuned_on = "the held-out tiles"
    grid = instance_grid(painted)
    scores = []
    for trial in grid:
        found = _masked(_decode(probs, where, trial)[keep], mask)
        scores.append(evaluate(found, _masked(objects, mask)).instances["0.5"].ap)
    return dict(grid[choose_trial(grid, scores)]), tuned_on


def _tune_semantic(probs, truth, keep, mask, config: ModelConfig):
    """One threshold per class: best Dice, ties to the closest volume fraction."""
    maps = np.asarray(probs)[:, keep]
    region = _region(mask, truth.shape)
    tuned_on = "the held-out tiles" if mask is not None else "all the painted data"
    thresholds = []
    for c, value in enumerate(config.label_values, start=1):
        inside = region
        if np.count_nonzero((truth == value) & region) < MIN_HELD_OUT_VOXELS:
            inside, tuned_on = np.ones(truth.shape, bool), "all the painted data"
        painted = (truth == value)[inside]
        p = decode(maps[c][inside])
        best = (-1.0, 0.0, 0.5)
        for t in THRESHOLDS:
            pred = p >= t
            total = np.count_nonzero(pred) + np.count_nonzero(painted)
            dice = 2 * np.count_nonzero(pred & painted) / total if total else 1.0
            best = max(best, (round(dice, 3), -abs(pred.mean() - painted.mean()), t))
        thresholds.append(float(best[2]))
    return {"thresholds": thresholds, "min_size": 0}, tuned_on


def _score(probs, truth, keep, mask, decoding, config, where: Path, voxel) -> dict[str, Any]:
    """Scores of the chosen decoding on the held-out tiles (or all painted data)."""
    decoded = _decode(probs, where, decoding)
    found, label_classes = decoded if isinstance(decoded, tuple) else (decoded, None)
    found = _masked(found[keep], mask)
    out: dict[str, Any] = {"slices": len(keep)}
    if config.task == "instance":
        objects = _masked(_objects(truth, config.training.get("painted", {})), mask)
        ev = evaluate(found, objects, voxel)
        ap = ev.instances["0.5"]
        return out | {
            "dice": round(ev.foreground_dice, 4),
            "ap50": round(ap.ap, 4),
            "tp_fp_fn": [ap.tp, ap.fp, ap.fn],
            "objects_painted": ev.n_gt,
            "objects_found": ev.n_pred,
        }
    region = _region(mask, truth.shape)
    classes = {}
    for c, (name, value) in enumerate(zip(config.classes, config.label_values), start=1):
        predicted = (label_classes[found] == c)[region]
        painted = (truth == value)[region]
        total = np.count_nonzero(predicted) + np.count_nonzero(painted)
        classes[name] = {
            "dice": round(2 * np.count_nonzero(predicted & painted) / total, 4) if total else 1.0,
            "volume_fraction_painted": round(float(painted.mean()), 5),
            "volume_fraction_found": round(float(predicted.mean()), 5),
        }
    out["classes"] = classes
    out["dice"] = round(float(np.mean([c["dice"] for c in classes.values()])), 4)
    out["objects_found"] = int(np.count_nonzero(np.unique(found)))
    return out
