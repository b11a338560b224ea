"""The blockwise engine: one block type, one iterator, one resumable runner.

Every stage that works on a stack larger than memory (prediction, post-processing,
statistics, writers) cuts it into blocks the same way:

* :func:`iter_blocks` cuts ``shape`` into blocks of ``block_shape`` in C order (the last
  axis fastest); the last block along an axis may be shorter. Along an axis the block
  size is one number, or the sizes of every block (like a dask array's chunks).
* A :class:`Block` has a ``write`` box, the voxels it owns (the write boxes of all
  blocks cover every voxel exactly once), and a ``read`` box: the write box grown by a
  ``halo`` on each side and clipped to the stack, the voxels it needs to see.
  ``Block.index`` is its position in C order: the same for the same shape and block
  shape, so a run can record which blocks are done and resume.
* :func:`run_blocks` calls ``process(block, *args)`` for every block for which
  ``done(block)`` is not true (those were finished by an earlier run), on a
  :class:`LocalExecutor` (in this process, in order) or a :class:`DaskExecutor` (on a
  ``distributed.Client``, gathered as they complete, in any order). ``process`` writes
  the block's output itself (only inside the write box, so blocks never collide and
  writing a block twice gives the same result) and returns a small value. The runner is
  a job (see :mod:`~napari_anatomics.core.progress`): it yields a ``Progress`` per
  finished block, with the block as ``payload``, checks ``cancel`` between blocks and
  returns a :class:`BlockRun`.

Modelled on daisy's ``Block(read_roi, write_roi)`` and ``Task(process_function,
check_function)``.
"""

from __future__ import annotations

import inspect
import itertools
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from .progress import CancelToken, Job, Progress, relay

#: The one default chunk (z, y, x): written arrays, prediction outputs and labels.
DEFAULT_CHUNKS: tuple[int, int, int] = (32, 256, 256)

Box = tuple[slice, ...]


