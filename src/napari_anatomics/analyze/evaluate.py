"""Segmentation metrics against ground truth, all from one contingency table.

The table counts voxels per (ground-truth id, predicted id) pair; it is built
in one pass (block by block for dask/zarr arrays) and every metric is derived
from it, with no per-label pass:

* semantic: IoU and Dice of the foreground, and per class when the classes of
  the instances are known (or when the arrays are class maps);
* instances: one-to-one matching of predicted to true objects by IoU (greedy
  by decreasing IoU, which is the optimal matching for thresholds >= 0.5;
  Hungarian assignment below 0.5), giving precision, recall, F1 and
  ``ap = TP / (TP + FP + FN)`` (the "average precision" of the DSB 2018 /
  StarDist / Cellpose papers) at each IoU threshold;
* adapted Rand error (as :func:`skimage.metrics.adapted_rand_error`: voxels
  that are background in the ground truth are ignored);
  ``rand_precision`` falls with false merges and ``rand_recall`` with false
  splits (as in the CREMI challenge; scikit-image swaps the two names);
* variation of information split / merge (conditional entropies in bits,
  as :func:`skimage.metrics.variation_of_information`, over all voxels):
  ``vi_split = H(pred | gt)`` grows with over-segmentation, ``vi_merge =
  H(gt | pred)`` with merged objects.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import fastremap
import numpy as np
from scipy.optimize import linear_sum_assignment

from ..core.volume import Volume, check_voxel_size
from .blockstats import blocks as _blocks
from .blockstats import check_labels as _check_labels
from .blockstats import read as _read
from .blockstats import unwrap as _unwrap


@dataclass
class Contingency:
    """Voxel counts per (ground-truth id, predicted id) pair, background included."""

    gt: np.ndarray
    pred: np.ndarray
    count: np.ndarray

    def sizes(self, which: str) -> tuple[np.ndarray, np.ndarray]:
        """Ids and voxel counts of ``"gt"`` or ``"pred"`` (background included)."""
        ids, inv = np.unique(getattr(self, which), return_inverse=True)
        return ids, np.bincount(inv, weights=self.count, minlength=len(ids)).astype(np.int64)


@dataclass
class InstanceScores:
    """Detection scores at one IoU threshold (one-to-one matching)."""

    iou_threshold: float
    tp: int
    fp: int
    fn: int
    precision: float
    recall: float
    f1: float
    ap: float
    mean_matched_iou: float


@dataclass
class Evaluation:
    """Everything :func:`evaluate` computes; ``to_dict()`` for JSON."""

    foreground_iou: float
    foreground_dice: float
    classes: dict[str, dict[str, float]]
    instances: dict[str, InstanceScores]
    adapted_rand_error: float
    rand_precision: float
    rand_recall: float
    vi_split: float
    vi_merge: float
    n_pred: int
    n_gt: int
    pred_voxels: int
    gt_voxels: int
    pred_volume_um3: float | None = None
    gt_volume_um3: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (JSON-serialisable)."""
        return asdict(self)


