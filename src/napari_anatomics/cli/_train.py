"""``anatomics train`` and ``anatomics models``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..core.settings import add_option, add_options, given
from ..train.outputs import check_train_output
from ..train.recipe import RECIPE, SETTINGS
from ._common import add_voxel_size, run_with_bar


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
    p.add_argument("--out", required=True, type=Path, help="model folder to write")
    add_voxel_size(p)
    add_train_options(p)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_train)

    m = sub.add_parser("models", help="list the trained models under a folder")
    m.add_argument("root", nargs="?", default=".", type=Path, help="folder of model folders")
    m.set_defaults(func=_models)


def add_train_options(parser: argparse.ArgumentParser) -> None:
    """Add one option per training setting of :data:`napari_anatomics.train.recipe.SETTINGS`.

    Options default to None ("not given"): the recipe's default (or the data's
    choice) applies, and the help text shows it. ``--task`` is required.
    """
    add_options(parser, SETTINGS, skip=("task",))
    task = RECIPE["task"]
    add_option(parser, task, required=True, default=task.default, help=task.help)


def train_config(args: argparse.Namespace):
    """The :class:`~napari_anatomics.train.recipe.TrainConfig` of parsed ``train`` options."""
    from ..train.recipe import TrainConfig

    values = given(args, SETTINGS)
    if "init_from" in values:
        values["init_from"] = str(values["init_from"])
    return TrainConfig(voxel_size=args.voxel_size, **values)


def _train(args: argparse.Namespace) -> int:
    from ..io.read import open_volume
    from ..models.config import ModelConfig
    from ..train.loop import train

    image = open_volume(args.images, voxel_size=args.voxel_size)
    labels = open_volume(args.labels, voxel_size=args.voxel_size)
    check_train_output(args.out, resume=bool(args.resume), image=image, labels=labels)
    config = train_config(args)
    try:
        folder = run_with_bar(
            train(image, labels, config, args.out), "train", quiet=args.quiet, notes=True
        )
    except KeyboardInterrupt:
        if (args.out / "weights.pt").is_file():
            print(
                f"anatomics train: interrupted; the model so far is saved in {args.out} "
                "(add --resume to the same command to continue it)",
                file=sys.stderr,
            )
        raise
    saved = ModelConfig.load(folder)
    print(f"model saved in {folder} ({saved.iterations} iterations, "
          f"{saved.training.get('precision_used', 'float32')})")
    return _report(saved)


def _report(saved) -> int:
    """Print the held-out scores and decoding; 1 when the model finds nothing."""
    val = saved.validation
    if not val:
        return 0
    scores = [f"Dice {val['dice']:.3f}"]
    if "ap50" in val:
        tp, fp, fn = val["tp_fp_fn"]
        scores.append(f"AP@0.5 {val['ap50']:.3f} ({tp} found, {fp} false, {fn} missed)")
    for name, c in val.get("classes", {}).items():
        scores.append(
            f"{name}: Dice {c['dice']:.3f}, volume fraction "
            f"{100 * c['volume_fraction_found']:.2f} % "
            f"(painted {100 * c['volume_fraction_painted']:.2f} %)"
        )
    print(f"on {val['on']}: " + "; ".join(scores))
    shown = {k: v for k, v in saved.decoding.items() if k not in ("seed_depth_radius",)}
    print(f"decoding (chosen on {val['tuned_on']}, used by predict): {shown}")
    if not val.get("objects_found"):
        print(
            f"anatomics train: warning: the model finds no objects on {val['on']}: it is "
            "not usable yet; train longer, paint more slices, or check the labels with "
            "`anatomics check`",
            file=sys.stderr,
        )
        return 1
    return 0


def _models(args: argparse.Namespace) -> int:
    from ..models.store import list_models

    models = list_models(args.root)
    if not models:
        print(f"no models under {args.root}")
        return 0
    for info in models:
        print(f"{info.path}\t{info.describe()}")
    return 0
