"""Quantification subcommands: ``stats``, ``evaluate`` and ``mesh``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..core.files import atomic_path, staged_folder
from ..core.volume import Volume, format_voxel_size
from ..io.outputs import check_new_file, check_output_folder, check_writable
from ..io.read import open_volume, require_3d, require_labels
from ._common import add_overwrite, add_voxel_size, ranged, run_with_bar

# pandas, scikit-image and scipy.optimize are imported by the commands that use them:
# every `anatomics` call (and --help) would otherwise load them.

#: Free space asked for before a table or score file is written (they are small).
CSV_BYTES = 2**20
#: Free space asked for before meshes are written (more is checked as they are written).
MESH_BYTES = 8 * 2**20


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
    add_overwrite(p, "existing CSV files")
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
        "--iou",
        type=_iou,
        default=[0.5, 0.75],
        metavar="T,T",
        help="IoU thresholds, each in (0, 1] (default 0.5,0.75)",
    )
    add_overwrite(p, "an existing --json file")
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
        type=_downscale,
        default=1,
        metavar="N",
        help="keep every N-th voxel (N, or Z,Y,X factors, e.g. 1,4,4; each >= 1)",
    )
    p.add_argument(
        "--ids", type=_ids, default=None, metavar="ID,ID", help="only these objects (ids >= 1)"
    )
    p.add_argument("--combined", action="store_true", help="one file with a per-vertex id")
    p.add_argument(
        "--smooth",
        type=ranged(int, "--smooth", 0),
        default=0,
        metavar="N",
        help="smoothing iterations (>= 0)",
    )
    add_overwrite(p, "earlier .ply exports in --out (other files in the folder are never touched)")
    add_voxel_size(p)
    p.set_defaults(func=_mesh)


def _iou(text: str) -> list[float]:
    from ..analyze.evaluate import check_iou_thresholds

    try:
        return check_iou_thresholds([float(t) for t in text.split(",") if t.strip()], "--iou")
    except ValueError as err:
        if "--iou" in str(err):
            raise argparse.ArgumentTypeError(str(err)) from None
        raise argparse.ArgumentTypeError(
            f"--iou {text!r}: give numbers such as 0.5,0.75"
        ) from None


def _ids(text: str) -> list[int]:
    try:
        ids = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--ids {text!r}: give object ids (integers >= 1) separated by commas"
        ) from None
    bad = [i for i in ids if i < 1]
    if not ids or bad:
        raise argparse.ArgumentTypeError(
            f"--ids {text!r}: object ids are integers >= 1 (0 is the background)"
        )
    return ids


def _downscale(text: str) -> int | tuple[int, int, int]:
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError:
        values = []
    if len(values) not in (1, 3) or min(values) < 1:
        raise argparse.ArgumentTypeError(
            f"--downscale {text!r}: give N or Z,Y,X, whole numbers >= 1 (e.g. 2 or 1,4,4)"
        )
    return values[0] if len(values) == 1 else tuple(values)  # type: ignore[return-value]


def _open(path: str, voxel_size, what: str | None = None) -> Volume:
    volume = open_volume(path, voxel_size=voxel_size)
    if what is not None:
        require_labels(volume, what)
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
    import pandas as pd

    from ..analyze.measure import measure_job, summarize, write_csv

    targets = [("--csv", args.csv)] + ([("--totals-csv", args.totals_csv)] * bool(args.totals_csv))
    if args.totals_csv and Path(args.totals_csv).absolute() == Path(args.csv).absolute():
        raise ValueError("--totals-csv names the same file as --csv; give another name")
    for option, path in targets:
        check_new_file(path, overwrite=args.overwrite, option=option, example="objects.csv")
        check_writable(path, CSV_BYTES)
    labels = _open(args.labels, args.voxel_size, "labels")
    image = require_3d(open_volume(args.image)) if args.image else None
    classes = _open(args.classes, None, "--classes") if args.classes else None
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
    from ..analyze.evaluate import evaluate, format_evaluation

    if args.json:
        check_new_file(args.json, overwrite=args.overwrite, option="--json", example="scores.json")
        check_writable(args.json, CSV_BYTES)
    pred = _open(args.pred, args.voxel_size, "the prediction")
    gt = require_labels(open_volume(args.gt, voxel_size=args.voxel_size), "the ground truth")
    if pred.shape != gt.shape:
        raise ValueError(
            f"the prediction {pred.source} has shape {pred.shape} but the ground truth "
            f"{gt.source} has {gt.shape}: compare labels of the same stack"
        )
    result = evaluate(
        pred,
        gt,
        pred.voxel_size,
        thresholds=args.iou,
        semantic=args.semantic,
        class_names=_names(args.class_names),
    )
    print(format_evaluation(result))
    if args.json:
        out = Path(args.json)
        data = result.to_dict()
        data["pred"], data["gt"] = pred.source, gt.source
        data["voxel_size_nm_xyz"] = list(reversed(pred.voxel_size))
        with atomic_path(out, overwrite=True) as tmp:
            tmp.write_text(json.dumps(data, indent=2))
        print(f"wrote {out}")
    return 0


def _mesh(args: argparse.Namespace) -> int:
    from ..analyze.meshes import export_meshes

    out = Path(args.out)
    earlier = check_output_folder(out, overwrite=args.overwrite, option="--out")
    check_writable(out, MESH_BYTES)
    labels = _open(args.labels, args.voxel_size, "labels")
    with staged_folder(out, replaces=earlier) as stage:
        job = export_meshes(
            labels,
            stage,
            ids=args.ids,
            points=args.points,
            surface_points=not args.all_voxels,
            combined=args.combined,
            smooth=args.smooth,
            downscale=args.downscale,
        )
        files = run_with_bar(job, "mesh")
    replaced = f", replacing {len(earlier)} earlier file(s)" if earlier else ""
    print(f"wrote {len(files)} .ply file(s) to {out}{replaced} (coordinates in micrometres)")
    return 0