def contingency(pred: Any, gt: Any) -> Contingency:
    """Count voxels per (gt id, pred id) pair in one pass.

    Parameters
    ----------
    pred, gt : arrays or Volumes of the same shape, non-negative integers
    """
    pred, _ = _unwrap(pred, None, "pred")
    gt, _ = _unwrap(gt, None, "gt")
    if tuple(pred.shape) != tuple(gt.shape):
        raise ValueError(
            f"prediction shape {tuple(pred.shape)} differs from ground truth {tuple(gt.shape)}: "
            "evaluate labels of the same stack (resample or crop one of them)"
        )
    keys, counts = [], []
    for inner in (block.write for block in _blocks(gt)):
        g = _check_labels(_read(gt, inner))
        p = _check_labels(_read(pred, inner))
        gmax = int(g.max()) if g.size else 0
        pmax = int(p.max()) if p.size else 0
        if max(gmax, pmax) >= 1 << 32:
            raise ValueError("ids of 2**32 or more are not supported: relabel sequentially")
        if (gmax + 1) * (pmax + 1) <= 1 << 32:  # a uint32 pair key is about 3x faster
            m = np.uint32(pmax + 1)
            k, c = fastremap.unique(g.astype(np.uint32) * m + p, return_counts=True)
            k = (k // m).astype(np.uint64) << np.uint64(32) | (k % m).astype(np.uint64)
        else:
            k, c = fastremap.unique(
                g.astype(np.uint64) << np.uint64(32) | p.astype(np.uint64), return_counts=True
            )
        keys.append(k)
        counts.append(c.astype(np.int64))
    key = np.concatenate(keys)
    uk, inv = np.unique(key, return_inverse=True)
    cnt = np.bincount(inv, weights=np.concatenate(counts), minlength=len(uk)).astype(np.int64)
    return Contingency(
        (uk >> np.uint64(32)).astype(np.int64), (uk & np.uint64(0xFFFFFFFF)).astype(np.int64), cnt
    )


def foreground_dice(pred: Any, gt: Any) -> float:
    """Dice of the foreground (``pred > 0`` against ``gt > 0``); 1.0 when both are empty."""
    return _foreground(contingency(pred, gt))[1]


def instance_scores(pred: Any, gt: Any, iou: float = 0.5) -> InstanceScores:
    """Precision, recall, F1 and AP of predicted instances at one IoU threshold."""
    return _instances(contingency(pred, gt), iou)


def check_iou_thresholds(thresholds: Sequence[float], what: str = "IoU thresholds") -> list[float]:
    """Return the thresholds as floats, or refuse any outside (0, 1] in one clear line.

    Parameters
    ----------
    thresholds : sequence of float
        IoU levels at which a predicted object matches a true one.
    what : str
        How the caller names them in the message (e.g. ``--iou``).

    Returns
    -------
    list of float

    Raises
    ------
    ValueError
        If one is not a number in (0, 1]: an IoU is at most 1, and at 0 every
        pair of objects would match.
    """
    values = [float(t) for t in thresholds]
    bad = [t for t in values if not 0 < t <= 1]
    if not values or bad:
        raise ValueError(
            f"{what} {', '.join(f'{t:g}' for t in values) or '(none)'}: each must be a "
            "number above 0 and at most 1 (IoU is the overlap divided by the union), "
            "e.g. 0.5,0.75"
        )
    return values


def evaluate(
    pred: Any,
    gt: Any,
    voxel_size: Sequence[float] | None = None,
    *,
    thresholds: Sequence[float] = (0.5, 0.75),
    semantic: bool = False,
    pred_classes: Mapping[int, Any] | np.ndarray | None = None,
    gt_classes: Mapping[int, Any] | np.ndarray | None = None,
    class_names: Sequence[str] | None = None,
) -> Evaluation:
    """Compare a segmentation with the ground truth.

    Parameters
    ----------
    pred, gt : arrays or Volumes (z, y, x), same shape
        Instance label maps (0 = background), or class maps with
        ``semantic=True``.
    voxel_size : sequence of float, optional
        (z, y, x) nm, to report volumes in µm³ (taken from a Volume if given).
    thresholds : sequence of float
        IoU thresholds for instance matching.
    semantic : bool
        The arrays are class maps: per-class IoU/Dice are computed; instance
        scores treat each class value as one object.
    pred_classes, gt_classes : mapping or lookup array, optional
        Class of each instance id (e.g. ``SyntheticVolume.classes``), for
        per-class IoU/Dice of instance maps.
    class_names : sequence of str, optional
        Names of classes 1..C.

    Returns
    -------
    Evaluation
    """
    vs = voxel_size
    if vs is None:
        vs = next((a.voxel_size for a in (gt, pred) if isinstance(a, Volume)), None)
    else:
        vs = check_voxel_size(vs, "voxel_size")
    thresholds = check_iou_thresholds(thresholds)
    table = contingency(pred, gt)
    fg_iou, fg_dice = _foreground(table)
    if semantic:
        classes = _per_class(table.gt, table.pred, table.count, class_names)
    elif pred_classes is not None and gt_classes is not None:
        classes = _per_class(
            _lookup(gt_classes, table.gt),
            _lookup(pred_classes, table.pred),
            table.count,
            class_names,
        )
    else:
        classes = {"foreground": {"iou": fg_iou, "dice": fg_dice}}
    gids, gsize = table.sizes("gt")
    pids, psize = table.sizes("pred")
    are, rp, rr = _adapted_rand(table)
    split, merge = _vi(table)
    gt_vox, pred_vox = int(gsize[gids > 0].sum()), int(psize[pids > 0].sum())
    um3 = None if vs is None else float(np.prod(vs)) * 1e-9
    return Evaluation(
        foreground_iou=fg_iou,
        foreground_dice=fg_dice,
        classes=classes,
        instances={f"{t:g}": _instances(table, t) for t in thresholds},
        adapted_rand_error=are,
        rand_precision=rp,
        rand_recall=rr,
        vi_split=split,
        vi_merge=merge,
        n_pred=int((pids > 0).sum()),
        n_gt=int((gids > 0).sum()),
        pred_voxels=pred_vox,
        gt_voxels=gt_vox,
        pred_volume_um3=None if um3 is None else pred_vox * um3,
        gt_volume_um3=None if um3 is None else gt_vox * um3,
    )


def format_evaluation(ev: Evaluation) -> str:
    """A readable multi-line table of an :class:`Evaluation`."""
    lines = ["semantic            IoU     Dice"]
    for name, m in ev.classes.items():
        lines.append(f"  {name:<16}{m['iou']:>6.3f}  {m['dice']:>7.3f}")
    lines.append("instances   IoU>=  TP   FP   FN   precision  recall   F1     AP")
    for s in ev.instances.values():
        lines.append(
            f"            {s.iou_threshold:<5g}{s.tp:>4d} {s.fp:>4d} {s.fn:>4d}   "
            f"{s.precision:>7.3f}  {s.recall:>7.3f} {s.f1:>6.3f} {s.ap:>6.3f}"
        )
    lines.append(
        f"adapted Rand error  {ev.adapted_rand_error:.4f}   "
        f"VI split {ev.vi_split:.4f}  VI merge {ev.vi_merge:.4f} (bits)"
    )
    vol = ""
    if ev.gt_volume_um3 is not None:
        vol = f"; volume predicted {ev.pred_volume_um3:.4g} µm³, true {ev.gt_volume_um3:.4g} µm³"
    lines.append(f"objects predicted {ev.n_pred}, true {ev.n_gt}{vol}")
    return "\n".join(lines)


# -- metrics from the table -----------------------------------------------------


def _foreground(t: Contingency) -> tuple[float, float]:
    inter = int(t.count[(t.gt > 0) & (t.pred > 0)].sum())
    g = int(t.count[t.gt > 0].sum())
    p = int(t.count[t.pred > 0].sum())
    if g + p == 0:
        return 1.0, 1.0
    return inter / (g + p - inter), 2.0 * inter / (g + p)


def _lookup(classes: Mapping[int, Any] | np.ndarray, ids: np.ndarray) -> np.ndarray:
    if isinstance(classes, Mapping):
        out = np.array([classes.get(int(i), 0) if i else 0 for i in ids], dtype=object)
        names = {v: k for k, v in enumerate(dict.fromkeys(x for x in out if x != 0), 1)}
        return np.array([names.get(x, 0) if x != 0 else 0 for x in out], dtype=np.int64)
    lut = np.asarray(classes)
    if ids.size and ids.max() >= lut.size:
        raise ValueError(f"class lookup has {lut.size} entries but ids reach {ids.max()}")
    return lut[ids].astype(np.int64)


def _per_class(g, p, count, names) -> dict[str, dict[str, float]]:
    out = {}
    for c in np.unique(np.concatenate([g, p])):
        if c == 0:
            continue
        inter = int(count[(g == c) & (p == c)].sum())
        gs, ps = int(count[g == c].sum()), int(count[p == c].sum())
        name = names[c - 1] if names is not None and c <= len(names) else str(c)
        out[name] = {"iou": inter / (gs + ps - inter), "dice": 2.0 * inter / (gs + ps)}
    return out


def _instances(t: Contingency, threshold: float) -> InstanceScores:
    gids, gsize = t.sizes("gt")
    pids, psize = t.sizes("pred")
    n_gt, n_pred = int((gids > 0).sum()), int((pids > 0).sum())
    both = (t.gt > 0) & (t.pred > 0)
    g, p, n = t.gt[both], t.pred[both], t.count[both]
    union = gsize[np.searchsorted(gids, g)] + psize[np.searchsorted(pids, p)] - n
    iou = n / union
    keep = iou >= threshold
    g, p, iou = g[keep], p[keep], iou[keep]
    matched = _match(g, p, iou, threshold)
    tp = len(matched)
    fp, fn = n_pred - tp, n_gt - tp
    precision = tp / n_pred if n_pred else float(n_gt == 0)
    recall = tp / n_gt if n_gt else float(n_pred == 0)
    f1 = 2 * tp / (n_pred + n_gt) if n_pred + n_gt else 1.0
    ap = tp / (tp + fp + fn) if tp + fp + fn else 1.0
    mean_iou = float(np.mean(matched)) if tp else 0.0
    return InstanceScores(float(threshold), tp, fp, fn, precision, recall, f1, ap, mean_iou)


def _match(g: np.ndarray, p: np.ndarray, iou: np.ndarray, threshold: float) -> list[float]:
    """IoUs of a one-to-one matching of the candidate pairs."""
    if threshold >= 0.5:  # greedy is optimal: an object has at most one pair > 0.5
        used_g, used_p, out = set(), set(), []
        for k in np.argsort(-iou, kind="stable"):
            if g[k] not in used_g and p[k] not in used_p:
                used_g.add(g[k])
                used_p.add(p[k])
                out.append(float(iou[k]))
        return out
    ug, gi = np.unique(g, return_inverse=True)
    up, pi = np.unique(p, return_inverse=True)
    cost = np.zeros((len(ug), len(up)))
    cost[gi, pi] = iou
    rows, cols = linear_sum_assignment(cost, maximize=True)
    return [float(cost[r, c]) for r, c in zip(rows, cols) if cost[r, c] > 0]


def _adapted_rand(t: Contingency) -> tuple[float, float, float]:
    keep = t.gt > 0
    n_ij = t.count[keep].astype(np.float64)
    g, p = t.gt[keep], t.pred[keep]
    n = n_ij.sum()
    if n == 0:
        return 0.0, 1.0, 1.0
    a = np.bincount(np.unique(g, return_inverse=True)[1], weights=n_ij)
    b = np.bincount(np.unique(p, return_inverse=True)[1], weights=n_ij)
    sum_p_ij2 = np.sum(n_ij**2) - n
    sum_a2 = np.sum(a**2) - n
    sum_b2 = np.sum(b**2) - n
    precision = sum_p_ij2 / sum_b2 if sum_b2 else 1.0
    recall = sum_p_ij2 / sum_a2 if sum_a2 else 1.0
    f = 2.0 * precision * recall / (precision + recall) if precision + recall else 0.0
    return float(1.0 - f), float(precision), float(recall)


def _vi(t: Contingency) -> tuple[float, float]:
    n = t.count.sum()
    if n == 0:
        return 0.0, 0.0
    pxy = t.count / n
    _, gs = t.sizes("gt")
    _, ps = t.sizes("pred")
    h_xy = -np.sum(pxy * np.log2(pxy))
    h_g = -np.sum((gs / n) * np.log2(gs / n))
    h_p = -np.sum((ps / n) * np.log2(ps / n))
    return float(max(h_xy - h_g, 0.0)), float(max(h_xy - h_p, 0.0))
