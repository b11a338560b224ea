"""Data Check: is an image / labels pair ready for training?

:func:`check` returns a :class:`CheckReport`: a list of findings (error,
warning or info) written for a biologist, each with the slice to look at where
that helps, plus the label-value histogram, the annotated slices and a guess of
whether the labels are semantic (a few class values) or instance ids.

What is checked:

* image and labels cover the same voxels (shape), and voxel sizes agree;
* label type: integers, no negative or fractional values;
* background: 0 exists and is the most common value;
* number of label values, semantic-or-instance guess and whether it fits the task;
* which z-slices carry annotation (none is an error), and slices left without any
  label amid annotated ones (unknown to training: often slices left unpainted);
* anti-aliased painting: many values that only occur as thin rims along edges;
* for instance labels, one value painted on several separate pieces, and stray
  fragments of a few voxels (pieces are face-connected, "6-connectivity").

Memory: labels are read one z-chunk at a time for the histogram and slice
checks. The connected-piece checks (cc3d) need the labels in memory; they run
when the labels have at most :data:`MAX_CC_VOXELS` voxels (the real
10 x 1170 x 3293 pair has 38.5 M) and are skipped, with a note, above.
"""

from __future__ import annotations

import itertools
from collections import Counter, defaultdict
from collections.abc import Sequence
from typing import Any, Literal

import dask.array as da
import numpy as np

from ..core.volume import Volume
from .report import CheckReport, Finding, Severity, format_ranges
from .report import format_value as _num

__all__ = ["MAX_CC_VOXELS", "CheckReport", "Finding", "Severity", "check"]

#: Largest label volume (voxels) for the in-memory connected-piece checks.
MAX_CC_VOXELS = 400_000_000
#: More distinct values than this means instance ids, not classes.
MAX_SEMANTIC_VALUES = 16
#: A piece smaller than this fraction of the median piece size is a stray fragment.
FRAGMENT_FRACTION = 0.02
#: A value needs at least this many voxels to count as an anti-aliasing rim; smaller
#: ones are stray fragments (a renumbered 1-voxel slip has no interior either).
MIN_RIM_VOXELS = 20
#: Unlabelled slices amid annotated ones are reported while there are at most
#: 1 / GAP_FRACTION of the annotated ones (more is sparse annotation, on purpose).
GAP_FRACTION = 4


def check(
    image: Volume | Any,
    labels: Volume | Any,
    task: Literal["semantic", "instance"] | None = None,
) -> CheckReport:
    """Check an image / labels pair and report what would get in the way of training.

    Parameters
    ----------
    image, labels : Volume or array
        (z, y, x) arrays (dask or numpy) or :class:`Volume` objects.
    task : {"semantic", "instance"}, optional
        The task the labels are for; the semantic/instance guess is compared to it.

    Returns
    -------
    CheckReport
    """
    if task not in (None, "semantic", "instance"):
        raise ValueError(f"task must be 'semantic' or 'instance', not {task!r}")
    image = image if isinstance(image, Volume) else Volume(da.asarray(image), name="image")
    labels = labels if isinstance(labels, Volume) else Volume(da.asarray(labels), name="labels")
    report = CheckReport(task=task, n_slices=labels.shape[0] if labels.ndim == 3 else 1)
    report.descriptions = [f"image  {image.describe()}", f"labels {labels.describe()}"]
    _check_geometry(report, image, labels)
    data = labels.data if labels.ndim == 3 else labels.data[None]
    if not _check_dtype(report, data):
        return report
    in_memory = data.size <= MAX_CC_VOXELS
    if in_memory:
        data = np.asarray(data.compute())
    rims = _slice_pass(report, data)
    _check_background(report)
    values = sorted(v for v in report.histogram if v != 0)
    if not values:
        report.kind = "empty"
        report.add(
            "error",
            "no_annotation",
            "No slice carries any annotation (all labels are 0): paint the objects on "
            "at least one slice, then check again.",
        )
        return report
    _check_gaps(report)
    if _check_antialiasing(report, rims, values):
        report.kind = "semantic" if len(values) <= MAX_SEMANTIC_VALUES else "instance"
        return report  # pieces of smoothed edges would only add noise
    n_pieces: dict[Any, int] | None = None
    if in_memory:
        n_pieces = _check_pieces(report, data)
    else:
        report.add(
            "info",
            "pieces_skipped",
            f"Labels too large ({data.size:,} voxels) for the connected-object checks "
            f"(limit {MAX_CC_VOXELS:,}); reused values and stray fragments were not checked.",
        )
    _check_kind(report, values, n_pieces, task)
    if report.kind == "semantic":  # one class on many objects is expected there
        report.findings = [f for f in report.findings if f.code != "reused_values"]
    return report


