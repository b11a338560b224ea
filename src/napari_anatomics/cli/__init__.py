"""The ``anatomics`` command: argument parsing and rendering only.

Each group of subcommands lives in its own module with a ``register``
function that adds its parsers; the work itself is done by the headless core.
"""

from __future__ import annotations

import argparse
import re
import sys
import traceback
from collections.abc import Sequence
from typing import NoReturn

from . import _data, _demo, _predict, _quantify, _train, _view, _zoo

_GROUPS = (_demo, _data, _train, _zoo, _predict, _quantify, _view)


class _Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line, ending with a pointer to ``--help``."""

    def error(self, message: str) -> NoReturn:
        # "argument --iou: --iou 0: ..." -> "--iou 0: ..." (our messages name the option)
        message = re.sub(r"^argument (\S+): (?=\1)", "", message)
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """Build the ``anatomics`` argument parser with every subcommand."""
    parser = _Parser(
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
            line = error_line(err, _output_of(args))
            print(f"anatomics {args.command}: error: {line}", file=sys.stderr)
            print("  (run with --debug for the full traceback)", file=sys.stderr)
        return 1


#: Errors whose text alone does not say what happened ("'labels'", "list index out of range").
_BARE = (KeyError, IndexError, AttributeError, AssertionError, ZeroDivisionError)


def _output_of(args: argparse.Namespace) -> str | None:
    """The output a command writes, to name when an error does not say which file."""
    for name in ("out", "csv", "json"):
        if getattr(args, name, None):
            return str(getattr(args, name))
    return None


def error_line(err: BaseException, output: str | None = None) -> str:
    """The one line an error is reported with: its message, on one line.

    Operating-system errors name the file (else ``output``, what the command
    writes) and the fix (:func:`~napari_anatomics.io.outputs.describe_os_error`);
    errors whose text means nothing alone keep their type name.
    """
    from ..io.outputs import describe_os_error

    text = describe_os_error(err, output) if isinstance(err, OSError) else str(err)
    if isinstance(err, _BARE) or not text:
        text = f"{type(err).__name__}: {text}" if text else type(err).__name__
    return " ".join(text.split())


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
