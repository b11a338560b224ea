"""``anatomics train`` and ``anatomics models``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..io.outputs import check_train_output
from ..train.recipe import SETTINGS
from ._common import add_voxel_size, run_with_bar, triple


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
    choice) applies, and the help text shows it.
    """
    for setting in SETTINGS:
        if not setting.cli:
            continue
        kwargs: dict = {"dest": setting.name, "default": None, "help": _help(setting)}
        if setting.name == "task":
            kwargs |= {"required": True, "default": setting.default}
        if setting.kind == "bool":
            kwargs["action"] = argparse.BooleanOptionalAction
        elif setting.choices:
            kwargs["choices"] = setting.choices
        elif setting.kind in ("int", "float"):
            kwargs["type"] = _ranged(setting)
        elif setting.kind == "triple":
            kwargs["type"] = triple
        elif setting.kind == "names":
            kwargs["type"] = _names
        if setting.metavar and "choices" not in kwargs and setting.kind != "bool":
            kwargs["metavar"] = setting.metavar
        parser.add_argument(setting.flag, *setting.aliases, **kwargs)


def _help(setting) -> str:
    if setting.auto:
        return f"{setting.help} (default: {setting.auto})"
    if setting.default is None or setting.name == "task":
        return setting.help
    shown = setting.default
    if setting.kind == "bool":
        shown = "on" if shown else "off"
    return f"{setting.help} (default {shown})".replace("%", "%%")


def _ranged(setting):
    cast = int if setting.kind == "int" else float

    def parse(text: str):
        try:
            value = cast(text)
            setting.check(value)
        except ValueError as err:
            raise argparse.ArgumentTypeError(str(err) if "must" in str(err) else (
                f"{text!r} is not a{'n integer' if cast is int else ' number'}"
            )) from None
        return value

    parse.__name__ = setting.kind
    return parse


def _names(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def train_config(args: argparse.Namespace):
    """The :class:`~napari_anatomics.train.recipe.TrainConfig` of parsed ``train`` options."""
    from ..train.recipe import TrainConfig

    given = {s.name: getattr(args, s.name) for s in SETTINGS if s.cli}
    given = {k: v for k, v in given.items() if v is not None}
    if "init_from" in given:
        given["init_from"] = str(given["init_from"])
    return TrainConfig(voxel_size=args.voxel_size, **given)


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
