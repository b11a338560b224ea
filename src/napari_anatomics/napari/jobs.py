"""Run core job generators off the GUI thread with progress and clear errors."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from napari.qt.threading import GeneratorWorker, thread_worker
from napari.utils import progress as napari_progress
from napari.utils.notifications import show_error, show_info

from ..core.progress import Job, Progress


def start_job(
    make_job: Callable[[], Job[Any]],
    *,
    description: str,
    on_event: Callable[[Progress], Any] | None = None,
    on_done: Callable[[Any], Any] | None = None,
    on_finish: Callable[[], Any] | None = None,
    notify_stop: bool = True,
) -> GeneratorWorker:
    """Start a job generator in a ``thread_worker``.

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
    on_finish : callable, optional
        Called in the GUI thread when the worker ends, however it ends
        (success, error or stop): re-enable buttons here.
    notify_stop : bool
        Say "<description> stopped" when the job is quit; turn off for jobs
        the panel itself replaces (e.g. a measurement made stale by an edit).

    Returns
    -------
    GeneratorWorker
        Already started; call ``.quit()`` to stop the job (its cleanup runs).
    """

    # errors go to the notification below, not re-raised as a traceback in the event loop
    @thread_worker(start_thread=False, ignore_errors=True)
    def _run():
        return (yield from make_job())

    worker = _run()
    bar = napari_progress(total=0, desc=description)

    def _event(event: Progress) -> None:
        if event.total and bar.total != event.total:
            bar.total = event.total
        bar.n = event.step
        if event.message:
            bar.set_description(f"{description}: {event.message}")
        bar.refresh()
        if on_event is not None:
            on_event(event)

    def _error(err: Exception) -> None:
        show_error(f"{description} failed: {err}")

    def _finished() -> None:
        bar.close()
        if on_finish is not None:
            on_finish()

    worker.yielded.connect(_event)
    worker.errored.connect(_error)
    worker.finished.connect(_finished)
    if on_done is not None:
        worker.returned.connect(on_done)
    if notify_stop:
        worker.aborted.connect(lambda: show_info(f"{description} stopped"))
    worker.start()
    return worker
