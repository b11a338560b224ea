"""Auto-label subcommands: ``predict`` (tiled prediction + labels) and ``postprocess``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np

from ..io.outputs import check_prediction_output, check_writable
from ._common import add_precision, add_voxel_size, ranged, run_with_bar, triple


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``predict`` and ``postprocess``."""
    p = sub.add_parser(
        "predict",
        help="predict probability maps and labels for a stack with a trained model",
        description="Run a trained model over a stack in overlapping tiles (blended, "
        "mirrored at the edges) and write OUT.zarr with 'probabilities' (C, Z, Y, X) and "
        "'labels' (uint32 objects). Memory grows with the tile, not the stack. An "
        "interrupted run resumes when started again with the same settings. Labels "
        "already in OUT.zarr (perhaps proofread) are kept unless --overwrite is given.",
    )
    p.add_argument("model", metavar="MODEL_DIR", help="model folder written by `anatomics train`")
    p.add_argument("images", metavar="IMAGES", help="image stack (tif, h5[:key], zarr, folder)")
    p.add_argument("--out", required=True, metavar="OUT.zarr", help="output zarr group")
    p.add_argument(
        "--stride",
        type=triple,
        default=None,
        metavar="Z,Y,X",
        help="tile step in model voxels (default: window minus 25%%; at most the window)",
    )
    p.add_argument(
        "--tta",
        type=int,
        choices=(0, 4, 8),
        default=None,
        help="flips/rotations averaged (default: the model's, 4 for models trained with "
        "tuning, else 0)",
    )
    p.add_argument("--tta-mode", choices=("mean", "max"), default="mean")
    p.add_argument(
        "--batch",
        type=ranged(int, "--batch", 1),
        default=2,
        help="tiles per network call (default 2: on CPUs a batch of 1 takes a slow path)",
    )
    p.add_argument(
        "--output",
        choices=("uint8", "float16", "float32"),
        default="uint8",
        help="storage of the probabilities (default uint8: value/255)",
    )
    p.add_argument("--device", default="auto", help="auto, cpu or cuda (default auto)")
    add_precision(p)
    p.add_argument(
        "--memory-mb",
        type=ranged(float, "--memory-mb", 0, low_open=True),
        default=256.0,
        help="memory per region (MB, > 0)",
    )
    cluster = p.add_mutually_exclusive_group()
    cluster.add_argument(
        "--scheduler",
        metavar="ADDR",
        help="a dask.distributed scheduler (tcp://host:8786, or tls://host:8786 with the "
        "--tls-* options). Trust: dask sends pickled Python objects, so the scheduler and "
        "its workers can run code on this machine and read what it sends; connect only "
        "to a cluster you control, over TLS when the network is shared (docs/cluster.md)",
    )
    cluster.add_argument(
        "--workers", type=ranged(int, "--workers", 1), metavar="N", help="local worker processes"
    )
    tls = p.add_argument_group(
        "TLS for --scheduler", "dask's TLS security (distributed.security.Security)"
    )
    tls.add_argument("--tls-ca-file", metavar="CA.pem", help="certificate authority to trust")
    tls.add_argument("--tls-cert", metavar="CERT.pem", help="this client's certificate")
    tls.add_argument("--tls-key", metavar="KEY.pem", help="this client's private key")
    p.add_argument("--no-postprocess", action="store_true", help="write probabilities only")
    _add_postprocess_options(p)
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace existing predictions, and the labels in OUT.zarr (which may hold "
        "your edits: without it they are kept)",
    )
    add_voxel_size(p)
    p.set_defaults(func=_predict)

    p = sub.add_parser(
        "postprocess",
        help="turn probability maps into labels (connected components / watershed)",
        description="Label objects in the probabilities of PRED.zarr block by block with "
        "exact stitching across blocks: semantic maps by connected components per class, "
        "instance maps by a seeded watershed. Writes LABELS.zarr:labels (uint32).",
    )
    p.add_argument("pred", metavar="PRED.zarr", help="output of `anatomics predict` (or :key)")
    p.add_argument("--out", required=True, metavar="LABELS.zarr", help="output zarr group")
    p.add_argument(
        "--task",
        choices=("semantic", "instance"),
        default=None,
        help="kind of maps (default: as recorded by predict)",
    )
    _add_postprocess_options(p)
    p.add_argument("--overwrite", action="store_true", help="replace existing labels")
    add_voxel_size(p)
    p.set_defaults(func=_postprocess)


