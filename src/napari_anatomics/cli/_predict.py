"""Auto-label subcommands: ``predict`` (tiled prediction + labels) and ``postprocess``.

Their setting options are generated from the declarations
(:data:`napari_anatomics.predict.config.SETTINGS`,
:data:`napari_anatomics.segment.config.SETTINGS`); ``predict`` runs the one
auto-label job (:func:`napari_anatomics.tasks.autolabel.autolabel`).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from ..core.settings import add_option, add_options, given
from ..io.outputs import check_writable
from ..predict.config import PREDICT, PredictConfig
from ..predict.config import SETTINGS as PREDICT_SETTINGS
from ..predict.outputs import check_prediction_output
from ..segment.config import SETTINGS as SEGMENT_SETTINGS
from ..segment.config import SegmentConfig
from ._common import add_voxel_size, run_with_bar


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``predict`` and ``postprocess``; their settings' options come from the configs."""
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
    add_options(p, PREDICT_SETTINGS, skip=("scheduler", "workers"))
    cluster = p.add_mutually_exclusive_group()
    add_option(cluster, PREDICT["scheduler"])
    add_option(cluster, PREDICT["workers"])
    tls = p.add_argument_group(
        "TLS for --scheduler", "dask's TLS security (distributed.security.Security)"
    )
    tls.add_argument("--tls-ca-file", metavar="CA.pem", help="certificate authority to trust")
    tls.add_argument("--tls-cert", metavar="CERT.pem", help="this client's certificate")
    tls.add_argument("--tls-key", metavar="KEY.pem", help="this client's private key")
    p.add_argument("--no-postprocess", action="store_true", help="write probabilities only")
    p.add_argument(
        "--ome-zarr",
        metavar="PATH",
        help="also write the results as multiscale OME-Zarr (axes in nm): the labels into "
        "the labels/ group of PATH when it is an OME-Zarr image, else as a new PATH "
        "(*.ome.zarr); the probabilities beside it (*_probabilities.ome.zarr)",
    )
    add_decoding_options(p)
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
    add_decoding_options(p)
    p.add_argument("--overwrite", action="store_true", help="replace existing labels")
    add_voxel_size(p)
    p.set_defaults(func=_postprocess)


def add_decoding_options(parser: argparse.ArgumentParser) -> None:
    """One option per post-processing setting (:data:`napari_anatomics.segment.config.SETTINGS`).

    Each defaults to the model's tuned decoding (config.json ``decoding``),
    else to :class:`~napari_anatomics.segment.config.SegmentConfig`'s default.
    """
    add_options(parser, SEGMENT_SETTINGS, default_prefix="the model's tuned value, else ")


def predict_config(args: argparse.Namespace) -> PredictConfig:
    """The :class:`PredictConfig` of parsed ``predict`` options (defaults where not given)."""
    return PredictConfig(**given(args, PREDICT_SETTINGS))


def segment_config(args: argparse.Namespace, tuned: dict | None) -> SegmentConfig:
    """The decoding: the options given, else the model's ``tuned`` decoding, else defaults."""
    return replace(SegmentConfig.tuned(tuned), **given(args, SEGMENT_SETTINGS))


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


def _predict(args: argparse.Namespace) -> int:
    from ..core.volume import format_voxel_size
    from ..io.read import open_volume, require_3d
    from ..models.config import ModelConfig

    # Every check that needs no network first (torch takes seconds to import): the
    # output's kind, TLS files, the model's config, the image, room on the disk.
    out = check_prediction_output(args.out)
    tls = security(args)
    settings = predict_config(args)
    config = ModelConfig.load(args.model)
    decoding = segment_config(args, config.decoding)
    image = require_3d(open_volume(args.images, voxel_size=args.voxel_size))
    if args.ome_zarr:
        from ..tasks.autolabel import ome_zarr_targets

        for target in ome_zarr_targets(args.ome_zarr, config.name):
            if target.exists() and not args.overwrite:
                raise FileExistsError(
                    f"--ome-zarr: {target} already exists; choose another name, or replace "
                    "it (--overwrite)"
                )
    labels = not args.no_postprocess and (args.overwrite or not (out / "labels").is_dir())
    check_writable(out, _prediction_bytes(config, image, out, settings, args, labels))
    if settings.scheduler and tls is None:
        _warn_untrusted(settings.scheduler)

    from ..models.store import load_model
    from ..tasks.autolabel import autolabel

    model = load_model(args.model, device=settings.device)
    print(f"model {model.config.name or args.model} ({model.config.task}) on {model.device}")
    print(image.describe())
    trained = model.config.voxel_size
    if any(abs(a - b) > 0.1 * b for a, b in zip(image.voxel_size, trained)):
        print(
            f"note: the model was trained on {format_voxel_size(trained)} voxels; "
            "check the voxel size (--voxel-size X,Y,Z) if objects look wrong"
        )
    job = autolabel(
        image,
        model,
        args.out,
        predict=settings,
        segment=decoding,
        label=not args.no_postprocess,
        overwrite=args.overwrite,
        security=tls,
        ome_zarr=args.ome_zarr,
    )
    result = run_with_bar(job, "auto-label")
    for written in result.ome_zarr:
        print(f"wrote {written} (OME-Zarr)")
    probabilities = result.probabilities
    print(f"wrote {args.out}:probabilities {tuple(probabilities.shape)} {probabilities.dtype}")
    if args.no_postprocess:
        return 0
    if result.kept:
        kept = int(result.labels.attrs.get("n_objects", -1)) if result.labels is not None else -1
        print(
            f"kept the labels already in {args.out}:labels (they may hold your edits"
            f"{f'; {kept} objects when written' if kept >= 0 else ''}): add --overwrite to "
            "label again, replacing them, or run "
            f"`anatomics postprocess {args.out} --out OTHER.zarr` for labels with new settings"
        )
        return 0
    print(f"wrote {args.out}:labels, {result.labels.attrs['n_objects']} objects")
    return 0


def _prediction_bytes(
    config, image, out: Path, settings: PredictConfig, args: argparse.Namespace, labels: bool
) -> int:
    """What a prediction writes, roughly: maps (uint8 ones compress about 2x) and labels."""
    voxels = int(np.prod(image.shape))
    need = 0
    if args.overwrite or not (out / "probabilities").is_dir():
        need += config.out_channels * voxels * np.dtype(settings.output).itemsize // 2
    if labels:
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
    job = postprocess(
        node,
        args.out,
        segment_config(args, tuned),
        task=args.task,
        voxel_size=args.voxel_size,
        overwrite=args.overwrite,
    )
    labels = run_with_bar(job, "postprocess")
    zarr.open_group(args.out, mode="a").attrs.update(
        {"source": str(args.pred), "postprocess": dict(labels.attrs["postprocess"])}
    )
    print(f"wrote {args.out}:labels, {labels.attrs['n_objects']} objects")
    return 0
