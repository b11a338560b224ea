"""The blockwise engine (``core/blocks.py``) and atomic writes (``core/files.py``)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import zarr

from napari_anatomics.core.blocks import (
    DEFAULT_CHUNKS,
    Block,
    DaskExecutor,
    LocalExecutor,
    iter_blocks,
    run_blocks,
)
from napari_anatomics.core.files import atomic_path, replace_path
from napari_anatomics.core.progress import CancelToken, Progress, run_job
from napari_anatomics.io.write import write_zarr
from napari_anatomics.predict.tiling import TilePlan

# --- the iterator ---------------------------------------------------------------------


def test_write_boxes_cover_every_voxel_once_in_c_order():
    shape = (7, 10, 5)
    blocks = list(iter_blocks(shape, (3, 4, 5)))
    assert [b.index for b in blocks] == list(range(3 * 3 * 1))
    assert blocks[0].write == (slice(0, 3), slice(0, 4), slice(0, 5))
    assert blocks[1].write == (slice(0, 3), slice(4, 8), slice(0, 5))  # the last axis first
    assert blocks[2].write == (slice(0, 3), slice(8, 10), slice(0, 5))  # shorter at the end
    assert blocks[-1].write == (slice(6, 7), slice(8, 10), slice(0, 5))
    count = np.zeros(shape, np.int32)
    for block in blocks:
        count[block.write] += 1
        assert block.read == block.write  # no halo
        assert block.shape == count[block.write].shape
    assert (count == 1).all()


def test_listed_block_sizes_like_dask_chunks():
    blocks = list(iter_blocks((6, 4), ((1, 5), 4)))
    assert [b.write for b in blocks] == [
        (slice(0, 1), slice(0, 4)),
        (slice(1, 6), slice(0, 4)),
    ]
    with pytest.raises(ValueError, match="do not add up"):
        list(iter_blocks((6, 4), ((1, 4), 4)))
    with pytest.raises(ValueError, match="positive"):
        list(iter_blocks((6, 4), (0, 4)))


def test_halo_is_clipped_at_the_stack_faces():
    shape = (9, 8)
    blocks = list(iter_blocks(shape, (3, 4), halo=(2, 1)))
    first, middle, last = blocks[0], blocks[2], blocks[-1]
    assert first.read == (slice(0, 5), slice(0, 5))  # clipped below, grown above
    assert middle.write == (slice(3, 6), slice(0, 4))
    assert middle.read == (slice(1, 8), slice(0, 5))
    assert last.read == (slice(4, 9), slice(3, 8))  # clipped above
    data = np.arange(np.prod(shape)).reshape(shape)
    for block in blocks:  # the write box inside the read data is the write box
        np.testing.assert_array_equal(data[block.read][block.inner], data[block.write])
        assert block.offset == tuple(s.start for s in block.write)
        assert block.read_shape == data[block.read].shape
    with pytest.raises(ValueError, match="halo"):
        list(iter_blocks(shape, (3, 4), halo=-1))


def test_one_default_chunking_for_writers_and_predictions(tmp_path):
    shape = (40, 300, 20)
    path = write_zarr(np.zeros(shape, np.uint8), tmp_path / "a.zarr")
    expected = tuple(min(c, s) for c, s in zip(DEFAULT_CHUNKS, shape))
    assert zarr.open_array(path, mode="r").chunks == expected
    assert TilePlan.create(shape, (8, 16, 16)).chunks == expected


# --- the runner -----------------------------------------------------------------------


def _box_sum(block: Block, source, target) -> int:
    """Sum of each voxel's neighbourhood (a halo of 1) over the read box; returns the count."""
    read = np.pad(np.asarray(source[block.read], np.int64), 1)
    out = np.zeros(block.read_shape, np.int64)
    for dz in range(3):
        for dy in range(3):
            for dx in range(3):
                out += read[
                    dz : dz + block.read_shape[0],
                    dy : dy + block.read_shape[1],
                    dx : dx + block.read_shape[2],
                ]
    target[block.write] = out[block.inner]
    return int(np.prod(block.shape))