#: Decoding options: (name, type, low, high, metavar, help). Each defaults to the
#: model's tuned decoding (config.json "decoding"), else to postprocess()'s default.
DECODING_OPTIONS = (
    ("min_size", int, 0, None, "N", "remove objects under N voxels"),
    ("seed_threshold", float, 0.0, 1.0, "P", "instance: seeds need foreground >= this"),
    ("boundary_threshold", float, 0.0, 1.0, "P", "instance: seeds need boundary <= this"),
    ("seed_erosion", int, 0, None, "PX",
     "instance: erode seeds by PX voxels in-plane to split objects joined by a thin neck"),
    ("seed_depth", float, 0.0, 0.99, "F",
     "instance: keep seed voxels at least F times as deep as the deepest one nearby, to "
     "split objects joined by a neck thin for their size (e.g. 0.5)"),
    ("seed_depth_radius", int, 1, None, "PX",
     "instance: the neighbourhood of --seed-depth, about an object's radius"),
    ("min_seed_size", int, 0, None, "N",
     "instance: drop seeds under N voxels before the watershed, so a speck of low boundary "
     "inside an object does not split it"),
    ("foreground_threshold", float, 0.0, 1.0, "P",
     "instance: object voxels need foreground >= this"),
    ("distance_threshold", float, 0.0, 1.0, "P",
     "instance maps with a distance channel: seeds need distance >= this"),
)


def _add_postprocess_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--connectivity", type=int, choices=(6, 18, 26), default=None,
                   help="voxel connectivity of objects (default 26)")
    p.add_argument(
        "--thresholds",
        type=_floats,
        default=None,
        metavar="T1,T2,...",
        help="semantic: probability threshold per class (default: the model's tuned "
        "thresholds, else the most probable class)",
    )
    for name, cast, low, high, metavar, text in DECODING_OPTIONS:
        p.add_argument(
            "--" + name.replace("_", "-"),
            dest=name,
            type=ranged(cast, "--" + name.replace("_", "-"), low, high),
            default=None,
            metavar=metavar,
            help=f"{text} (default: the model's tuned value, else {_DEFAULTS[name]})",
        )


#: postprocess()'s defaults, for the help text (a test checks they agree).
_DEFAULTS = {
    "min_size": 0, "seed_threshold": 0.8, "boundary_threshold": 0.3, "seed_erosion": 0,
    "seed_depth": 0.0, "seed_depth_radius": 60, "min_seed_size": 0,
    "foreground_threshold": 0.5, "distance_threshold": 0.5,
}


def _floats(text: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--thresholds {text!r}: expected numbers like 0.5,0.6"
        ) from None
    if not all(0.0 <= v <= 1.0 for v in values):
        raise argparse.ArgumentTypeError(
            f"--thresholds {text}: each is a probability in [0, 1], e.g. 0.5,0.6"
        )
    return values


def security(args: argparse.Namespace) -> Any:
    """dask's TLS :class:`~distributed.security.Security` from ``--tls-*``, or None.

    Raises
    ------
    ValueError
        When the options do not go together (a key without a certificate, TLS
        options without ``--scheduler`` or with a ``tcp://`` address) or a file
        is missing.
    """
    files = {"--tls-ca-file": args.tls_ca_file, "--tls-cert": args.tls_cert,
             "--tls-key": args.tls_key}  # fmt: skip
    given = {flag: path for flag, path in files.items() if path}
    if not given:
        return None
    if not args.scheduler:
        raise ValueError(f"{', '.join(given)} secure the connection to --scheduler; give one")
    if "--tls-ca-file" not in given or bool(args.tls_cert) != bool(args.tls_key):
        raise ValueError(
            "TLS needs --tls-ca-file, and --tls-cert with --tls-key (this client's "
            "certificate and its key) as the scheduler requires"
        )
    for flag, path in given.items():
        if not Path(path).is_file():
            raise FileNotFoundError(f"{flag} {path}: no such file; check the path")
    if not args.scheduler.startswith("tls://"):
        raise ValueError(
            f"--scheduler {args.scheduler}: with --tls-* options the address must start "
            "with tls:// (e.g. tls://host:8786)"
        )
    from distributed.security import Security

    return Security(
        tls_ca_file=args.tls_ca_file,
        tls_client_cert=args.tls_cert,
        tls_client_key=args.tls_key,
        require_encryption=True,
    )


def _warn_untrusted(address: str) -> None:
    """Say once, where it matters, that a remote scheduler without TLS must be trusted."""
    host = address.split("://")[-1].rsplit(":", 1)[0].strip("[]")
    if host in ("localhost", "127.0.0.1", "::1"):
        return
    print(
        f"note: {address} without TLS: dask sends pickled data, so whoever runs or can "
        "reach this scheduler can run code here; use only a cluster you control "
        "(see --tls-ca-file, docs/cluster.md)",
        file=sys.stderr,
    )


def _postprocess_kwargs(args: argparse.Namespace, tuned: dict | None) -> dict:
    """Decoding keywords: the options given, else the model's tuned decoding."""
    names = [name for name, *_ in DECODING_OPTIONS] + ["connectivity", "thresholds"]
    tuned = {k: v for k, v in (tuned or {}).items() if k in names}
    given = {k: getattr(args, k) for k in names if getattr(args, k) is not None}
    return tuned | given


