"""JobPanel: the panel base that runs a core job (Start/Stop, progress, status, errors)."""

from __future__ import annotations

import gc
import threading

import pytest
from napari.utils.notifications import notification_manager
from qtpy.QtCore import QEvent, QObject
from qtpy.QtGui import QCloseEvent
from qtpy.QtWidgets import QApplication

from napari_anatomics.core import heap
from napari_anatomics.core.progress import Cancelled, CancelToken, Progress
from napari_anatomics.napari.jobs import JobPanel
from napari_anatomics.napari.worker import until_cancelled

#: qtbot timeouts only detect a hang, they are no speed target.
HANG_MS = 120_000
N = 10


def count(n: int, cancel: CancelToken, pause_at: int | None, release: threading.Event):
    """A job of ``n`` steps; it waits at ``pause_at`` until ``release``; returns steps done.

    ``pause_at=0``: it fails at step 4 instead.
    """
    for i in range(1, n + 1):
        if cancel.cancelled:
            return i - 1
        if i == pause_at:
            assert release.wait(HANG_MS / 1000)
        if pause_at == 0 and i == 4:
            raise RuntimeError("disk full\nTraceback details nobody should read")
        yield Progress(i, n, f"step {i}")
    return n


class CountPanel(JobPanel):
    """Counts to :data:`N`; ``pause_at`` holds the job at one step until ``release`` is set."""

    title = "Count"

    def __init__(self, viewer, pause_at: int | None = None, wrap: bool = False) -> None:
        super().__init__(viewer, start_text="Count")
        self.pause_at, self.wrap = pause_at, wrap
        self.release = threading.Event()
        self.results: list = []
        self.events: list[int] = []
        self.finished = 0
        self.bad_input = False

    def make_job(self, cancel):
        if self.bad_input:
            raise ValueError("no layer chosen: add one first")
        self.description = "Counting"
        if self.wrap:  # a job that ignores the token, made to honour it
            return until_cancelled(count(N, CancelToken(), self.pause_at, self.release), cancel)
        return count(N, cancel, self.pause_at, self.release)

    def on_progress(self, event):
        super().on_progress(event)
        self.events.append(event.step)

    def on_result(self, result):
        self.results.append(result)
        self.status.setText(f"{result} of {N} steps")

    def on_finish(self):
        super().on_finish()
        self.finished += 1


@pytest.fixture
def panel(make_napari_viewer, qtbot):
    def make(**kwargs) -> CountPanel:
        widget = CountPanel(make_napari_viewer(), **kwargs)
        qtbot.addWidget(widget)
        return widget

    return make


def test_progress_reaches_the_end_and_the_result_arrives(panel, qtbot):
    widget = panel()
    assert widget.stop_button is not None and not widget.stop_button.isEnabled()
    assert widget.start() is not None
    assert widget.busy and not widget.start_button.isEnabled() and widget.stop_button.isEnabled()
    qtbot.waitUntil(lambda: widget.finished == 1, timeout=HANG_MS)
    assert widget.events == list(range(1, N + 1))
    assert (widget.progress.value(), widget.progress.maximum()) == (N, N)
    assert widget.results == [N] and widget.status.text() == f"{N} of {N} steps"
    assert not widget.busy and widget.start_button.isEnabled()
    assert not widget.stop_button.isEnabled() and widget.runs == []


@pytest.mark.parametrize("wrap", [False, True], ids=["token", "until_cancelled"])
def test_stop_midway_ends_cleanly_with_the_partial_result(panel, qtbot, wrap):
    widget = panel(pause_at=4, wrap=wrap)
    widget.start_button.click()
    qtbot.waitUntil(lambda: widget.progress.value() == 3, timeout=HANG_MS)
    assert widget.start() is None  # one main run at a time, said in one line
    assert "still running" in widget.status.text()
    # while the run lasts, the heap alive at its start is out of the collector's walks
    assert heap.holders() == 1 and gc.get_freeze_count() > 0
    widget.stop_button.click()
    assert not widget.stop_button.isEnabled()
    widget.release.set()
    qtbot.waitUntil(lambda: widget.finished == 1, timeout=HANG_MS)
    assert heap.holders() == 0 and gc.get_freeze_count() == 0  # given back as it ends
    if wrap:  # closed at its next event, unseen: nothing to hand over
        assert widget.events == [1, 2, 3] and widget.results == []
        assert widget.status.text() == "Counting stopped"
    else:  # the job finishes the step it was in and returns the steps it did
        assert widget.events == [1, 2, 3, 4] and widget.results == [4]
        assert widget.status.text() == f"Counting stopped: 4 of {N} steps"
    assert widget.start_button.isEnabled() and not widget.busy


def test_an_error_shows_one_line_and_the_panel_recovers(panel, qtbot):
    widget = panel(pause_at=0)
    widget.start()
    qtbot.waitUntil(lambda: widget.finished == 1, timeout=HANG_MS)
    assert widget.status.text() == "Counting failed: disk full"
    assert notification_manager.records[-1].message == "Counting failed: disk full"
    assert widget.results == [] and widget.start_button.isEnabled()


def test_bad_inputs_are_refused_before_any_work(panel):
    widget = panel()
    widget.bad_input = True
    assert widget.start() is None
    assert widget.status.text() == "Count: no layer chosen: add one first"
    assert notification_manager.records[-1].message == widget.status.text()
    assert widget.start_button.isEnabled() and widget.runs == []


def test_cancelled_job_is_no_error_and_closing_stops_runs(panel, qtbot):
    widget = panel(pause_at=2)

    def refuses(cancel):
        yield Progress(1, 2, "half")
        while not cancel.cancelled:
            widget.release.wait(0.01)
        raise Cancelled("a half table would mislead")

    side = CancelToken()
    widget.run(refuses(side), side, description="Measuring", main=False)
    widget.start()
    qtbot.waitUntil(lambda: widget.progress.value() == 1, timeout=HANG_MS)
    widget.close()  # the viewer (or the panel) closing stops every run, quietly
    assert side.cancelled and widget.cancel_token.cancelled
    widget.release.set()
    qtbot.waitUntil(lambda: widget.finished == 1 and not widget.runs, timeout=HANG_MS)
    assert widget.results == [] and "failed" not in widget.status.text()


class KeepOpen(QObject):
    """Eats the viewer window's close events (after the panel saw them): it stays usable."""

    def eventFilter(self, watched, event) -> bool:
        return event.type() == QEvent.Type.Close


def test_closing_the_viewer_stops_a_docked_panels_run(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    widget = CountPanel(viewer, pause_at=2)
    viewer.window.add_dock_widget(widget)
    window = widget.window()
    assert window is not widget  # docked in the viewer's main window
    keep_open = KeepOpen()
    window.installEventFilter(keep_open)  # runs after the panel's filter, installed later
    widget.start()
    token = widget.cancel_token
    qtbot.waitUntil(lambda: widget.progress.value() == 1, timeout=HANG_MS)
    QApplication.sendEvent(window, QCloseEvent())  # the window's close button
    assert token.cancelled
    widget.release.set()
    qtbot.waitUntil(lambda: widget.finished == 1, timeout=HANG_MS)
    assert widget.results == [] and "stopped" not in widget.status.text()  # quietly
    window.removeEventFilter(keep_open)
