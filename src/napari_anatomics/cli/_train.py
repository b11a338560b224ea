"""``anatomics train`` and ``anatomics models``."""

from __future__ import annotations

import argparse
from pathlib import Path

from ._common import add_precision, add_voxel_size, run_with_bar, triple


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``train`` and ``models`` to ``sub``."""
    p = sub.add_parser(
        "train",
        help="train a segmentation model from painted slices",
        description=(
            "Train a semantic (classes) or instance (separate objects) model from an image "
            "stack and its painted labels. Only painted slices count: a slice with any "
            "label is annotated (its unpainted voxels are background), slices without "
            "labels are ignored. Stops at --iterations or --time-limit, whichever comes "
            "first, and saves; Ctrl-C saves too, and --resume continues."
        ),
    )
    p.add_argument("--images", required=True, help="image stack (tif, h5, zarr, slice folder)")
    p.add_argument("--labels", required=True, help="painted labels, same shape as the images")
    p.add_argument("--task", required=True, choices=("semantic", "instance"))
    p.add_argument("--out", required=True, type=Path, help="model folder to write")
    p.add_argument("--window", type=triple, metavar="Z,Y,X", help="crop size at model resolution")
    add_voxel_size(p)
    p.add_argument(
        "--downsample",
        type=triple,
        default=(1, 1, 1),
        metavar="Z,Y,X",
        help="reduce the data by these factors before the network (e.g. 1,4,4)",
    )
    p.add_argument("--iterations", type=int, default=1000)
    p.add_argument("--batch", type=int, default=2, help="crops per step (>= 2 is fast on CPUs)")
    p.add_argument("--lr", type=float, default=2e-3, help="peak learning rate (AdamW)")
    p.add_argument("--save-every", type=int, default=200, metavar="N")
    p.add_argument("--time-limit", type=float, metavar="MINUTES", help="stop and save after this")
    p.add_argument("--val-fraction", type=float, default=0.0, metavar="F")
    p.add_argument("--init-from", type=Path, metavar="DIR", help="fine-tune this earlier model")
    p.add_argument("--resume", action="store_true", help="continue the run saved in --out")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--arch", choices=("resunet3d", "unet2d"), default="resunet3d")
    p.add_argument("--width", type=int, default=16, help="channels of the top level")
    p.add_argument("--depth", type=int, default=4, help="resolution levels")
    p.add_argument("--distance", action="store_true", help="instance: add a distance map")
    p.add_argument(
        "--zoom",
        type=float,
        default=0.0,
        metavar="S",
        help="zoom augmentation: crops shown at x1/(1+S) to x(1+S); helps when object "
        "sizes vary (e.g. 0.5)",
    )
    p.add_argument("--elastic", type=float, default=0.0, metavar="PX", help="elastic warp")
    p.add_argument(
        "--copy-paste",
        type=float,
        default=0.0,
        metavar="P",
        help="share of crops that get a painted object pasted in from elsewhere (e.g. 0.5: "
        "objects seen away from their usual surroundings)",
    )
    p.add_argument(
        "--brightness",
        type=float,
        default=0.2,
        metavar="B",
        help="brightness augmentation: largest shift in std units (default 0.2)",
    )
    p.add_argument(
        "--contrast",
        type=float,
        default=0.2,
        metavar="C",
        help="contrast augmentation: x(1-C) to x(1+C) (default 0.2; raise both when the "
        "stack to label is darker or flatter than the painted part)",
    )
    p.add_argument(
        "--object-crops",
        type=float,
        default=0.5,
        metavar="F",
        help="share of crops centred on a painted object (default 0.5; raise it when "
        "objects are small or sparse)",
    )
    p.add_argument(
        "--contact-weight",
        type=float,
        default=1.0,
        metavar="W",
        help="instance: loss weight where two objects touch (e.g. 10 when touching "
        "objects get merged)",
    )
    p.add_argument("--ignore-value", type=int, metavar="V", help="label value meaning unpainted")
    p.add_argument("--classes", metavar="NAMES", help="semantic class names, comma separated")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, help="CPU threads (default: all cores)")
    add_precision(p)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_train)

    m = sub.add_parser("models", help="list the trained models under a folder")
    m.add_argument("root", nargs="?", default=".", type=Path, help="folder of model folders")
    m.set_defaults(func=_models)


def _train(args: argparse.Namespace) -> int:
    from ..io import open_volume
    from ..training import TrainConfig, train

    image = open_volume(args.images, voxel_size=args.voxel_size)
    labels = open_volume(args.labels, voxel_size=args.voxel_size)
    config = TrainConfig(
        task=args.task,
        window=args.window,
        voxel_size=args.voxel_size,
        downsample=args.downsample,
        iterations=args.iterations,
        batch=args.batch,
        lr=args.lr,
        save_every=args.save_every,
        time_limit_s=args.time_limit * 60 if args.time_limit else None,
        val_fraction=args.val_fraction,
        init_from=str(args.init_from) if args.init_from else None,
        resume=args.resume,
        device=args.device,
        architecture=args.arch,
        width=args.width,
        depth=args.depth,
        distance=args.distance,
        scale=args.zoom,
        elastic=args.elastic,
        copy_paste=args.copy_paste,
        brightness=args.brightness,
        contrast=args.contrast,
        fg_fraction=args.object_crops,
        contact_weight=args.contact_weight,
        ignore_value=args.ignore_value,
        class_names=[c.strip() for c in args.classes.split(",")] if args.classes else None,
        seed=args.seed,
        num_threads=args.threads,
        precision=args.precision,
    )
    folder = run_with_bar(train(image, labels, config, args.out), "train", quiet=args.quiet)
    from ..model_config import ModelConfig

    saved = ModelConfig.load(folder)
    print(f"model saved in {folder} ({saved.iterations} iterations)")
    return 0


def _models(args: argparse.Namespace) -> int:
    from ..model_store import list_models

    models = list_models(args.root)
    if not models:
        print(f"no models under {args.root}")
        return 0
    for info in models:
        print(f"{info.path}\t{info.describe()}")
    return 0