def _predict(args: argparse.Namespace) -> int:
    import zarr

    from ..core.volume import format_voxel_size
    from ..io.read import open_volume, require_3d
    from ..models.config import ModelConfig

    # Every check that needs no network first (torch takes seconds to import): the
    # output's kind, TLS files, the model's config, the image, room on the disk.
    out = check_prediction_output(args.out)
    tls = security(args)
    config = ModelConfig.load(args.model)
    image = require_3d(open_volume(args.images, voxel_size=args.voxel_size))
    kept = _existing_labels(out) if not args.overwrite else None
    check_writable(out, _prediction_bytes(config, image, out, args, labels=kept is None))
    if args.scheduler and tls is None:
        _warn_untrusted(args.scheduler)

    from ..models.store import load_model
    from ..predict.tiled import model_fingerprint, predict
    from ..segment.postprocess import postprocess

    model = load_model(args.model, device=args.device)
    print(f"model {model.config.name or args.model} ({model.config.task}) on {model.device}")
    print(image.describe())
    trained = model.config.voxel_size
    if any(abs(a - b) > 0.1 * b for a, b in zip(image.voxel_size, trained)):
        print(
            f"note: the model was trained on {format_voxel_size(trained)} voxels; "
            "check the voxel size (--voxel-size X,Y,Z) if objects look wrong"
        )
    job = predict(
        model,
        image,
        args.out,
        stride=args.stride,
        tta=args.tta if args.tta is not None else int(model.config.decoding.get("tta", 0)),
        tta_mode=args.tta_mode,
        batch=args.batch,
        output=args.output,
        memory_mb=args.memory_mb,
        precision=args.precision,
        scheduler=args.scheduler,
        security=tls,
        workers=args.workers,
        overwrite=args.overwrite,
    )
    probabilities = run_with_bar(job, "predict")
    settings = dict(probabilities.attrs["prediction"])
    group = zarr.open_group(args.out, mode="a")
    group.attrs.update(
        {
            "model": {**model_fingerprint(model), "config": model.config.to_dict()},
            "image": image.source,
            "voxel_size_nm": list(image.voxel_size),
            "prediction": settings,
        }
    )
    print(f"wrote {args.out}:probabilities {tuple(probabilities.shape)} {probabilities.dtype}")
    if args.no_postprocess:
        return 0
    if kept is not None:
        print(
            f"kept the labels already in {args.out}:labels (they may hold your edits"
            f"{f'; {kept} objects when written' if kept >= 0 else ''}): add --overwrite to "
            "label again, replacing them, or run "
            f"`anatomics postprocess {args.out} --out OTHER.zarr` for labels with new settings"
        )
        return 0
    labels = run_with_bar(
        postprocess(
            probabilities,
            args.out,
            overwrite=True,
            voxel_size=image.voxel_size,
            **_postprocess_kwargs(args, model.config.decoding),
        ),
        "postprocess",
    )
    group.attrs["postprocess"] = dict(labels.attrs["postprocess"])
    print(f"wrote {args.out}:labels, {labels.attrs['n_objects']} objects")
    return 0


def _existing_labels(out: Path) -> int | None:
    """The object count of labels an earlier run left in ``out`` (-1 if unknown), else None."""
    if not (out / "labels").is_dir():
        return None
    import zarr

    try:
        labels = zarr.open_group(str(out), mode="r")["labels"]
    except Exception:  # a damaged array is still the user's: keep it, count unknown
        return -1
    return int(labels.attrs.get("n_objects", -1))


def _prediction_bytes(config, image, out: Path, args: argparse.Namespace, labels: bool) -> int:
    """What a prediction writes, roughly: maps (uint8 ones compress about 2x) and labels."""
    voxels = int(np.prod(image.shape))
    need = 0
    if args.overwrite or not (out / "probabilities").is_dir():
        need += config.out_channels * voxels * np.dtype(args.output).itemsize // 2
    if labels and not args.no_postprocess:
        need += voxels * 4 // 8  # uint32 ids, mostly runs of equal values
    return need


def _postprocess(args: argparse.Namespace) -> int:
    import zarr

    from ..io.read import split_key
    from ..segment.postprocess import postprocess

    path, key = split_key(args.pred)
    if not Path(path).exists():
        raise FileNotFoundError(f"{path}: no such prediction; check the path")
    out = check_prediction_output(args.out)
    if (out / "labels").is_dir() and not args.overwrite:
        raise FileExistsError(
            f"{out} already holds 'labels', which are kept (they may hold your edits); "
            "choose another output, or add --overwrite to replace them"
        )
    node = zarr.open(str(path), mode="r")
    recorded = dict(node.attrs.get("model", {})) if isinstance(node, zarr.Group) else {}
    tuned = recorded.get("config", {}).get("decoding")
    if isinstance(node, zarr.Group):
        key = key or "probabilities"
        if key not in node:
            raise ValueError(
                f"{path} has no {key!r} array; give PRED.zarr:NAME of the probability maps"
            )
        node = node[key]
    check_writable(out, int(np.prod(node.shape[1:])) * 4 // 8)
    labels = run_with_bar(
        postprocess(
            node,
            args.out,
            task=args.task,
            voxel_size=args.voxel_size,
            overwrite=args.overwrite,
            **_postprocess_kwargs(args, tuned),
        ),
        "postprocess",
    )
    zarr.open_group(args.out, mode="a").attrs.update(
        {"source": str(args.pred), "postprocess": dict(labels.attrs["postprocess"])}
    )
    print(f"wrote {args.out}:labels, {labels.attrs['n_objects']} objects")
    return 0
