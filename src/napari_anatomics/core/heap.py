"""Short garbage collections while a long job runs beside the viewer: the heap frozen per run.

CPython's full (generation 2) collection walks every object the collector
tracks, holding the GIL. With napari, torch and the rest loaded that is about
400,000 objects: 0.17-0.35 s on these 2-core machines, during which napari's
event loop cannot run (``benchmarks/live_preview_stall.py --diagnose`` caught a
345 ms gap that was one such collection, the "unexplained" gap of an earlier
round). A training run and its live preview make new objects fast enough to
trigger them every few tens of seconds.

:func:`freeze_heap` moves every object alive when a run starts into the
collector's permanent generation (:func:`gc.freeze`, constant time), so the
collections during the run walk only what the run made. When the last run
holding the freeze ends, :func:`gc.unfreeze` gives the objects back to the
collector: garbage older than the run is still collected afterwards, so nothing
leaks. Code of its own that calls :func:`gc.freeze` in the same process is
unfrozen with it.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Callable

_lock = threading.Lock()
_holders = 0


def freeze_heap() -> Callable[[], None]:
    """Freeze the objects alive now out of the collector's walks, until released.

    Returns
    -------
    callable
        Releases this hold (calling it again does nothing); the heap is unfrozen
        when every hold is released.
    """
    global _holders
    with _lock:
        if _holders == 0:
            gc.freeze()
        _holders += 1
    released = threading.Event()

    def release() -> None:
        global _holders
        with _lock:
            if released.is_set():
                return
            released.set()
            _holders -= 1
            if _holders == 0:
                gc.unfreeze()

    return release


def holders() -> int:
    """How many holds of :func:`freeze_heap` are not yet released."""
    return _holders
