"""Quantification subcommands: ``stats``, ``evaluate`` and ``mesh``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd

from ..evaluate import evaluate, format_evaluation
from ..geometry import export_meshes
from ..io import open_volume
from ..measure import measure_job, summarize, write_csv
from ..volume import Volume, format_voxel_size
from ._common import add_voxel_size, run_with_bar


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``stats``, ``evaluate`` and ``mesh``."""
    p = sub.add_parser(
        "stats",
        help="measure every object: count, volume, size, position -> CSV",
        description="Measure every object of a labels stack in one pass (voxels, volume in "
        "µm³, bounding box, centroid, border contact, equivalent diameter, surface area, "
        "mean grey value with --image) and write one CSV row per object. Prints the totals.",
    )
    p.add_argument("labels", help="instance labels (tif, h5[:key], zarr[:component])")
    p.add_argument("--csv", required=True, metavar="OUT.csv", help="table to write")
    p.add_argument("--image", default=None, help="grey-level stack, for mean intensity")
    p.add_argument(
        "--classes",
        default=None,
        metavar="CLASSMAP",
        help="semantic class map of the same size; each object takes its majority class",
    )
    p.add_argument("--class-names", default=None, metavar="A,B", help="names of classes 1, 2, ...")
    p.add_argument("--totals-csv", default=None, help="also write the totals table here")
    add_voxel_size(p)
    p.set_defaults(func=_stats)

    p = sub.add_parser(
        "evaluate",
        help="compare a segmentation with ground truth (IoU, Dice, F1, Rand, VI)",
        description="Compare predicted labels with ground-truth labels of the same stack: "
        "foreground (or per-class) IoU and Dice, instance precision/recall/F1/AP with "
        "one-to-one matching, adapted Rand error, variation of information, counts and "
        "volumes.",
    )
    p.add_argument("pred", help="predicted labels")
    p.add_argument("gt", help="ground-truth labels")
    p.add_argument("--json", default=None, metavar="OUT.json", help="write all numbers here")
    p.add_argument(
        "--semantic", action="store_true", help="the files are class maps, not instances"
    )
    p.add_argument("--class-names", default=None, metavar="A,B", help="names of classes 1, 2..")
    p.add_argument(
        "--iou", default="0.5,0.75", metavar="T,T", help="IoU thresholds (default 0.5,0.75)"
    )
    add_voxel_size(p)
    p.set_defaults(func=_evaluate)

    p = sub.add_parser(
        "mesh",
        help="export object surfaces (or point clouds) as .ply in micrometres",
        description="Write one .ply mesh per object (marching cubes, coordinates in µm, "
        "per-vertex id and colour), or one combined file with --combined, or point clouds "
        "with --points. Each object is processed within its bounding box.",
    )
    p.add_argument("labels", help="instance labels")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    p.add_argument("--points", action="store_true", help="point clouds instead of meshes")
    p.add_argument(
        "--all-voxels", action="store_true", help="point clouds of every voxel, not the surface"
    )
    p.add_argument(
        "--downscale",
        default="1",
        metavar="N",
        help="keep every N-th voxel (N, or Z,Y,X factors, e.g. 1,4,4)",
    )
    p.add_argument("--ids", default=None, metavar="ID,ID", help="only these objects")
    p.add_argument("--combined", action="store_true", help="one file with a per-vertex id")
    p.add_argument("--smooth", type=int, default=0, metavar="N", help="smoothing iterations")
    add_voxel_size(p)
    p.set_defaults(func=_mesh)


def _open(path: str, voxel_size) -> Volume:
    volume = open_volume(path, voxel_size=voxel_size)
    if volume.voxel_size_origin == "default":
        print(
            f"note: {path} does not record its voxel size; assuming "
            f"{format_voxel_size(volume.voxel_size)}. Pass --voxel-size X,Y,Z to set it.",
            file=sys.stderr,
        )
    return volume


def _names(text: str | None) -> list[str] | None:
    return None if not text else [t.strip() for t in text.split(",") if t.strip()]


def _stats(args: argparse.Namespace) -> int:
    labels = _open(args.labels, args.voxel_size)
    image = open_volume(args.image) if args.image else None
    classes = open_volume(args.classes) if args.classes else None
    for what, other in (("--image", image), ("--classes", classes)):
        if other is not None and other.shape != labels.shape:
            raise ValueError(
                f"{what} {other.source} has shape {other.shape} but the labels "
                f"{labels.source} have {labels.shape}: give the stack of the same size"
            )
    job = measure_job(
        labels,
        image=image,
        classes=None if classes is None else classes.data,
        class_names=_names(args.class_names),
    )
    table = run_with_bar(job, "stats")
    write_csv(table, args.csv, labels.voxel_size, labels.source)
    totals = summarize(table, labels.shape, labels.voxel_size)
    if args.totals_csv:
        write_csv(totals.reset_index(), args.totals_csv, labels.voxel_size, labels.source)
    print(labels.describe())
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(totals.to_string(float_format=lambda v: f"{v:.4g}"))
    print(f"wrote {len(table)} objects to {args.csv}")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    pred = _open(args.pred, args.voxel_size)
    gt = open_volume(args.gt, voxel_size=args.voxel_size)
    try:
        thresholds = [float(t) for t in args.iou.split(",")]
    except ValueError:
        raise ValueError(f"--iou {args.iou!r}: give numbers such as 0.5,0.75") from None
    result = evaluate(
        pred,
        gt,
        pred.voxel_size,
        thresholds=thresholds,
        semantic=args.semantic,
        class_names=_names(args.class_names),
    )
    print(format_evaluation(result))
    if args.json:
        out = Path(args.json)
        data = result.to_dict()
        data["pred"], data["gt"] = pred.source, gt.source
        data["voxel_size_nm_xyz"] = list(reversed(pred.voxel_size))
        out.write_text(json.dumps(data, indent=2))
        print(f"wrote {out}")
    return 0


def _mesh(args: argparse.Namespace) -> int:
    labels = _open(args.labels, args.voxel_size)
    try:
        downscale = [int(v) for v in args.downscale.split(",")]
        ids = None if args.ids is None else [int(v) for v in args.ids.split(",") if v]
    except ValueError:
        raise ValueError("--downscale and --ids take integers separated by commas") from None
    if len(downscale) not in (1, 3):
        raise ValueError("--downscale takes N or Z,Y,X")
    job = export_meshes(
        labels,
        args.out,
        ids=ids,
        points=args.points,
        surface_points=not args.all_voxels,
        combined=args.combined,
        smooth=args.smooth,
        downscale=downscale[0] if len(downscale) == 1 else tuple(downscale),
    )
    files = run_with_bar(job, "mesh")
    print(f"wrote {len(files)} .ply file(s) to {args.out} (coordinates in micrometres)")
    return 0