@pytest.fixture
def volume():
    return np.random.default_rng(0).integers(0, 10, (6, 9, 7))


def _expected(volume):
    padded = np.pad(volume.astype(np.int64), 1)
    out = np.zeros(volume.shape, np.int64)
    for dz in range(3):
        for dy in range(3):
            for dx in range(3):
                out += padded[
                    dz : dz + volume.shape[0], dy : dy + volume.shape[1], dx : dx + volume.shape[2]
                ]
    return out


def test_run_blocks_gives_the_whole_volume_result(volume):
    target = np.zeros(volume.shape, np.int64)
    events = []
    blocks = list(iter_blocks(volume.shape, (4, 4, 4), halo=1))
    run = run_job(run_blocks(blocks, _box_sum, args=(volume, target)), events.append)
    np.testing.assert_array_equal(target, _expected(volume))
    assert run.complete and run.skipped == [] and sum(run.results.values()) == volume.size
    assert [e.step for e in events] == list(range(1, len(blocks) + 1))
    assert [e.payload.index for e in events] == list(range(len(blocks)))
    assert events[-1].message == f"block {len(blocks)}/{len(blocks)}"


def test_resume_skips_the_blocks_done_before(volume):
    blocks = list(iter_blocks(volume.shape, (3, 5, 7), halo=1))
    target = np.full(volume.shape, -1, np.int64)
    done_before = {0, 2}
    seen = []

    def process(block: Block) -> int:
        seen.append(block.index)
        return _box_sum(block, volume, target)

    events = []
    run = run_job(
        run_blocks(blocks, process, done=lambda b: b.index in done_before), events.append
    )
    assert seen == [i for i in range(len(blocks)) if i not in done_before]
    assert run.skipped == [0, 2] and sorted(run.results) == seen and run.complete
    assert events[0].message.startswith("resuming: 2/") and events[1].step == 3
    for block in blocks:  # the skipped blocks were not written again
        if block.index in done_before:
            assert (target[block.write] == -1).all()
        else:
            np.testing.assert_array_equal(target[block.write], _expected(volume)[block.write])


def test_cancel_stops_after_the_current_block(volume):
    token = CancelToken()
    recorded = []

    def process(block: Block) -> int:
        if block.index == 1:
            token.cancel()
        return block.index

    blocks = list(iter_blocks(volume.shape, (2, 9, 7)))
    run = run_job(
        run_blocks(blocks, process, cancel=token, on_done=lambda b, r: recorded.append(r))
    )
    assert run.cancelled and not run.complete
    assert list(run.results) == recorded == [0, 1]


def test_a_cancelled_token_runs_nothing(volume):
    token = CancelToken()
    token.cancel()
    run = run_job(run_blocks(iter_blocks(volume.shape, (2, 9, 7)), _box_sum, cancel=token))
    assert run.cancelled and run.results == {}


def test_dask_executor_matches_the_local_one(tmp_path, volume):
    distributed = pytest.importorskip("distributed")
    blocks = list(iter_blocks(volume.shape, (4, 5, 3), halo=1))
    local = np.zeros(volume.shape, np.int64)
    expected = run_job(
        run_blocks(blocks, _box_sum, args=(volume, local), executor=LocalExecutor())
    )
    target = zarr.create_array(
        str(tmp_path / "out.zarr"), shape=volume.shape, chunks=(4, 5, 3), dtype="int64"
    )
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        events = []
        run = run_job(
            run_blocks(blocks, _box_sum, args=(volume, target), executor=DaskExecutor(client)),
            events.append,
        )
    np.testing.assert_array_equal(target[...], local)
    assert run.results == expected.results and run.complete
    assert sorted(e.payload.index for e in events) == list(range(len(blocks)))


