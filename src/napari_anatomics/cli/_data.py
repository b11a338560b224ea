"""Data subcommands: ``combine`` a slice folder, ``check`` an image/labels pair, ``info``."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..core.files import check_target
from ..core.volume import format_voxel_size
from ..datacheck.checks import check
from ..io.combine import combine_slices
from ..io.outputs import check_writable
from ..io.read import open_volume
from ..io.slices import list_slices
from ._common import add_voxel_size, run_with_bar, triple


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``combine``, ``check`` and ``info``."""
    p = sub.add_parser(
        "combine",
        help="combine a folder of 2D slices into one stack (.zarr, .tif or .h5)",
        description="Combine a folder of 2D slices (tif/png/jpg, natural order: img_2 before "
        "img_10) into one stack. .zarr output is chunked and written out-of-core.",
    )
    p.add_argument("folder", help="folder of 2D slices")
    p.add_argument("out", help="output stack: name.zarr, name.tif or name.h5")
    p.add_argument(
        "--chunks",
        type=triple,
        default=None,
        metavar="Z,Y,X",
        help="chunk shape of .zarr/.h5 output (default 32,256,256)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    add_voxel_size(p)
    p.set_defaults(func=_combine)

    p = sub.add_parser(
        "check",
        help="check an image/labels pair before training",
        description="Check an image/labels pair: sizes, label values, background, "
        "annotated slices, anti-aliasing, reused ids and stray fragments. Exit code 0 "
        "when usable, 1 when not.",
    )
    p.add_argument("images", help="image stack (tif, h5[:key], zarr, slice folder)")
    p.add_argument("labels", help="labels stack of the same size")
    p.add_argument(
        "--task",
        choices=("semantic", "instance"),
        default=None,
        help="what the labels are for (checked against the values)",
    )
    add_voxel_size(p)
    p.set_defaults(func=_check)

    p = sub.add_parser("info", help="show shape, type, chunks and voxel size of a stack")
    p.add_argument("path", help="tif, h5[:key], zarr[:component] or slice folder")
    add_voxel_size(p)
    p.set_defaults(func=_info)


def _combine(args: argparse.Namespace) -> int:
    # Before any slice is read: the output's kind, name and room (at least half the
    # raw size: EM slices compress little), so a long combine cannot fail at the end.
    slices = list_slices(args.folder) if Path(args.folder).is_dir() else []
    if Path(args.out).is_dir() and not Path(args.out).suffix.lower() == ".zarr":
        raise ValueError(f"{args.out}: is a folder; give a file name ending in .zarr, .tif or .h5")
    if Path(args.out).exists() and not args.overwrite:
        raise FileExistsError(
            f"{args.out}: already exists and is kept; choose another name, or add "
            "--overwrite to replace it"
        )
    check_target(Path(args.out), args.overwrite)
    raw = sum(p.stat().st_size for p in slices)
    check_writable(args.out, raw // 2)
    job = combine_slices(
        args.folder,
        args.out,
        chunks=args.chunks,
        voxel_size=args.voxel_size,
        overwrite=args.overwrite,
    )
    volume = run_with_bar(job, "combine")
    print(f"wrote {volume.describe()}")
    return 0


def _check(args: argparse.Namespace) -> int:
    image = open_volume(args.images, voxel_size=args.voxel_size)
    labels = open_volume(args.labels, voxel_size=args.voxel_size)
    report = check(image, labels, task=args.task)
    print(report.to_text())
    return 0 if report.usable else 1


def _info(args: argparse.Namespace) -> int:
    volume = open_volume(args.path, voxel_size=args.voxel_size)
    origin = {"file": "from the file", "user": "given", "default": "assumed (not in the file)"}
    chunks = tuple(int(c[0]) for c in volume.data.chunks)
    print(f"{volume.source}")
    print(f"  shape (z, y, x): {volume.shape}")
    print(f"  dtype: {volume.dtype}")
    print(f"  chunks: {chunks}")
    print(f"  size: {volume.data.nbytes / 2**20:,.1f} MiB")
    print(
        f"  voxel size: {format_voxel_size(volume.voxel_size)}, {origin[volume.voxel_size_origin]}"
    )
    return 0