def _check_geometry(report: CheckReport, image: Volume, labels: Volume) -> None:
    if image.shape != labels.shape:
        report.add(
            "error",
            "shape_mismatch",
            f"Image and labels differ in size: image (z, y, x) {image.shape}, labels "
            f"{labels.shape}. They must cover the same voxels: export the labels from the "
            "same stack (same crop, same number of slices).",
        )
    if labels.ndim not in (2, 3):
        report.add(
            "error", "labels_ndim", f"Labels have {labels.ndim} dimensions; need (z, y, x)."
        )
    known = [v for v in (image, labels) if v.voxel_size_origin != "default"]
    if len(known) == 2 and not np.allclose(image.voxel_size, labels.voxel_size, rtol=1e-3):
        report.add(
            "warning",
            "voxel_size_mismatch",
            f"Image and labels record different voxel sizes ({image.voxel_size} vs "
            f"{labels.voxel_size} nm, z, y, x); the image's is used.",
        )
    if image.voxel_size_origin == "default":
        report.add(
            "warning",
            "voxel_size_assumed",
            "The image file does not record its voxel size; "
            f"{image.describe().split('voxel ')[-1]}. Give the real one (--voxel-size X,Y,Z "
            "or the voxel size field): all volumes and lengths depend on it.",
        )


def _check_dtype(report: CheckReport, data: da.Array) -> bool:
    """Float and negative labels; returns False when the labels cannot be used at all."""
    if data.dtype == bool or np.issubdtype(data.dtype, np.unsignedinteger):
        return True
    if np.issubdtype(data.dtype, np.floating):
        fractional = bool(da.any(data != da.floor(data)).compute())
        if fractional:
            report.add(
                "error",
                "float_labels",
                f"Labels are stored as {data.dtype} with fractional values: they look like "
                "a probability map or a resampled image, not labels. Threshold them or "
                "re-save the labels as whole numbers (8- or 16-bit).",
            )
            return False
        report.add(
            "warning",
            "float_labels",
            f"Labels are stored as {data.dtype}; their values are whole numbers and will be "
            "read as integers. Save them as 8- or 16-bit integers to avoid surprises.",
        )
    if np.issubdtype(data.dtype, np.number) and bool((data < 0).any().compute()):
        report.add(
            "error",
            "negative_labels",
            "Labels hold negative values; label values must be 0 (background) or positive.",
        )
        return False
    return True


def _slice_pass(report: CheckReport, data: Any) -> dict[Any, list[int]]:
    """Histogram, annotated slices and per-value [voxels, interior voxels, best slice]."""
    import fastremap

    histogram: Counter = Counter()
    rims: dict[Any, list[int]] = defaultdict(lambda: [0, 0, -1, 0])
    for z, plane in _planes(data):
        if np.issubdtype(plane.dtype, np.floating):
            plane = plane.astype(np.int64)
        values, counts = fastremap.unique(plane, return_counts=True)
        histogram.update(dict(zip(values.tolist(), counts.tolist())))
        if np.any(values != 0):
            report.annotated_slices.append(z)
        # A voxel is interior when its four in-plane neighbours hold the same value.
        same = np.ones(plane.shape, dtype=bool)
        same[1:, :] &= plane[1:, :] == plane[:-1, :]
        same[:-1, :] &= plane[:-1, :] == plane[1:, :]
        same[:, 1:] &= plane[:, 1:] == plane[:, :-1]
        same[:, :-1] &= plane[:, :-1] == plane[:, 1:]
        inner_values, inner_counts = fastremap.unique(plane[same], return_counts=True)
        inner = dict(zip(inner_values.tolist(), inner_counts.tolist()))
        for value, count in zip(values.tolist(), counts.tolist()):
            entry = rims[value]
            entry[0] += count
            entry[1] += inner.get(value, 0)
            rim_here = count - inner.get(value, 0)
            if rim_here > entry[3]:
                entry[2], entry[3] = z, rim_here
    report.histogram = dict(sorted(histogram.items()))
    return rims


