"""Data Check on a clean pair, on each kind of bad pair, and on the real SBFSEM pair."""

from __future__ import annotations

from pathlib import Path

import dask.array as da
import numpy as np
import pytest
import tifffile
from scipy import ndimage as ndi

from napari_anatomics.core.volume import Volume
from napari_anatomics.datacheck.checks import check
from napari_anatomics.io.read import open_volume
from napari_anatomics.io.samples import synthetic_sbfsem


@pytest.fixture(scope="module")
def synthetic():
    return synthetic_sbfsem((16, 96, 96), n_objects=10, seed=1)


@pytest.fixture(scope="module")
def image(synthetic) -> Volume:
    return synthetic.volumes()[0]


def _errors(report) -> set[str]:
    return {f.code for f in report.errors}


def test_clean_pair(synthetic, image):
    labels = synthetic.labels
    # dask labels in small z chunks give the same report as numpy labels
    for data in (labels, da.from_array(labels, chunks=(4, 96, 96))):
        report = check(image, Volume(data, synthetic.voxel_size, "user"), task="instance")
        assert report.usable and not report.warnings
        assert report.kind == "instance"
        values, counts = np.unique(labels, return_counts=True)
        assert report.histogram == dict(zip(values.tolist(), counts.tolist()))
        assert report.annotated_slices == [z for z in range(16) if labels[z].any()]
        assert report.n_objects == synthetic.n_objects
        assert report.pieces == {} and report.fragments == []
    assert "Verdict: usable." in report.to_text()


def test_shape_mismatch(synthetic, image):
    report = check(image, synthetic.labels[:, :90], task="instance")
    assert "shape_mismatch" in _errors(report) and not report.usable
    assert (
        "(16, 96, 96)" in report.errors[0].message and "(16, 90, 96)" in report.errors[0].message
    )


def test_nonzero_background(synthetic, image):
    inverted = np.where(synthetic.labels == 0, 255, synthetic.labels).astype(np.uint8)
    report = check(image, inverted, task="instance")
    assert _errors(report) == {"no_background"}
    assert "255" in report.errors[0].message
    inverted[0, 0, :5] = 0  # a few zeros do not make 0 the background
    assert _errors(check(image, inverted, task="instance")) == {"nonzero_background"}


def test_antialiased_labels(synthetic, image):
    mask = (synthetic.labels > 0).astype(np.uint8) * 255
    assert "antialiased" not in check(image, mask, task="semantic").codes()
    smooth = np.round(ndi.gaussian_filter(mask.astype(float), sigma=(0, 1, 1))).astype(np.uint8)
    report = check(image, smooth, task="semantic")
    assert _errors(report) == {"antialiased"}
    finding = report.errors[0]
    assert "anti-aliasing" in finding.message and "threshold" in finding.message
    assert finding.slice in report.annotated_slices


def test_renumbered_fragments_are_not_antialiasing(synthetic, image):
    # Connected-component renumbering gives each 1-voxel painting slip its own id:
    # no interior, like a rim, but the report must call them fragments, not smoothing.
    labels = synthetic.labels.copy()
    n = synthetic.n_objects
    background = np.argwhere(ndi.binary_erosion(labels == 0, iterations=2))[::997][:6]
    for k, (z, y, x) in enumerate(background):
        labels[z, y, x] = n + 1 + k
    report = check(image, labels, task="instance")
    assert "antialiased" not in report.codes()
    assert len(report.fragments) == 6


def test_semantic_labels_for_instance_task(image):
    classes = synthetic_sbfsem((16, 96, 96), n_objects=30, n_classes=2, seed=2)
    report = check(image, classes.semantic, task="instance")
    assert report.kind == "semantic"
    assert _errors(report) == {"semantic_for_instance"}
    fine = check(image, classes.semantic, task="semantic")
    assert fine.usable and fine.kind == "semantic" and "reused_values" not in fine.codes()


