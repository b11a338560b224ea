"""Measuring again only what an edit touched gives the whole measurement's numbers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import zarr

from napari_anatomics.analyze import proofread
from napari_anatomics.analyze.measure import measure
from napari_anatomics.analyze.remeasure import remeasure
from napari_anatomics.analyze.split import split
from napari_anatomics.core.chunkcache import CachedArray

VOXEL = (40.0, 10.0, 10.0)


@pytest.fixture
def scene() -> tuple[np.ndarray, np.ndarray]:
    """Six objects, two touching the stack border, and a grey image."""
    labels = np.zeros((12, 80, 90), np.uint32)
    labels[1:6, 5:30, 5:40] = 1
    labels[2:9, 35:70, 10:30] = 2
    labels[0:4, 40:60, 50:90] = 3  # z = 0 and x end
    labels[6:12, 10:25, 60:80] = 4  # z end
    labels[8:11, 60:75, 40:70] = 5
    labels[3:7, 5:20, 50:55] = 6
    image = np.random.default_rng(0).integers(0, 255, labels.shape).astype(np.uint8)
    return labels, image


def check(labels, image, table, changes) -> pd.DataFrame:
    """remeasure after ``changes`` == measure of the whole array, column by column."""
    box, ids = changes
    updated = remeasure(table, labels, box, ids, VOXEL, image=image)
    full = measure(np.asarray(labels), VOXEL, image=image)
    assert list(updated.columns) == list(full.columns)
    pd.testing.assert_frame_equal(updated, full, check_dtype=False)
    return updated


def test_every_edit_and_its_undo(scene, tmp_path):
    labels, image = scene
    z = zarr.create_array(tmp_path / "l.zarr", shape=labels.shape, chunks=(4, 32, 32),
                          dtype=labels.dtype)  # fmt: skip
    z[:] = labels
    cached = CachedArray(z)
    table = measure(labels, VOXEL, image=image)
    edits = []
    seeds = [np.array([[3, 10, 10]]), np.array([[3, 25, 35]])]
    for run, args in (
        (proofread.merge, ([2, 5],)),  # far apart, 2 stays
        (proofread.delete, ([3],)),  # a border object goes
        (split, (1, seeds)),
    ):
        edits.append(run(cached, *args, index=table))  # the boxes of the table as it is now
        table = check(cached, image, table, cached.take_changes())
    assert len(table) == 5 and 3 not in set(table["id"]) and 5 not in set(table["id"])
    assert table["id"].max() == 7  # the split's new part
    for edit in reversed(edits):
        proofread.undo(cached, edit)
        table = check(cached, image, table, cached.take_changes())
    assert list(table["id"]) == [1, 2, 3, 4, 5, 6]


def test_a_brush_stroke_over_two_objects(scene):
    labels, image = scene
    table = measure(labels, VOXEL, image=image)
    before = labels[4, 18:40, 20:25].copy()
    labels[4, 18:40, 20:25] = 6  # paints over 1, 2 and background
    ids = np.union1d(before, [6])
    updated = check(labels, image, table, ((slice(4, 5), slice(18, 40), slice(20, 25)), ids))
    assert updated.set_index("id").loc[6, "bbox_y0"] == 5


def test_nothing_touched_returns_the_table(scene):
    labels, _ = scene
    table = measure(labels, VOXEL)
    assert remeasure(table, labels, (slice(0, 1),) * 3, [0], VOXEL) is table