def _check_gaps(report: CheckReport) -> None:
    """Slices with no label amid annotated ones, when most of the span is annotated."""
    painted = report.annotated_slices
    if len(painted) < 3:
        return
    gaps = sorted(set(range(painted[0], painted[-1] + 1)) - set(painted))
    if not gaps or len(gaps) > len(painted) // GAP_FRACTION:
        return  # none, or sparse annotation (every n-th slice): painted that way on purpose
    what = f"Slices {format_ranges(gaps)} hold" if len(gaps) > 1 else f"Slice {gaps[0]} holds"
    report.add(
        "info",
        "unlabelled_slices",
        f"{what} no label while the slices around are annotated: training treats "
        f"{'them' if len(gaps) > 1 else 'it'} as unknown (not learned from, not scored). If "
        "objects show there, they were left unpainted; paint them to use those slices.",
        slice=gaps[0],
    )


def _planes(data: Any):
    """Yield (z, plane), reading a dask array one z-chunk at a time."""
    bounds = np.cumsum((0, *data.chunks[0])) if isinstance(data, da.Array) else (0, len(data))
    for z0, z1 in itertools.pairwise(bounds):
        slab = np.asarray(data[z0:z1])
        for offset, plane in enumerate(slab):
            yield int(z0) + offset, plane


def _check_background(report: CheckReport) -> None:
    histogram = report.histogram
    total = sum(histogram.values())
    top, top_count = max(histogram.items(), key=lambda kv: kv[1])
    zero = histogram.get(0, 0)
    if zero == 0:
        report.add(
            "error",
            "no_background",
            f"No voxel is 0, but 0 must mean background; the most common value is "
            f"{_num(top)} ({100 * top_count / total:.0f}% of voxels). If {_num(top)} is "
            "the background, relabel it to 0 (e.g. invert a white-background mask).",
        )
    elif top != 0 and zero / total < 0.05:
        report.add(
            "error",
            "nonzero_background",
            f"The background does not look like 0: value {_num(top)} covers "
            f"{100 * top_count / total:.0f}% of voxels and 0 only {100 * zero / total:.1f}%. "
            f"Relabel {_num(top)} to 0 (e.g. invert a white-background mask).",
        )
    elif top != 0:
        report.add(
            "warning",
            "background_not_most_common",
            f"Value {_num(top)} is more common than background 0; fine if the objects fill "
            "most of the volume, otherwise check the background is 0.",
        )


def _check_antialiasing(report: CheckReport, rims: dict, values: Sequence) -> bool:
    """Values found only on thin rims along edges, as painted with anti-aliasing."""
    rim_values = [
        v for v in values if rims[v][0] >= MIN_RIM_VOXELS and rims[v][1] <= 0.05 * rims[v][0]
    ]
    if len(rim_values) < 3 or len(rim_values) < 0.2 * len(values):
        return False
    voxels = sum(rims[v][0] for v in rim_values)
    worst = max(rim_values, key=lambda v: rims[v][3])
    examples = ", ".join(_num(v) for v in rim_values[:6]) + (
        ", ..." if len(rim_values) > 6 else ""
    )
    report.add(
        "error",
        "antialiased",
        f"{len(rim_values)} label values ({examples}; {voxels:,} voxels) only occur as thin "
        "rims along the edges of other labels: the labels were painted or saved with "
        "anti-aliasing (smoothed edges), as image editors do. Re-save them without "
        "anti-aliasing (pencil tool, no smoothing, no resizing), or threshold them "
        "(e.g. value >= half the object value -> object, below -> 0).",
        slice=rims[worst][2],
    )
    return True


