"""``anatomics demo``: the whole loop on the bundled sample."""

from __future__ import annotations

import argparse

from ._common import run_with_bar


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``demo`` subcommand."""
    p = sub.add_parser(
        "demo",
        help="run the whole loop on the bundled sample (train, auto-label, evaluate, measure)",
        description="Train a small instance model on part of the bundled SBFSEM chloroplast "
        "sample, auto-label the rest, post-process, evaluate against the painted labels, "
        "and write the stats CSV, meshes and a summary into the output folder.",
    )
    p.add_argument("--out", default="anatomics-demo", help="output folder (anatomics-demo)")
    p.add_argument("--iterations", type=int, default=1500, help="training iterations (1500)")
    p.add_argument(
        "--time-limit",
        type=float,
        default=5.0,
        metavar="MINUTES",
        help="stop training after this many minutes (5)",
    )
    p.add_argument(
        "--arch",
        default="unet2d",
        choices=("unet2d", "resunet3d"),
        help="2D U-Net per slice (default) or the anisotropic 3D U-Net",
    )
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_demo)


def _demo(args: argparse.Namespace) -> int:
    from ..demo import format_summary, run_demo

    job = run_demo(
        args.out,
        iterations=args.iterations,
        time_limit_s=args.time_limit * 60 if args.time_limit else None,
        architecture=args.arch,
        device=args.device,
        seed=args.seed,
    )
    result = run_with_bar(job, "demo")
    print(format_summary(result))
    return 0
