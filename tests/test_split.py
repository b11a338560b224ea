"""Splitting one object in 3D from seed strokes, with undo and redo."""

from __future__ import annotations

import numpy as np
import pytest
import zarr

from napari_anatomics.analyze import proofread as pr
from napari_anatomics.analyze.split import split


def _two_balls(shape=(24, 48, 80)):
    """Two touching balls painted as one object (id 5), another object (id 9) beside them."""
    z, y, x = np.indices(shape)
    a = (z - 12) ** 2 + (y - 24) ** 2 + (x - 24) ** 2 <= 11**2
    b = (z - 12) ** 2 + (y - 24) ** 2 + (x - 44) ** 2 <= 11**2
    labels = np.zeros(shape, np.uint16)
    labels[a | b] = 5
    labels[2:5, 2:6, 70:76] = 9
    # the image: bright balls with a dark membrane where they meet
    image = np.full(shape, 60, np.float32)
    image[a | b] = 200
    image[:, :, 33:35] = np.where((a | b)[:, :, 33:35], 40, 60)
    return labels, image, a, b


@pytest.mark.parametrize("guide", ["shape", "image", "boundary"])
@pytest.mark.parametrize("store", ["numpy", "zarr"])
def test_split_two_touching_balls(tmp_path, guide, store):
    labels, image, a, b = _two_balls()
    original = labels.copy()
    if store == "zarr":
        arr = zarr.create_array(str(tmp_path / "l.zarr"), shape=labels.shape, dtype=labels.dtype,
                                chunks=(8, 16, 16))
        arr[:] = labels
        labels = arr
    kwargs = {}
    if guide == "image":
        kwargs["image"] = image
    elif guide == "boundary":
        boundary = np.zeros(image.shape, np.float32)
        boundary[:, :, 33:35] = 1.0
        kwargs["boundary"] = boundary
    strokes = [[(12, 24, 20), (12, 24, 22), (11, 24, 24)], [(12, 24, 46), (13, 25, 48)]]
    edit = split(labels, 5, strokes, **kwargs)
    out = np.asarray(labels[:])
    assert edit.operation == "split" and edit.ids == (5, 10)
    assert set(np.unique(out)) == {0, 5, 9, 10}
    left, right = out == 5, out == 10
    assert (left | right).sum() == (a | b).sum()  # every voxel of the object kept
    # each part is (almost) its ball: the cut runs where they touch
    assert (left & a).sum() / a.sum() > 0.95 and (right & b).sum() / b.sum() > 0.95
    assert np.array_equal(out == 9, original == 9)  # nothing else touched
    pr.undo(labels, edit)
    assert np.array_equal(np.asarray(labels[:]), original)
    pr.redo(labels, edit)
    assert np.array_equal(np.asarray(labels[:]), out)


def test_split_refuses_what_it_cannot_do():
    labels, *_ = _two_balls()
    with pytest.raises(ValueError, match="at least two parts"):
        split(labels, 5, [[(12, 24, 24)]])
    with pytest.raises(ValueError, match="seed group 2 does not touch object 5"):
        split(labels, 5, [[(12, 24, 24)], [(0, 0, 0)]])
    with pytest.raises(ValueError, match="object 7 is not in the labels"):
        split(labels, 7, [[(12, 24, 24)], [(12, 24, 44)]])
    small = labels.astype(np.uint8)
    with pytest.raises(ValueError, match="does not fit"):
        split(small, 5, [[(12, 24, 24)], [(12, 24, 44)]], next_id=256)


def test_three_parts_and_a_table_index():
    labels, *_ = _two_balls()
    from napari_anatomics.analyze.measure import measure

    table = measure(labels, (40, 10, 10))
    edit = split(labels, 5, [[(12, 24, 16)], [(12, 24, 34)], [(12, 24, 52)]], index=table,
                 next_id=20)
    assert edit.ids == (5, 20, 21)
    assert {5, 20, 21} <= set(np.unique(labels))
