"""Progress events shared by every long job.

Every long job in napari-anatomics (combining slices, training, prediction,
post-processing, statistics, meshes) is a *generator* that yields
:class:`Progress` events and ``return``-s its result. The consumer decides how
to show the events (a CLI progress bar, a napari progress bar, a plot) and can
stop the job at any time:

* by closing the generator (``gen.close()``, or simply stopping iteration):
  the job's ``finally`` blocks run, so a training run saves its checkpoint;
* by setting a :class:`CancelToken` the job was given, which the job checks
  between steps and answers by returning early with a partial result.

napari's ``thread_worker`` runs such generators directly: ``yielded`` carries
the events, ``returned`` the result, and ``worker.quit()`` closes it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any, TypeVar

T = TypeVar("T")

#: The type of every long job: yields progress, returns a result.
Job = Generator["Progress", None, T]


@dataclass
class Progress:
    """One progress event.

    Parameters
    ----------
    step : int
        Units of work done so far (iterations, tiles, slices, ...).
    total : int or None
        Units of work in all, when known.
    message : str
        A short human-readable line ("tile 3/40", "iteration 120").
    metrics : dict of str to float
        Numbers worth plotting or printing (loss, learning rate, ETA in s).
    payload : object
        Optional data for the consumer, e.g. the region of the output that
        was just written, so a viewer can refresh that tile.
    note : bool
        The message is worth keeping as a log line (a run's recipe, a switch
        to float32...), not just a status that the next event replaces.
    """

    step: int
    total: int | None = None
    message: str = ""
    metrics: dict[str, float] = field(default_factory=dict)
    payload: Any = None
    note: bool = False

    @property
    def fraction(self) -> float | None:
        """Fraction done in [0, 1], or None when the total is unknown."""
        if not self.total:
            return None
        return min(1.0, self.step / self.total)


class CancelToken:
    """A thread-safe flag a job checks between steps."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        """Ask the job to stop at its next check."""
        self._event.set()

    @property
    def cancelled(self) -> bool:
        """True once :meth:`cancel` was called."""
        return self._event.is_set()


class Cancelled(Exception):
    """Raised by a job that cannot return a meaningful partial result."""


def run_job(job: Job[T], callback: Callable[[Progress], Any] | None = None) -> T:
    """Run a job generator to the end and return its result.

    Parameters
    ----------
    job : generator
        A generator yielding :class:`Progress` and returning a result.
    callback : callable, optional
        Called with each event, e.g. to print or to update a progress bar.

    Returns
    -------
    object
        Whatever the job returned.
    """
    while True:
        try:
            event = next(job)
        except StopIteration as stop:
            return stop.value
        if callback is not None:
            callback(event)


def relay(
    job: Generator[Any, None, T], transform: Callable[[Any], Any]
) -> Generator[Any, None, T]:
    """Re-yield a sub-job's events through ``transform``; return the sub-job's result.

    The one loop that drives a job from inside another: ``transform(event)`` gives
    what to yield instead (``None``: nothing). Closing the relay closes the sub-job,
    so its cleanup runs.

    Parameters
    ----------
    job : generator
        A job (or any generator whose ``return`` value is wanted).
    transform : callable
        Maps each yielded value to the value to yield, or to None to drop it.

    Returns
    -------
    object
        Whatever ``job`` returned.
    """
    try:
        while True:
            try:
                event = next(job)
            except StopIteration as stop:
                return stop.value
            out = transform(event)
            if out is not None:
                yield out
    finally:
        job.close()


def stage(name: str, job: Job[T]) -> Job[T]:
    """Re-yield a sub-job's events with ``name`` before each message; return its result.

    Lets a job made of several phases (train, then predict, ...) report each
    phase under its own name: ``result = yield from stage("predict", predict(...))``.
    """

    def named(event: Progress) -> Progress:
        message = f"{name}: {event.message}" if event.message else name
        return Progress(event.step, event.total, message, event.metrics, event.payload, event.note)

    return (yield from relay(job, named))