def _check_pieces(report: CheckReport, data: np.ndarray) -> dict[Any, int]:
    """Reused values and stray fragments (face-connected pieces).

    Returns the number of pieces per value, stray fragments not counted.
    """
    import cc3d
    import fastremap

    labels = data if np.issubdtype(data.dtype, np.integer) else data.astype(np.int64)
    cc, n = cc3d.connected_components(labels, connectivity=6, return_N=True)
    report.n_objects = int(n)
    if n == 0:
        return {}
    owner = fastremap.component_map(cc, labels)
    stats = cc3d.statistics(cc)
    sizes = stats["voxel_counts"]
    pieces: dict[Any, list[int]] = defaultdict(list)
    for piece in range(1, n + 1):
        pieces[owner[piece]].append(piece)
    threshold = max(1.0, FRAGMENT_FRACTION * float(np.median(sizes[1:])))
    for value, members in sorted(pieces.items()):
        if len(members) > 1:
            report.pieces[value] = sorted((int(sizes[p]) for p in members), reverse=True)
        for p in members:
            if sizes[p] < threshold:
                box = stats["bounding_boxes"][p]
                inside = np.argwhere(cc[box] == p)[0] + [s.start for s in box]
                report.fragments.append((value, int(sizes[p]), tuple(int(i) for i in inside)))
    only_fragments = sum(
        1 for v in report.pieces if sum(1 for p in pieces[v] if sizes[p] >= threshold) <= 1
    )
    if report.pieces:
        listed = ", ".join(f"{_num(v)} ({len(s)} pieces)" for v, s in report.pieces.items())
        report.add(
            "warning",
            "reused_values",
            f"{len(report.pieces)} label values are each painted on several separate pieces: "
            f"{listed}. For an instance task each object needs its own value; training and "
            "measurements treat each connected piece as its own object."
            + (
                f" For {only_fragments} of them the extra pieces are only the stray fragments."
                if only_fragments
                else ""
            ),
        )
    if report.fragments:
        sizes_ = sorted(s for _, s, _ in report.fragments)
        first = report.fragments[0]
        report.add(
            "warning",
            "stray_fragments",
            f"{len(report.fragments)} stray fragments of "
            + (
                f"{sizes_[0]}-{sizes_[-1]} voxels "
                if sizes_[-1] > sizes_[0]
                else f"{sizes_[0]} voxel(s) "
            )
            + f"(values {', '.join(sorted({_num(v) for v, _, _ in report.fragments}, key=float))}"
            f"): probably painting slips. Erase them, or remove small objects when "
            f"proofreading. First one: value {_num(first[0])} at (z, y, x) {first[2]}.",
            slice=first[2][0],
            position=first[2],
        )
    return {v: sum(1 for p in m if sizes[p] >= threshold) for v, m in pieces.items()}


def _check_kind(
    report: CheckReport, values: Sequence, n_pieces: dict[Any, int] | None, task: str | None
) -> None:
    n_values = len(values)
    # Classes: few values, each painted on many separate objects on average.
    per_value = np.mean(list(n_pieces.values())) if n_pieces else 0.0
    semantic = n_values <= MAX_SEMANTIC_VALUES and (n_pieces is None or per_value >= 2)
    report.kind = "semantic" if semantic else "instance"
    report.add(
        "info",
        "values",
        f"{n_values} label value(s) besides background; they look like "
        + (
            "object ids (instance labels)." if report.kind == "instance" else "classes (semantic)."
        ),
    )
    if task == "instance" and report.kind == "semantic" and n_pieces is not None:
        report.add(
            "error",
            "semantic_for_instance",
            f"The labels look semantic ({n_values} value(s) for {report.n_objects or 'many'} "
            "separate objects) but the task is instance: objects that touch would merge. "
            "Give each object its own value, or choose the semantic task.",
        )
    if task == "semantic" and n_values > MAX_SEMANTIC_VALUES:
        report.add(
            "error",
            "instance_for_semantic",
            f"The labels hold {n_values} values, which look like object ids, but the task is "
            "semantic (one value per class). Choose the instance task, or set every object "
            "of a class to the class number.",
        )