@dataclass(frozen=True)
class Block:
    """One block of a stack: the voxels it writes and the voxels it reads.

    Attributes
    ----------
    index : int
        Position in C order among the blocks of :func:`iter_blocks`.
    write : tuple of slice
        The voxels this block owns (``step`` is None).
    read : tuple of slice
        ``write`` grown by the halo and clipped to the stack.
    """

    index: int
    write: Box
    read: Box

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of the write box."""
        return tuple(s.stop - s.start for s in self.write)

    @property
    def read_shape(self) -> tuple[int, ...]:
        """Shape of the read box."""
        return tuple(s.stop - s.start for s in self.read)

    @property
    def offset(self) -> tuple[int, ...]:
        """First voxel of the write box."""
        return tuple(s.start for s in self.write)

    @property
    def inner(self) -> Box:
        """The write box relative to the read box: ``data[block.inner]`` of read data."""
        return tuple(
            slice(w.start - r.start, w.stop - r.start) for w, r in zip(self.write, self.read)
        )


def axis_slices(shape: Sequence[int], block_shape: Sequence[int | Sequence[int]]) -> list[Box]:
    """The write slices along each axis: ``block_shape[k]`` is a size or every block's size.

    Raises
    ------
    ValueError
        When the lengths differ, a size is not positive, or listed sizes do not add up
        to the shape.
    """
    if len(block_shape) != len(shape):
        raise ValueError(f"block shape {tuple(block_shape)} does not match shape {tuple(shape)}")
    out = []
    for size, block in zip(shape, block_shape):
        size = int(size)
        if isinstance(block, Sequence):
            sizes = [int(b) for b in block]
            if sum(sizes) != size or (sizes and min(sizes) < 1):
                raise ValueError(f"block sizes {tuple(sizes)} do not add up to {size}")
            edges = list(itertools.accumulate(sizes, initial=0))
            out.append(tuple(slice(a, b) for a, b in itertools.pairwise(edges)))
        else:
            if int(block) < 1:
                raise ValueError(f"block shape {tuple(block_shape)} must be positive")
            out.append(tuple(slice(a, min(a + int(block), size)) for a in range(0, size, block)))
    return out


def grow_box(box: Sequence[slice], halo: Sequence[int], shape: Sequence[int]) -> Box:
    """``box`` grown by ``halo`` voxels on each side per axis, clipped to ``shape``.

    Parameters
    ----------
    box : sequence of slice
        Slices with explicit start and stop.
    halo : sequence of int
        Voxels per axis.
    shape : sequence of int
        The stack's shape.

    Returns
    -------
    tuple of slice
    """
    return tuple(
        slice(max(s.start - h, 0), min(s.stop + h, int(n))) for s, h, n in zip(box, halo, shape)
    )


def iter_blocks(
    shape: Sequence[int],
    block_shape: Sequence[int | Sequence[int]],
    halo: int | Sequence[int] = 0,
) -> Iterator[Block]:
    """The blocks covering ``shape``, in C order (see the module docstring).

    Parameters
    ----------
    shape : sequence of int
        The stack's shape.
    block_shape : sequence of int, or of sequences of int
        Per axis, the block size (the last block may be shorter) or the size of every
        block (a dask array's ``chunks``).
    halo : int or sequence of int
        Voxels the read box reaches beyond the write box on each side, per axis.

    Yields
    ------
    Block
    """
    halos = [int(halo)] * len(shape) if isinstance(halo, int) else [int(h) for h in halo]
    if len(halos) != len(shape) or min(halos, default=0) < 0:
        raise ValueError(f"halo {halo!r} must be one or {len(shape)} sizes of 0 or more")
    for index, write in enumerate(itertools.product(*axis_slices(shape, block_shape))):
        read = grow_box(write, halos, shape)
        yield Block(index, tuple(write), read)


class Executor(Protocol):
    """Runs ``process(block, *args)`` for blocks; yields (block, result) as each finishes."""

    def map(
        self, process: Callable[..., Any], blocks: Sequence[Block], args: tuple = ()
    ) -> Generator[tuple[Block, Any], None, None]:
        """Process ``blocks``; closing the iterator stops the blocks not yet started."""
        ...


@dataclass(frozen=True)
class Partial:
    """A progress event of a block still running (from a ``process`` that is a job)."""

    event: Progress


class LocalExecutor:
    """Processes blocks in this process, one after the other, in order.

    ``process`` may itself be a job (a generator function yielding
    :class:`~napari_anatomics.core.progress.Progress` and returning the block's result):
    its events come out as ``(block, Partial(event))`` while the block runs, so a long
    block (a prediction region of many tiles) reports progress and can be stopped
    part-way.
    """

    def map(
        self, process: Callable[..., Any], blocks: Sequence[Block], args: tuple = ()
    ) -> Generator[tuple[Block, Any], None, None]:
        """Yield ``(block, process(block, *args))`` block by block."""
        for block in blocks:
            result = process(block, *args)
            if inspect.isgenerator(result):
                result = yield from relay(result, lambda event, b=block: (b, Partial(event)))
            yield block, result


class DaskExecutor:
    """Processes blocks as tasks on a ``distributed.Client``, gathered as they complete.

    ``process`` and ``args`` travel by pickle: ``process`` must be importable (a
    module-level function); futures in ``args`` (``client.scatter``) are resolved on
    the workers. Closing the iterator cancels the blocks not yet finished.
    """

    def __init__(self, client: Any) -> None:
        self.client = client

    def map(
        self, process: Callable[..., Any], blocks: Sequence[Block], args: tuple = ()
    ) -> Generator[tuple[Block, Any], None, None]:
        """Submit every block, then yield ``(block, result)`` in order of completion."""
        from distributed import as_completed

        futures = {
            self.client.submit(process, block, *args, pure=False): block for block in blocks
        }
        try:
            for future in as_completed(list(futures)):
                yield futures[future], future.result()
        finally:
            for future in futures:
                future.cancel()


@dataclass
class BlockRun:
    """What :func:`run_blocks` did.

    Attributes
    ----------
    total : int
        Blocks in all.
    skipped : list of int
        Indices of the blocks already done before this run (``done`` was true).
    results : dict of int to object
        ``process``'s result per block index processed in this run, in index order.
    cancelled : bool
        The run stopped early; blocks not in ``results`` or ``skipped`` are not done.
    """

    total: int
    skipped: list[int] = field(default_factory=list)
    results: dict[int, Any] = field(default_factory=dict)
    cancelled: bool = False

    @property
    def complete(self) -> bool:
        """Every block is done (now or before)."""
        return not self.cancelled and len(self.skipped) + len(self.results) == self.total


def run_blocks(
    blocks: Iterable[Block],
    process: Callable[..., Any],
    *,
    args: tuple = (),
    done: Callable[[Block], bool] | None = None,
    executor: Executor | None = None,
    cancel: CancelToken | None = None,
    on_done: Callable[[Block, Any], None] | None = None,
    what: str = "block",
) -> Job[BlockRun]:
    """Process every block not yet done; a job yielding progress per block.

    Parameters
    ----------
    blocks : iterable of Block
        The blocks to run (usually from :func:`iter_blocks`).
    process : callable
        ``process(block, *args)`` computes and writes one block and returns a (small)
        result. Run locally it may be a job whose events pass through (see
        :class:`LocalExecutor`); cancelling then stops the block part-way.
    args : tuple
        More arguments for ``process`` (with a :class:`DaskExecutor`, futures are
        resolved on the workers).
    done : callable, optional
        ``done(block)`` is true for a block an earlier run finished: it is skipped.
    executor : LocalExecutor or DaskExecutor, optional
        Where blocks run; default: this process, in order.
    cancel : CancelToken, optional
        Checked after each block; a cancelled run returns what it finished so far.
    on_done : callable, optional
        ``on_done(block, result)``, called in this process as each block finishes
        (e.g. to record it as done), before its progress event.
    what : str
        The word used in progress messages.

    Yields
    ------
    Progress
        One event first when resuming, then one per finished block (``payload``: the
        Block).

    Returns
    -------
    BlockRun
    """
    blocks = list(blocks)
    run = BlockRun(len(blocks))
    todo = []
    for block in blocks:
        if done is not None and done(block):
            run.skipped.append(block.index)
        else:
            todo.append(block)
    if run.skipped:
        yield Progress(
            len(run.skipped),
            run.total,
            f"resuming: {len(run.skipped)}/{run.total} {what}s done",
            note=True,
        )
    if cancel is not None and cancel.cancelled:
        run.cancelled = bool(todo)
        return run
    finished = (executor or LocalExecutor()).map(process, todo, args)
    try:
        for block, result in finished:
            if isinstance(result, Partial):  # a running block's own progress
                yield result.event
                if cancel is not None and cancel.cancelled:
                    run.cancelled = True
                    break
                continue
            run.results[block.index] = result
            if on_done is not None:
                on_done(block, result)
            step = len(run.skipped) + len(run.results)
            yield Progress(step, run.total, f"{what} {step}/{run.total}", payload=block)
            if cancel is not None and cancel.cancelled and step < run.total:
                run.cancelled = True
                break
    finally:
        finished.close()
    run.results = dict(sorted(run.results.items()))
    return run
