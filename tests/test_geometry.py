"""Meshes and point clouds: .ply files read back, bounds inside each object's box in µm."""

from __future__ import annotations

import numpy as np
import pytest

from napari_anatomics.analyze.measure import bounding_boxes, measure
from napari_anatomics.analyze.meshes import (
    Mesh,
    export,
    export_meshes,
    instance_mesh,
    instance_points,
    read_ply,
    write_ply,
)
from napari_anatomics.core.progress import Progress
from napari_anatomics.io.samples import synthetic_sbfsem

VOXEL = (40.0, 10.0, 10.0)
VS_UM = np.asarray(VOXEL) * 1e-3


@pytest.fixture(scope="module")
def synth():
    return synthetic_sbfsem((16, 80, 80), 6, voxel_size=VOXEL, seed=4)


def _zyx(vertex) -> np.ndarray:
    return np.stack([vertex["z"], vertex["y"], vertex["x"]], axis=1).astype(float)


def _box_um(row) -> tuple[np.ndarray, np.ndarray]:
    """Extent of a bbox in µm (voxel i spans (i - 0.5, i + 0.5) * size)."""
    lo = np.array([row.bbox_z0, row.bbox_y0, row.bbox_x0]) - 0.5
    hi = np.array([row.bbox_z1, row.bbox_y1, row.bbox_x1]) - 0.5
    return lo * VS_UM, hi * VS_UM


def test_meshes_per_instance(synth, tmp_path):
    table = measure(synth.labels, VOXEL)
    files = export(synth.labels, tmp_path, VOXEL)
    assert [f.name for f in files] == [f"mesh_{i:05d}.ply" for i in table["id"]]
    for f, row in zip(files, table.itertuples()):
        ply = read_ply(f)
        verts, faces = _zyx(ply["vertex"]), ply["face"]
        assert len(verts) > 10 and len(faces) > 10 and faces.max() < len(verts)
        assert set(ply["vertex"]["id"]) == {row.id}
        lo, hi = _box_um(row)
        # float32 vertices of a few µm: an ulp is < 5e-7 µm, 1e-5 µm is rounding only
        assert (verts >= lo - 1e-5).all() and (verts <= hi + 1e-5).all()
        # The surface wraps the object: its extent is the box's, up to half a voxel.
        np.testing.assert_allclose(verts.min(0), lo + VS_UM / 2, atol=VS_UM.max() / 2 + 1e-6)


def test_mesh_of_a_sphere_has_its_area_and_volume():
    z, y, x = np.ogrid[-8:9, -30:31, -30:31]
    ball = ((z * 40.0) ** 2 + (y * 10.0) ** 2 + (x * 10.0) ** 2 <= 280.0**2).astype(np.uint8)
    bbox = bounding_boxes(measure(ball, VOXEL))[1]
    areas = []
    for smooth in (0, 10):  # bounds: the voxel steps' error, not rounding
        m = instance_mesh(ball, 1, bbox, VOXEL, smooth=smooth)
        tri = m.vertices[m.faces].astype(float)
        area = 0.5 * np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1)
        volume = abs(np.einsum("ij,ij->i", tri[:, 0], np.cross(tri[:, 1], tri[:, 2])).sum()) / 6
        assert volume == pytest.approx(4 / 3 * np.pi * 0.28**3, rel=0.02)
        areas.append(area.sum())
    # Voxel steps inflate the raw surface (~18 % here, z voxels 4x coarser); smoothing
    # removes most of that without shrinking the volume.
    assert areas[0] == pytest.approx(4 * np.pi * 0.28**2, rel=0.25)
    assert areas[1] == pytest.approx(4 * np.pi * 0.28**2, rel=0.07)
    assert areas[1] < areas[0]


def test_points_surface_all_and_downscale(tmp_path):
    a = np.zeros((8, 10, 12), np.uint8)
    a[1:6, 2:8, 3:10] = 3  # 5 x 6 x 7 box: 210 voxels, 3 x 4 x 5 = 60 inside
    bbox = (slice(1, 6), slice(2, 8), slice(3, 10))
    every = instance_points(a, 3, bbox, VOXEL, surface=False)
    assert len(every.vertices) == 210 and len(every.faces) == 0
    surface = instance_points(a, 3, bbox, VOXEL)
    assert len(surface.vertices) == 210 - 60
    # float32 µm coordinates (index * voxel size): a few ulps, rtol 1e-6 is ~8
    np.testing.assert_allclose(every.vertices.min(0), [1 * 0.04, 2 * 0.01, 3 * 0.01], rtol=1e-6)
    coarse = instance_points(a, 3, bbox, VOXEL, surface=False, downscale=(1, 2, 2))
    assert len(coarse.vertices) == 5 * 3 * 3  # y 2,4,6 and x 4,6,8 (grid aligned to 0)
    f = write_ply(tmp_path / "p.ply", surface)
    back = read_ply(f)
    # exact by design: binary PLY stores the float32 vertices bit for bit
    np.testing.assert_array_equal(_zyx(back["vertex"]), surface.vertices)
    assert len(back["face"]) == 0


def test_combined_points_and_selected_ids(synth, tmp_path):
    events = []
    job = export_meshes(synth.labels, tmp_path, VOXEL, ids=[2, 4], combined=True, points=True)
    while True:
        try:
            events.append(next(job))
        except StopIteration as stop:
            files = stop.value
            break
    assert [e.step for e in events] == [1, 2] and isinstance(events[0], Progress)
    assert [f.name for f in files] == ["points.ply"]
    ids = read_ply(files[0])["vertex"]["id"]
    assert set(ids) == {2, 4}
    with pytest.raises(ValueError, match=r"\[99\]"):
        export(synth.labels, tmp_path, VOXEL, ids=[99])


def test_ply_round_trip_exact(tmp_path):
    rng = np.random.default_rng(1)
    mesh = Mesh(
        rng.random((30, 3)).astype(np.float32),
        rng.integers(0, 30, (20, 3)).astype(np.int32),
        np.arange(30, dtype=np.uint32),
    )
    back = read_ply(write_ply(tmp_path / "m.ply", mesh))  # binary float32: exact
    np.testing.assert_array_equal(_zyx(back["vertex"]), mesh.vertices)
    np.testing.assert_array_equal(back["face"], mesh.faces)
    np.testing.assert_array_equal(back["vertex"]["id"], mesh.ids)
    assert {"red", "green", "blue"} <= set(back["vertex"].dtype.names)
    (tmp_path / "bad.ply").write_text("ply\nformat ascii 1.0\nend_header\n")
    with pytest.raises(ValueError, match="binary"):
        read_ply(tmp_path / "bad.ply")
