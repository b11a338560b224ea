"""What the GUI thread is doing while the event loop stalls: a diagnostic for the stall benchmarks.

:class:`StallProbe` runs a watchdog thread beside the event loop. The event
loop's own ticks (:meth:`StallProbe.beat`, from the benchmark's ``QTimer``) tell
it when the loop last ran; when that is older than ``threshold_ms`` it samples
the stack of every thread. It also times every garbage collection
(``gc.callbacks``) and notes when the watchdog itself woke late (another
thread held the GIL). :meth:`StallProbe.report` prints, for each gap in the
ticks, the collections inside it and the frames sampled most often.
"""

from __future__ import annotations

import collections
import gc
import itertools
import sys
import threading
import time
import traceback

#: Innermost frames of threads that wait for work (left out of the report).
IDLE = ("_worker (thread.py", "select (selectors.py", "wait (threading.py", "get (queue.py")


class StallProbe:
    """Sample the threads' stacks while the event loop stalls; time garbage collections.

    Parameters
    ----------
    threshold_ms : float
        A tick older than this counts as a stall.
    every_ms : float
        The watchdog's sampling period.
    """

    def __init__(self, threshold_ms: float = 60.0, every_ms: float = 10.0) -> None:
        self.threshold = threshold_ms / 1e3
        self.every = every_ms / 1e3
        self.last_beat = time.perf_counter()
        self.main = threading.main_thread().ident
        #: (time, thread name, frames) sampled during stalls.
        self.samples: list[tuple[float, str, tuple[str, ...]]] = []
        #: (start, seconds, generation) of each garbage collection.
        self.collections: list[tuple[float, float, int]] = []
        #: (time, seconds late) when the watchdog woke later than asked.
        self.late: list[tuple[float, float]] = []
        self._gc_start = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="stall-probe", daemon=True)

    def beat(self) -> None:
        """The event loop ran (connect to the benchmark's tick timer)."""
        self.last_beat = time.perf_counter()

    def start(self) -> None:
        """Start the watchdog and the collection timing."""
        gc.callbacks.append(self._on_gc)
        self._thread.start()

    def stop(self) -> None:
        """Stop the watchdog and the collection timing."""
        self._stop.set()
        self._thread.join()
        gc.callbacks.remove(self._on_gc)

    def _on_gc(self, phase: str, info: dict) -> None:
        now = time.perf_counter()
        if phase == "start":
            self._gc_start = now
        else:
            self.collections.append((self._gc_start, now - self._gc_start, info["generation"]))

    def _watch(self) -> None:
        names = {t.ident: t.name for t in threading.enumerate()}
        before = time.perf_counter()
        while not self._stop.wait(self.every):
            now = time.perf_counter()
            if now - before > 3 * self.every:
                self.late.append((now, now - before - self.every))
            before = now
            if now - self.last_beat < self.threshold:
                continue
            for ident, frame in sys._current_frames().items():
                if ident == threading.get_ident():
                    continue
                if ident not in names:
                    names = {t.ident: t.name for t in threading.enumerate()}
                stack = tuple(
                    f"{f.name} ({f.filename.rsplit('/', 2)[-1]}:{f.lineno})"
                    for f in traceback.extract_stack(frame)[-16 if ident == self.main else -6 :]
                )
                self.samples.append((now, names.get(ident, str(ident)), stack))

    def report(self, ticks: list[float], longer_ms: float = 100.0, origin: float | None = None):
        """Print what happened in each gap between ``ticks`` longer than ``longer_ms``."""
        origin = ticks[0] if origin is None else origin
        for a, b in itertools.pairwise(ticks):
            if (b - a) * 1e3 <= longer_ms:
                continue
            print(f"--- gap of {(b - a) * 1e3:.0f} ms at {a - origin:.1f} s")
            for start, seconds, generation in self.collections:
                if a <= start <= b:
                    print(f"    gc generation {generation}: {seconds * 1e3:.0f} ms")
            for t, seconds in self.late:
                if a <= t <= b:
                    print(f"    watchdog woke {seconds * 1e3:.0f} ms late (GIL held elsewhere)")
            by_thread: dict[str, collections.Counter] = collections.defaultdict(
                collections.Counter
            )
            for t, name, stack in self.samples:
                if a <= t <= b and not stack[-1].startswith(IDLE):
                    by_thread[name][stack] += 1
            for name, counts in sorted(by_thread.items(), key=lambda kv: kv[0] != "MainThread"):
                for stack, n in counts.most_common(2 if name == "MainThread" else 1):
                    print(f"    {n} x {name}:")
                    for line in stack:
                        print(f"        {line}")