# --- atomic writes --------------------------------------------------------------------


def test_atomic_file_keeps_the_old_file_when_the_writer_fails(tmp_path):
    final = tmp_path / "table.csv"
    final.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(final, overwrite=True) as tmp:
        tmp.write_text("half")
        raise RuntimeError("disk trouble")
    assert final.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["table.csv"]  # no temporary left
    with pytest.raises(FileExistsError, match="already exists"):
        with atomic_path(final) as tmp:
            tmp.write_text("new")
    with atomic_path(final, overwrite=True) as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(".table.csv.tmp-")
        tmp.write_text("new")
    assert final.read_text() == "new"
    with pytest.raises(FileNotFoundError, match="does not exist"):
        with atomic_path(tmp_path / "nope" / "a.csv"):
            pass


def test_atomic_directory_store_is_replaced_whole(tmp_path):
    final = tmp_path / "out.zarr"
    zarr.create_array(str(final), shape=(4,), chunks=(2,), dtype="uint8")[:] = 1
    with pytest.raises(KeyboardInterrupt), atomic_path(final, overwrite=True) as tmp:
        zarr.create_array(str(tmp), shape=(6,), chunks=(2,), dtype="uint8")[:] = 2
        raise KeyboardInterrupt
    np.testing.assert_array_equal(zarr.open_array(str(final))[:], [1] * 4)
    with atomic_path(final, overwrite=True) as tmp:
        zarr.create_array(str(tmp), shape=(6,), chunks=(2,), dtype="uint8")[:] = 2
        assert (final / "zarr.json").exists()  # the old store stays until the new one is done
    np.testing.assert_array_equal(zarr.open_array(str(final))[:], [2] * 6)
    assert [p.name for p in tmp_path.iterdir()] == ["out.zarr"]  # no .tmp- nor .old- left
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    with pytest.raises(FileExistsError, match="holds no earlier output"):
        with atomic_path(tmp_path / "mine", overwrite=True):
            pass


def test_replace_path_puts_the_old_folder_back_when_the_rename_fails(tmp_path, monkeypatch):
    final, new = tmp_path / "store", tmp_path / "new"
    final.mkdir()
    (final / "zarr.json").write_text("old")
    new.mkdir()
    (new / "zarr.json").write_text("new")
    real = os.replace

    def failing(src, dst):
        if Path(src) == new:
            raise OSError(28, "No space left on device")
        return real(src, dst)

    monkeypatch.setattr(os, "replace", failing)
    with pytest.raises(OSError, match="No space"):
        replace_path(new, final)
    assert (final / "zarr.json").read_text() == "old"
    monkeypatch.setattr(os, "replace", real)
    assert replace_path(new, final) == final
    assert (final / "zarr.json").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["store"]


def test_a_block_that_is_a_job_reports_its_steps_and_stops_part_way():
    seen = []

    def steps(block):
        for k in range(3):
            seen.append((block.index, k))
            yield Progress(k, 3, f"block {block.index} step {k}")
        return block.index * 10

    blocks = list(iter_blocks((4, 4, 4), (2, 4, 4)))
    events = []
    run = run_job_collect(run_blocks(blocks, steps), events)
    assert run.results == {0: 0, 1: 10} and run.complete
    messages = [e.message for e in events]
    assert messages == [
        "block 0 step 0", "block 0 step 1", "block 0 step 2", "block 1/2",
        "block 1 step 0", "block 1 step 1", "block 1 step 2", "block 2/2",
    ]
    cancel, seen[:] = CancelToken(), []
    job = run_blocks(blocks, steps, cancel=cancel)
    next(job)
    cancel.cancel()
    run = run_job_collect(job, [])
    assert run.cancelled and run.results == {}
    assert seen == [(0, 0)]  # stopped inside the first block, at its next step


def run_job_collect(job, events):
    while True:
        try:
            events.append(next(job))
        except StopIteration as stop:
            return stop.value
