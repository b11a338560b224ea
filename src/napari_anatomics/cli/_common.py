"""Helpers shared by the subcommand modules: voxel-size option, progress bars."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any, TypeVar

from tqdm import tqdm

from ..core.progress import Job, Progress, run_job
from ..core.settings import parse_triple
from ..core.volume import parse_voxel_size

T = TypeVar("T")


def add_voxel_size(parser: argparse.ArgumentParser) -> None:
    """Add ``--voxel-size X,Y,Z`` (nm); parsed into (z, y, x) or None."""
    parser.add_argument(
        "--voxel-size",
        type=_voxel_size,
        default=None,
        metavar="X,Y,Z",
        help="voxel size in nm as x,y,z (e.g. 10,10,40) when the file does not record it",
    )


def add_overwrite(parser: argparse.ArgumentParser, what: str) -> None:
    """Add ``--overwrite``: without it an existing output is kept and the run refused."""
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help=f"replace {what} (without it an existing output is kept and nothing is written)",
    )


def ranged(
    cast: Callable[[str], Any],
    flag: str,
    low: float | None = None,
    high: float | None = None,
    *,
    low_open: bool = False,
) -> Callable[[str], Any]:
    """argparse type: a number in ``[low, high]`` (``(low, high]`` with ``low_open``).

    The message names the option, the range and the value given; NaN is refused.
    """

    def parse(text: str) -> Any:
        try:
            value = cast(text)
        except ValueError:
            kind = "an integer" if cast is int else "a number"
            raise argparse.ArgumentTypeError(f"{flag} takes {kind}, not {text!r}") from None
        below = low is not None and (value <= low if low_open else value < low)
        if value != value or below or (high is not None and value > high):
            raise argparse.ArgumentTypeError(
                f"{flag} must be {span(low, high, low_open)}, not {text}"
            )
        return value

    parse.__name__ = cast.__name__
    return parse


def span(low: float | None, high: float | None, low_open: bool = False) -> str:
    """A range in words for messages: ``"in [0, 1]"``, ``"> 0"``, ``">= 1"``."""
    if high is None:
        return f"{'>' if low_open else '>='} {low:g}"
    if low is None:
        return f"<= {high:g}"
    return f"in {'(' if low_open else '['}{low:g}, {high:g}]"


def _voxel_size(text: str) -> tuple[float, float, float]:
    try:
        return parse_voxel_size(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def triple(text: str) -> tuple[int, int, int]:
    """argparse type for ``Z,Y,X`` integer triples (windows, strides)."""
    try:
        return parse_triple(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def run_with_bar(job: Job[T], desc: str, quiet: bool = False, notes: bool = True) -> T:
    """Run a job generator with a tqdm progress bar; return its result.

    Events marked ``note`` are also printed as log lines (``notes``), even
    when ``quiet``. Ctrl-C closes the generator, so the job's cleanup
    (checkpoints, temp files) runs before the interrupt propagates.
    """
    bar = tqdm(desc=desc, unit="", disable=quiet, file=sys.stderr, dynamic_ncols=True)

    def show(event: Progress) -> None:
        if event.total is not None and bar.total != event.total:
            bar.total = event.total
        if notes and event.note:
            bar.write(f"{desc}: {event.message}", file=sys.stderr)
        bar.n = event.step
        # Each event states its own metrics: a new phase clears the last one's.
        bar.set_postfix(
            {k: f"{v:.4g}" for k, v in event.metrics.items() if k != "eta_s"},
            refresh=False,
        )
        if event.message:
            bar.set_description(f"{desc}: {event.message}", refresh=False)
        bar.refresh()

    try:
        return run_job(job, show)
    except KeyboardInterrupt:
        job.close()
        raise
    finally:
        bar.close()
