"""The background writer of :class:`~napari_anatomics.core.chunkcache.CachedArray`.

Chunks changed in memory are written back to the array on disk by one daemon thread,
one whole chunk at a time; a chunk changed again while it was written is written again.
:meth:`WriteBack.flush` waits for the file to hold every change; every live cache is
flushed when the interpreter exits (before the thread pools zarr writes through shut
down). A failed write is kept and raised, in one line, by the next write or flush.
"""

from __future__ import annotations

import atexit
import threading
import weakref
from typing import Any

_LIVE: weakref.WeakSet[WriteBack] = weakref.WeakSet()
_AT_EXIT: list[bool] = []


class WriteBack:
    """Writes changed chunks back in a thread; the base of ``CachedArray``.

    The subclass provides ``array``, ``_chunks``, ``_chunk_box``, ``_evict`` and
    calls :meth:`_init_writer` (after its ``_lock``) in ``__init__``.
    """

    array: Any
    _chunks: dict
    _lock: threading.RLock

    def _init_writer(self) -> None:
        self._dirty: dict[tuple[int, ...], int] = {}  # chunk -> version
        self._wake = threading.Condition(self._lock)
        self._file = threading.Lock()  # reads and writes of the array on disk
        self._writer: threading.Thread | None = None
        self._error: BaseException | None = None
        _LIVE.add(self)

    @property
    def unsaved(self) -> int:
        """Number of chunks whose changes are not in the file yet."""
        with self._lock:
            return len(self._dirty)

    def flush(self, timeout: float | None = None) -> bool:
        """Write every change to the file; wait at most ``timeout`` seconds.

        Returns
        -------
        bool
            True when the file holds every change.

        Raises
        ------
        OSError
            When writing the file failed (the changes stay in memory).
        """
        self._start_writer()
        with self._wake:
            self._wake.wait_for(lambda: not self._dirty or self._error is not None, timeout)
        self._raise_writer_error()
        return not self._dirty

    def _start_writer(self) -> None:
        if not _AT_EXIT:
            _AT_EXIT.append(True)
            # before the thread pools that zarr writes through shut down at exit (they do so
            # before ``atexit``; registered later, this runs first)
            getattr(threading, "_register_atexit", atexit.register)(_flush_all)
        with self._lock:
            if self._dirty and (self._writer is None or not self._writer.is_alive()):
                self._writer = threading.Thread(
                    target=self._write_back, name="anatomics-chunk-writer", daemon=True
                )
                self._writer.start()
            self._wake.notify_all()

    def _write_back(self) -> None:
        while True:
            with self._lock:
                if not self._dirty or self._error is not None:
                    self._wake.notify_all()
                    return
                key, version = next(iter(self._dirty.items()))
                data = self._chunks[key].copy()
            try:
                with self._file:
                    self.array[self._chunk_box(key)] = data
            except BaseException as err:  # kept, raised by the next write or flush
                with self._lock:
                    self._error = err
                    self._wake.notify_all()
                return
            with self._lock:
                if self._dirty.get(key) == version:
                    del self._dirty[key]
                else:  # changed while it was written: write it again
                    self._dirty[key] = self._dirty.pop(key)
                self._evict()
                self._wake.notify_all()

    def _raise_writer_error(self) -> None:
        if self._error is not None:
            raise OSError(
                f"could not write labels changes to {getattr(self.array, 'store', 'the file')}: "
                f"{self._error} (they are kept in memory: save the layer to another file)"
            )


def _flush_all() -> None:
    """Write every unsaved change before the interpreter exits."""
    for array in list(_LIVE):
        try:
            array.flush(timeout=120)
        except OSError as err:
            print(err)
