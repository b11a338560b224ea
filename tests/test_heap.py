"""core.heap: the heap frozen out of the garbage collector's walks while runs last."""

from __future__ import annotations

import gc
import weakref

from napari_anatomics.core import heap


class Node:
    """A reference cycle's member (only the cycle collector frees it)."""

    def __init__(self) -> None:
        self.me = self


def test_old_garbage_waits_for_the_end_of_the_runs_and_is_then_collected():
    assert heap.holders() == 0 and gc.get_freeze_count() == 0
    before = Node()
    gone_before = weakref.ref(before)
    first = heap.freeze_heap()
    second = heap.freeze_heap()  # two runs at once
    assert heap.holders() == 2 and gc.get_freeze_count() > 0
    del before
    during = Node()
    gone_during = weakref.ref(during)
    del during
    gc.collect()
    # what the runs made is collected as usual; what was alive when they started is
    # not walked (so a full collection costs only the runs' objects)
    assert gone_during() is None and gone_before() is not None
    first()
    first()  # a second release of the same hold changes nothing
    assert heap.holders() == 1 and gc.get_freeze_count() > 0
    gc.collect()
    assert gone_before() is not None
    second()
    assert heap.holders() == 0 and gc.get_freeze_count() == 0
    gc.collect()
    assert gone_before() is None  # nothing leaks
