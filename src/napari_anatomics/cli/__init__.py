"""The ``anatomics`` command: argument parsing and rendering only.

Each group of subcommands lives in its own module with a ``register``
function that adds its parsers; the work itself is done by the headless core.
"""

from __future__ import annotations

import argparse
import sys
import traceback
from collections.abc import Sequence

from . import _data, _demo, _predict, _quantify, _train

_GROUPS = (_demo, _data, _train, _predict, _quantify)


def build_parser() -> argparse.ArgumentParser:
    """Build the ``anatomics`` argument parser with every subcommand."""
    parser = argparse.ArgumentParser(
        prog="anatomics",
        description=(
            "Segment and quantify organelles in volume EM stacks (SBFSEM, FIB-SEM). "
            "Voxel sizes are given as X,Y,Z in nanometres."
        ),
    )
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for group in _GROUPS:
        group.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("anatomics: interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # one clear line unless --debug
        if args.debug:
            traceback.print_exc()
        else:
            print(f"anatomics {args.command}: error: {err}", file=sys.stderr)
            print("  (run with --debug for the full traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
