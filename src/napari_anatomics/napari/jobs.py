""":class:`JobPanel`: the base of every panel that runs a core job off the GUI thread.

A core job is a generator that yields :class:`~napari_anatomics.core.progress.Progress`
and returns its result (:mod:`napari_anatomics.core.progress`);
:func:`~napari_anatomics.napari.worker.start_job` runs one in a napari
``thread_worker``. :class:`JobPanel` adds what every panel repeats around it:
the viewer, Start and Stop buttons, a progress bar, a status line, the run's
:class:`~napari_anatomics.core.progress.CancelToken`, one Stop policy and one
way to report errors.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from napari.qt.threading import GeneratorWorker
from napari.utils.notifications import show_error
from qtpy.QtCore import QEvent, QObject
from qtpy.QtWidgets import QHBoxLayout, QLabel, QProgressBar, QPushButton, QWidget

from ..core.progress import CancelToken, Job, Progress
from .worker import one_line, start_job

#: Mistakes in a panel's inputs, reported in one line before any work starts.
INPUT_ERRORS = (ValueError, OSError, TypeError)


@dataclass(eq=False)
class JobRun:
    """One run of a job in a panel: its worker, token and how it ended."""

    worker: GeneratorWorker
    cancel: CancelToken
    description: str
    main: bool
    #: Stopped by Stop (not superseded quietly).
    stopped: bool = False
    quiet: bool = False
    returned: bool = False
    result: Any = field(default=None, repr=False)


class JobPanel(QWidget):
    """Base of the panels that run a core job: Start/Stop, progress, status, cancel.

    A subclass builds its own inputs, places :attr:`start_button`,
    :attr:`stop_button` (see :meth:`button_row`), :attr:`progress` and
    :attr:`status` in its layout, and implements :meth:`make_job`. It may
    override the hooks :meth:`on_progress`, :meth:`on_result`,
    :meth:`on_error` and :meth:`on_finish` (calling ``super()`` keeps the
    defaults).

    The life of a run:

    1. Start (:attr:`start_button` or :meth:`start`) makes a new
       :class:`CancelToken` and calls :meth:`make_job` with it in the GUI
       thread. It reads the widgets and returns the job generator (which runs
       nothing yet), or None when there is nothing to do. A ``ValueError``,
       ``OSError`` or ``TypeError`` it raises is a mistake in the inputs:
       :meth:`fail` shows it in one line; nothing starts.
    2. The job runs in a napari ``thread_worker``; each event goes to
       :meth:`on_progress` (default: progress bar and status line).
    3. The job's return value goes to :meth:`on_result`.
    4. An exception in the job is shown in one line, in the status and as a
       notification: "<description> failed: <first line>"; then :meth:`on_error`.
    5. However it ends, :meth:`on_finish` (default: Start enabled, Stop disabled).

    **Stop** (the one policy of every panel): Stop sets the run's
    :class:`CancelToken`. The job checks it between steps and either returns
    its partial result, which goes to :meth:`on_result` like a finished one
    (a training run returns the model it has), or raises
    :class:`~napari_anatomics.core.progress.Cancelled` when a partial result
    would mislead. A job with no ``cancel`` argument is wrapped in
    :func:`~napari_anatomics.napari.worker.until_cancelled` by its panel, which
    closes it at its next event (its cleanup runs). The status then says
    "<description> stopped", followed by what :meth:`on_result` wrote for a
    partial result. Closing the panel, or the viewer window it is docked in,
    stops every run of the panel the same way, quietly.

    One main run at a time: Start during a run is refused in one line, or, for
    a panel that :attr:`restarts`, stops the run quietly (its result and
    messages are dropped) and starts a new one. Besides the main run, a panel
    may start side runs with :meth:`run` (``main=False``): they share the
    status line and the stop on closing, not the buttons.

    Parameters
    ----------
    napari_viewer : napari.viewer.Viewer
    start_text : str
        Label of the Start button.
    stop_text : str or None
        Label of the Stop button; None for a panel whose job is not stoppable
        (then :attr:`stop_button` is None).
    status : str
        The status line before the first run.
    """

    #: The panel's name at the start of its messages ("Export: choose a folder").
    title = "Job"
    #: Start during a main run stops it quietly and starts afresh (a measurement made
    #: stale by an edit), instead of refusing.
    restarts = False
    #: Runs show a bar in napari's activity dock (a subclass may leave short ones out).
    activity = True

    def __init__(
        self,
        napari_viewer,
        *,
        start_text: str = "Start",
        stop_text: str | None = "Stop",
        status: str = "",
    ) -> None:
        super().__init__()
        self.viewer = napari_viewer
        #: The worker of the latest main run (None before the first).
        self.worker: GeneratorWorker | None = None
        #: The token of the main run in progress (None when idle).
        self.cancel_token: CancelToken | None = None
        #: The run's name in messages; :meth:`make_job` may set it.
        self.description = self.title
        self.runs: list[JobRun] = []
        self.start_button = QPushButton(start_text)
        self.start_button.clicked.connect(lambda: self.start())
        self.stop_button: QPushButton | None = None
        if stop_text is not None:
            self.stop_button = QPushButton(stop_text)
            self.stop_button.setEnabled(False)
            self.stop_button.clicked.connect(lambda: self.stop())
        self.progress = QProgressBar()
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.status = QLabel(status)
        self.status.setWordWrap(True)

    # ---- for subclasses ------------------------------------------------------------------
    def make_job(self, cancel: CancelToken) -> Job[Any] | None:
        """The job to run for Start, built from the panel's inputs (GUI thread).

        Parameters
        ----------
        cancel : CancelToken
            The run's token: pass it to the job (or wrap the job in
            :func:`~napari_anatomics.napari.worker.until_cancelled`).

        Returns
        -------
        generator or None
            The job, or None when there is nothing to do (after saying why).

        Raises
        ------
        ValueError, OSError, TypeError
            For a mistake in the inputs; shown in one line by :meth:`fail`.
        """
        raise NotImplementedError

    def on_progress(self, event: Progress) -> None:
        """A progress event of a run: fills the progress bar and the status line."""
        if event.total:
            self.progress.setRange(0, event.total)
            self.progress.setValue(min(event.step, event.total))
        if event.message:
            self.status.setText(event.message)

    def on_result(self, result: Any) -> None:
        """The job's return value (also a partial one after Stop); default: "finished"."""
        self.status.setText(f"{self.description} finished")

    def on_error(self, err: Exception) -> None:
        """Called after an error was shown (status and notification); default: nothing."""

    def on_finish(self) -> None:
        """The main run ended, however it ended: Start enabled, Stop disabled."""
        self.start_button.setEnabled(True)
        if self.stop_button is not None:
            self.stop_button.setEnabled(False)

    def button_row(self, *widgets: QWidget) -> QHBoxLayout:
        """A row with the Start and Stop buttons, then ``widgets``."""
        row = QHBoxLayout()
        for widget in (self.start_button, self.stop_button, *widgets):
            if widget is not None:
                row.addWidget(widget)
        return row

    def fail(self, message: str | BaseException) -> None:
        """Say what went wrong in one line: in the status and as a notification."""
        text = one_line(message) if isinstance(message, BaseException) else message
        if not text.startswith(f"{self.title}:"):
            text = f"{self.title}: {text}"
        self.status.setText(text)
        show_error(text)

    # ---- running ---------------------------------------------------------------------------
    @property
    def busy(self) -> bool:
        """True while the main run is in progress."""
        return self.cancel_token is not None

    def start(self) -> GeneratorWorker | None:
        """Start the panel's job (:meth:`make_job`); return its worker, or None."""
        if self.busy and self.restarts:
            self.stop(quiet=True)
        elif self.busy:
            self.fail(f"{self.description} is still running: wait for it or Stop it")
            return None
        cancel = CancelToken()
        self.description = self.title
        try:
            job = self.make_job(cancel)
        except INPUT_ERRORS as err:
            self.fail(err)
            return None
        if job is None:
            return None
        return self.run(job, cancel)

    def run(
        self,
        job: Job[Any],
        cancel: CancelToken,
        *,
        description: str | None = None,
        on_result: Callable[[Any], Any] | None = None,
        main: bool = True,
    ) -> GeneratorWorker:
        """Run ``job`` in a worker, with this panel's progress, status and Stop policy.

        Parameters
        ----------
        job : generator
            The job (it does not run before this call).
        cancel : CancelToken
            The token the job checks.
        description : str, optional
            The run's name in messages; default :attr:`description`.
        on_result : callable, optional
            Receives the result instead of :meth:`on_result` (for side runs).
        main : bool
            The run of the Start/Stop buttons; side runs leave them alone.

        Returns
        -------
        GeneratorWorker
            Already started.
        """
        description = description or self.description
        handle = on_result or self.on_result
        worker = start_job(
            lambda: job,
            description=description,
            on_event=lambda event: self._event(run, event),
            on_done=lambda result: self._done(run, handle, result),
            on_error=lambda err: self._error(run, err),
            on_finish=lambda: self._finished(run),
            activity=self.activity,
        )
        run = JobRun(worker, cancel, description, main)
        self.runs.append(run)
        self._watch_window()
        if main:
            self.worker, self.cancel_token = worker, cancel
            self.start_button.setEnabled(False)
            if self.stop_button is not None:
                self.stop_button.setEnabled(True)
            self.progress.setRange(0, 0)  # busy until the job says how much there is
            self.status.setText(f"{description}...")
        return worker

    def stop(self, *, quiet: bool = False) -> None:
        """Stop the main run (see the class docstring); ``quiet`` when it is superseded."""
        for run in self.runs:
            if run.main and not run.cancel.cancelled:
                self._stop_run(run, quiet)
        if self.stop_button is not None:
            self.stop_button.setEnabled(False)

    def stop_all(self) -> None:
        """Stop every run of the panel, quietly (the panel or the viewer is closing)."""
        for run in self.runs:
            self._stop_run(run, quiet=True)

    def _stop_run(self, run: JobRun, quiet: bool) -> None:
        run.stopped, run.quiet = True, quiet
        run.cancel.cancel()
        if not quiet and run.main:
            self.status.setText(f"Stopping {run.description}...")

    def _event(self, run: JobRun, event: Progress) -> None:
        if run in self.runs and not run.quiet:
            self.on_progress(event)

    def _done(self, run: JobRun, handle: Callable[[Any], Any], result: Any) -> None:
        run.returned, run.result = True, result
        if run.quiet:
            return
        if not run.stopped:
            handle(result)
            return
        self.status.setText("")
        handle(result)
        detail = self.status.text()
        self.status.setText(f"{run.description} stopped" + (f": {detail}" if detail else ""))

    def _error(self, run: JobRun, err: Exception) -> None:
        if run.quiet:
            return
        message = f"{run.description} failed: {one_line(err)}"
        self.status.setText(message)
        show_error(message)
        self.on_error(err)

    def _finished(self, run: JobRun) -> None:
        if run in self.runs:
            self.runs.remove(run)
        if run.stopped and not run.returned and not run.quiet:
            self.status.setText(f"{run.description} stopped")
        if not run.main or run.cancel is not self.cancel_token:
            return  # a side run, or a main run superseded by a newer one
        self.cancel_token = None
        if self.progress.maximum() == 0:  # never told its total
            self.progress.setRange(0, 1)
            self.progress.setValue(1 if run.returned and not run.stopped else 0)
        self.on_finish()

    # ---- closing ---------------------------------------------------------------------------
    def _watch_window(self) -> None:
        """Watch the window the panel is docked in: closing it stops the panel's runs.

        (No Python reference to it is kept: that would keep the viewer alive.
        ``QWidget.window`` by name: a panel may have a field called ``window``.)
        """
        window = QWidget.window(self)
        if window is not self:
            window.installEventFilter(self)  # installed once: Qt moves a repeat to the front

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        """Stop every run when the viewer window closes."""
        if event.type() == QEvent.Type.Close and watched is QWidget.window(self):
            self.stop_all()
        return False

    def closeEvent(self, event: Any) -> None:
        """Closing the panel stops its runs."""
        self.stop_all()
        super().closeEvent(event)