def test_instance_labels_for_semantic_task(image):
    ids = np.zeros((16, 96, 96), np.uint16)
    for i in range(20):  # 20 separate cubes, one id each
        ids[4:8, (i // 5) * 20 : (i // 5) * 20 + 8, (i % 5) * 18 : (i % 5) * 18 + 8] = i + 1
    assert check(image, ids, task="instance").usable
    report = check(image, ids, task="semantic")
    assert report.kind == "instance" and _errors(report) == {"instance_for_semantic"}
    assert report.annotated_slices == [4, 5, 6, 7]


def test_no_annotated_slice(image):
    report = check(image, np.zeros((16, 96, 96), np.uint8), task="instance")
    assert _errors(report) == {"no_annotation"} and report.annotated_slices == []
    assert "Verdict: NOT usable" in report.to_text()


def test_float_labels(synthetic, image):
    whole = check(image, synthetic.labels.astype(np.float32), task="instance")
    assert whole.usable and "float_labels" in {f.code for f in whole.warnings}
    fractional = synthetic.labels.astype(np.float32) * 0.5
    assert _errors(check(image, fractional)) == {"float_labels"}


def test_reused_ids_and_stray_fragments(synthetic, image):
    labels = synthetic.labels.copy()
    sizes = np.bincount(labels.ravel())
    labels[labels == 2] = 1  # objects 1 and 2 now share the value 1
    empty = np.argwhere(ndi.distance_transform_edt(labels == 0) > 3)
    a, b = empty[0], empty[-1]
    labels[tuple(a)] = 3  # a one-voxel fragment of value 3
    labels[b[0], b[1], b[2] - 1 : b[2] + 1] = 5  # a two-voxel fragment of value 5
    report = check(image, Volume(labels, synthetic.voxel_size, "user"), task="instance")
    assert report.usable
    assert report.pieces == {
        1: sorted([int(sizes[1]), int(sizes[2])], reverse=True),
        3: [int(sizes[3]), 1],
        5: [int(sizes[5]), 2],
    }
    assert [(v, n) for v, n, _ in report.fragments] == [(3, 1), (5, 2)]
    assert report.fragments[0][2] == tuple(int(i) for i in a)
    fragments = next(f for f in report.warnings if f.code == "stray_fragments")
    assert fragments.slice == a[0] and fragments.position == tuple(int(i) for i in a)
    assert "reused_values" in {f.code for f in report.warnings}


def test_real_pair_reports_reused_ids_and_fragments(real_data_dir):
    image = open_volume(real_data_dir / "images.tif", voxel_size="10,10,40")
    labels = open_volume(real_data_dir / "labels.tif", voxel_size="10,10,40")
    report = check(image, labels, task="instance")
    assert len([v for v in report.histogram if v != 0]) == 61  # as the data README says
    assert report.n_objects == 73
    assert len(report.pieces) == 6
    assert len(report.fragments) == 12
    assert all(1 <= n <= 1000 for _, n, _ in report.fragments)
    assert {"reused_values", "stray_fragments"} <= {f.code for f in report.warnings}
    assert report.kind == "instance" and report.usable
    assert report.annotated_slices == list(range(10))


def test_labels_over_the_in_memory_limit_are_checked_per_chunk(synthetic, image, monkeypatch):
    import napari_anatomics.datacheck.checks as checks

    monkeypatch.setattr(checks, "MAX_CC_VOXELS", 1000)
    labels = da.from_array(synthetic.labels, chunks=(5, 96, 96))
    report = check(image, labels, task="instance")
    values, counts = np.unique(synthetic.labels, return_counts=True)
    assert report.histogram == dict(zip(values.tolist(), counts.tolist()))
    assert "pieces_skipped" in report.codes() and report.n_objects is None
    assert report.usable  # few values but no piece counts: no semantic/instance verdict


def test_slices_left_unlabelled_amid_annotated_ones_are_reported(image):
    labels = np.zeros((16, 96, 96), np.uint8)
    labels[2:12, 10:30, 10:30] = 1
    labels[[5, 9]] = 0  # two slices the painter skipped
    report = check(image, labels, task="semantic")
    found = [f for f in report.findings if f.code == "unlabelled_slices"]
    assert len(found) == 1 and found[0].slice == 5 and report.usable
    assert found[0].message.startswith("Slices 5, 9 hold no label")
    labels[9, 10:30, 10:30] = 1
    one = [f for f in check(image, labels).findings if f.code == "unlabelled_slices"]
    assert [f.message.split(" while")[0] for f in one] == ["Slice 5 holds no label"]
    sparse = np.zeros_like(labels)
    sparse[::4, 10:30, 10:30] = 1  # every 4th slice: annotation sparse on purpose
    assert "unlabelled_slices" not in {f.code for f in check(image, sparse).findings}


def test_the_fly_stack_unpainted_slices_are_reported():
    folder = Path(__file__).resolve().parents[2] / "shared" / "data" / "drosophila-vnc-sstem"
    if not (folder / "labels.tif").is_file():
        pytest.skip(f"fly ssTEM data not found at {folder}")
    labels = tifffile.imread(folder / "labels.tif")
    report = check(np.zeros(labels.shape, np.uint8), labels, task="semantic")
    found = [f for f in report.findings if f.code == "unlabelled_slices"]
    assert report.usable and len(found) == 1
    assert found[0].message.startswith("Slices 1, 7, 18 hold no label") and found[0].slice == 1
