"""The write-back chunk cache that zarr-backed labels layers are edited through."""

from __future__ import annotations

import subprocess
import sys
import threading

import numpy as np
import pytest
import zarr

from napari_anatomics.analyze import proofread
from napari_anatomics.core.chunkcache import CachedArray


@pytest.fixture
def stack(tmp_path):
    """A (40, 300, 300) zarr of random ids in (16, 128, 128) chunks, and its numpy copy."""
    ref = np.random.default_rng(0).integers(0, 6, (40, 300, 300)).astype(np.uint32)
    z = zarr.create_array(tmp_path / "a.zarr", shape=ref.shape, chunks=(16, 128, 128),
                          dtype=ref.dtype)  # fmt: skip
    z[:] = ref
    return z, ref


def test_reads_match_the_file(stack):
    z, ref = stack
    cached = CachedArray(z)
    assert cached.shape == ref.shape and cached.dtype == ref.dtype and cached.ndim == 3
    np.testing.assert_array_equal(np.asarray(cached), ref)
    np.testing.assert_array_equal(cached[5], ref[5])
    np.testing.assert_array_equal(cached[..., 7], ref[..., 7])
    np.testing.assert_array_equal(cached[3:9, -50:, 100:101], ref[3:9, -50:, 100:101])
    points = tuple(np.random.default_rng(1).integers(0, s, 5000) for s in ref.shape)
    np.testing.assert_array_equal(cached[points], ref[points])
    with pytest.raises(IndexError, match="step 1"):
        cached[::2]


def test_writes_are_seen_at_once_and_reach_the_file(stack):
    z, ref = stack
    cached = CachedArray(z, cache_bytes=2**20)  # smaller than the chunks touched: evictions
    plane = cached[20]  # a remembered view, kept up to date by writes
    rng = np.random.default_rng(2)
    points = tuple(rng.integers(0, s, 20000) for s in ref.shape)  # far apart: chunk by chunk
    cached[points] = 9
    ref[points] = 9
    near = tuple(rng.integers(0, 30, 500) + o for o in (5, 100, 200))  # one box
    cached[near] = np.arange(500, dtype=np.uint32)
    ref[near] = np.arange(500, dtype=np.uint32)
    cached[10:30, 90:260, 1:3] = 7
    ref[10:30, 90:260, 1:3] = 7
    assert not np.array_equal(plane, ref[20])
    np.testing.assert_array_equal(cached[20], ref[20])
    np.testing.assert_array_equal(np.asarray(cached), ref)
    np.testing.assert_array_equal(cached[points], ref[points])
    assert cached.flush(timeout=30)
    assert cached.unsaved == 0
    np.testing.assert_array_equal(z[:], ref)


def test_changes_name_the_box_and_every_id_touched(stack):
    z, ref = stack
    cached = CachedArray(z)
    assert cached.take_changes() is None
    cached[12:14, 50:52, 60:61] = 5  # some voxels already 5
    cached[(np.array([30]), np.array([200]), np.array([250]))] = 77
    box, ids = cached.take_changes()
    assert box == (slice(12, 31), slice(50, 201), slice(60, 251))
    before = set(ref[12:14, 50:52, 60:61].ravel()) - {5} | {ref[30, 200, 250]}
    assert set(ids) == before | {5, 77}
    assert cached.take_changes() is None
    cached[0, 0, 0] = cached[0, 0, 0]  # writing the same value changes nothing
    assert cached.take_changes() is None


def test_proofreading_through_the_cache_equals_numpy(stack):
    z, _ = stack
    labels = np.zeros((40, 300, 300), np.uint32)
    labels[2:20, 10:140, 10:140] = 1
    labels[5:30, 150:290, 120:280] = 2
    z[:] = labels
    cached = CachedArray(z)
    edits = [proofread.merge(cached, [1, 2]), proofread.delete(cached, 1)]
    proofread.merge(labels, [1, 2])
    proofread.delete(labels, 1)
    assert [e.n_voxels for e in edits] == [25 * 140 * 160, 18 * 130 * 130 + 25 * 140 * 160]
    np.testing.assert_array_equal(np.asarray(cached), labels)
    for edit in reversed(edits):
        proofread.undo(cached, edit)
    assert cached.flush(timeout=30)
    np.testing.assert_array_equal(z[:], np.asarray(cached))
    assert set(np.unique(z[:])) == {0, 1, 2}


def test_threads_share_it(stack):
    z, ref = stack
    cached = CachedArray(z, cache_bytes=4 * 2**20)

    def paint(k: int) -> None:
        for i in range(10):
            cached[k * 10 + i, 0:300:1, 7 * k : 7 * k + 5] = 100 + k

    threads = [threading.Thread(target=paint, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for _ in range(20):
        cached[25]  # reads while they write
    for t in threads:
        t.join()
    for k in range(4):
        ref[k * 10 : k * 10 + 10, :, 7 * k : 7 * k + 5] = 100 + k
    assert cached.flush(timeout=60)
    np.testing.assert_array_equal(z[:], ref)


def test_unsaved_changes_are_written_at_exit(tmp_path):
    path = tmp_path / "exit.zarr"
    script = (
        "import zarr\n"
        "from napari_anatomics.core.chunkcache import CachedArray\n"
        f"z = zarr.create_array({str(path)!r}, shape=(64, 512, 512), chunks=(32, 256, 256),"
        " dtype='uint32')\n"
        "c = CachedArray(z)\n"
        "c[0:64, 0:512, 0:300] = 4\n"
        "print(c.unsaved)\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         check=True)  # fmt: skip
    assert int(out.stdout.split()[-1]) > 0  # the process ended with changes in memory
    written = zarr.open_array(path, mode="r")[:]
    assert (written == 4).sum() == 64 * 512 * 300
