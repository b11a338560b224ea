"""Run a core job in a napari ``thread_worker``, and small adapters of jobs for panels.

A core job is a generator that yields :class:`~napari_anatomics.core.progress.Progress`
and returns its result (:mod:`napari_anatomics.core.progress`). :func:`start_job`
runs one with a bar in napari's activity dock and one-line errors;
:func:`until_cancelled` makes a job without a cancel argument honour a
:class:`~napari_anatomics.core.progress.CancelToken`; :func:`call_job` makes a
plain call a job. :class:`~napari_anatomics.napari.jobs.JobPanel` runs its jobs
with these.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from napari.qt.threading import GeneratorWorker, WorkerBase, thread_worker
from napari.utils import progress as napari_progress
from napari.utils.notifications import show_error
from qtpy.QtCore import QThreadPool

from ..core.heap import freeze_heap
from ..core.progress import Cancelled, CancelToken, Job, Progress, relay


def one_line(err: BaseException) -> str:
    """An exception as one readable line (its first line; OS errors with their path)."""
    from ..io.outputs import describe_os_error

    text = describe_os_error(err) if isinstance(err, OSError) else str(err)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[0] if lines else type(err).__name__


def call_job(function: Callable[..., Any], *args: Any, message: str = "", **kwargs: Any) -> Job:
    """A plain function call as a one-step job (it runs when the job does, in its worker).

    Parameters
    ----------
    function : callable
        Called with ``*args`` and ``**kwargs``; its return value is the job's.
    message : str
        The one progress event's message.
    """
    yield Progress(0, 1, message)
    return function(*args, **kwargs)


class JobFailed(Exception):
    """A job's ``RuntimeError``, re-raised under a type the worker reports (same message)."""


def until_cancelled(job: Job[Any], cancel: CancelToken) -> Job[Any]:
    """Make a job that takes no :class:`CancelToken` honour one.

    Re-yields the job's events; once ``cancel`` is set, closes the job at its
    next event (its ``finally`` blocks run, e.g. a half-written output is
    removed) and raises :class:`~napari_anatomics.core.progress.Cancelled`.

    Parameters
    ----------
    job : generator
        A core job without a ``cancel`` argument.
    cancel : CancelToken
        The run's token.

    Returns
    -------
    object
        The job's result, when it ends before a Stop.
    """

    def unless_stopped(event: Progress) -> Progress:
        if cancel.cancelled:
            raise Cancelled("stopped")  # the relay closes the job
        return event

    return (yield from relay(job, unless_stopped))


def start_worker(worker: WorkerBase) -> None:
    """Start a napari/superqt worker with room for it in Qt's global thread pool.

    The pool holds one thread per core. Our jobs (training, a live preview, Auto-label)
    keep their threads for minutes, so on a 2-core machine a training run and its
    preview filled it; the event loop then stalled for as long as each preview ran
    (0.6-1.3 s per slice change, ``benchmarks/live_preview_stall.py``). Every worker
    of this plugin starts here.
    """
    pool = QThreadPool.globalInstance()
    if pool.activeThreadCount() >= pool.maxThreadCount() - 1:
        pool.setMaxThreadCount(pool.activeThreadCount() + 2)
    worker.start()


def start_job(
    make_job: Callable[[], Job[Any]],
    *,
    description: str,
    on_event: Callable[[Progress], Any] | None = None,
    on_done: Callable[[Any], Any] | None = None,
    on_error: Callable[[Exception], Any] | None = None,
    on_finish: Callable[[], Any] | None = None,
    activity: bool = True,
) -> GeneratorWorker:
    """Start a job generator in a ``thread_worker``, with a bar in napari's activity dock.

    While the job runs, the objects alive at its start are out of the garbage
    collector's walks (:func:`~napari_anatomics.core.heap.freeze_heap`), so no
    full collection of the whole heap holds the viewer for 0.2-0.4 s.

    Parameters
    ----------
    make_job : callable
        Returns the job generator; called in the worker thread.
    description : str
        Shown on napari's progress bar and in messages.
    on_event : callable, optional
        Called in the GUI thread with each :class:`Progress` event.
    on_done : callable, optional
        Called in the GUI thread with the job's return value.
    on_error : callable, optional
        Called in the GUI thread with an exception the job raised; default: a
        notification "<description> failed: <one line>". A
        :class:`~napari_anatomics.core.progress.Cancelled` job (stopped with
        nothing to hand over) is no error: neither is called.
    on_finish : callable, optional
        Called in the GUI thread when the worker ends, however it ends.
    activity : bool
        Show the bar in napari's activity dock (adding one costs the GUI thread
        ~0.1-0.2 s: leave it out for jobs that last a moment).

    Returns
    -------
    GeneratorWorker
        Already started.
    """

    # errors go to on_error, not re-raised as a traceback in the event loop
    @thread_worker(start_thread=False, ignore_errors=True)
    def _run():
        try:
            return (yield from make_job())
        except RuntimeError as err:
            # superqt takes a RuntimeError for a deleted worker: it would end the run
            # without a signal, leaving the panel waiting (torch raises them often)
            raise JobFailed(str(err)) from err

    worker = _run()
    release_heap = freeze_heap()  # no full collection of the whole heap stalls the viewer
    bar = napari_progress(total=0, desc=description) if activity else None
    closed: list[bool] = [] if activity else [True]

    def _event(event: Progress) -> None:
        # the panel first: refreshing napari's bar may run the event loop, which would
        # hand the panel later events (and the end of the run) before this one
        if on_event is not None:
            on_event(event)
        if closed:
            return
        if event.total and bar.total != event.total:
            bar.total = event.total
        bar.n = event.step
        if event.message:
            bar.set_description(f"{description}: {event.message}")
        bar.refresh()

    def _error(err: Exception) -> None:
        if isinstance(err, Cancelled):
            return
        if on_error is not None:
            on_error(err)
        else:
            show_error(f"{description} failed: {one_line(err)}")

    def _finished() -> None:
        release_heap()
        if bar is not None:
            bar.close()
        closed.append(True)
        if on_finish is not None:
            on_finish()

    worker.yielded.connect(_event)
    worker.errored.connect(_error)
    worker.finished.connect(_finished)
    if on_done is not None:
        worker.returned.connect(on_done)
    start_worker(worker)
    return worker
