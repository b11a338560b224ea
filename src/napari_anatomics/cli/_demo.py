"""``anatomics demo``: the whole loop on the bundled sample."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..io.outputs import check_writable
from ._common import ranged, run_with_bar

#: Free space the demo needs (model, prediction, table and meshes of the bundled sample).
DEMO_BYTES = 64 * 2**20


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
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an earlier demo in --out (without it, it is kept and nothing is written)",
    )
    p.add_argument(
        "--iterations",
        type=ranged(int, "--iterations", 1),
        default=None,
        help="training iterations (default: the recipe's; the time limit usually ends "
        "training first)",
    )
    p.add_argument(
        "--time-limit",
        type=ranged(float, "--time-limit", 0),
        default=5.0,
        metavar="MINUTES",
        help="stop training after this many minutes (5)",
    )
    p.add_argument(
        "--architecture",
        "--arch",
        default="auto",
        choices=("auto", "unet2d", "resunet3d"),
        help="the network (default: chosen from the data, as for anatomics train)",
    )
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_demo)


def _demo(args: argparse.Namespace) -> int:
    out = Path(args.out)
    if (out / "demo-summary.txt").is_file() and not args.overwrite:
        raise FileExistsError(
            f"--out {out}: holds an earlier demo, which is kept (its labels may hold your "
            "edits); add --overwrite to replace it, or choose another --out folder"
        )
    check_writable(out, DEMO_BYTES)

    from ..tasks.demo import format_summary, run_demo

    settings = {"iterations": args.iterations} if args.iterations else {}
    job = run_demo(
        args.out,
        time_limit=args.time_limit or None,
        architecture=args.architecture,
        device=args.device,
        seed=args.seed,
        **settings,
    )
    result = run_with_bar(job, "demo")
    print(format_summary(result))
    return 0
