"""``anatomics stats``, ``evaluate`` and ``mesh`` on small TIFF stacks."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile

from napari_anatomics.analyze.measure import read_csv
from napari_anatomics.analyze.meshes import read_ply
from napari_anatomics.cli import main
from napari_anatomics.io.samples import synthetic_sbfsem


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("quantify")
    s = synthetic_sbfsem((12, 64, 64), 6, voxel_size=(40.0, 10.0, 10.0), n_classes=2, seed=6)
    pred = np.where(s.labels == 2, 0, s.labels)
    for name, arr in (("labels", s.labels), ("image", s.image), ("classes", s.semantic)):
        tifffile.imwrite(folder / f"{name}.tif", arr)
    tifffile.imwrite(folder / "pred.tif", pred)
    return folder, s


def test_stats(files, capsys):
    folder, s = files
    out = folder / "stats.csv"
    code = main(
        [
            "stats",
            str(folder / "labels.tif"),
            "--csv",
            str(out),
            "--voxel-size",
            "10,10,40",
            "--image",
            str(folder / "image.tif"),
            "--classes",
            str(folder / "classes.tif"),
            "--class-names",
            "chl,mito",
        ]
    )
    assert code == 0
    table = read_csv(out)
    ids, counts = np.unique(s.labels[s.labels > 0], return_counts=True)
    np.testing.assert_array_equal(table["id"], ids)
    np.testing.assert_array_equal(table["voxels"], counts)
    # float64 products of exact counts, read back from CSV: ulps, inside rtol=1e-7
    np.testing.assert_allclose(table["volume_um3"], counts * 4e-6)
    assert table["class"].tolist() == [["chl", "mito"][c - 1] for c in s.classes[ids]]
    assert "mean_intensity" in table
    assert "# voxel_size_nm_xyz: 10,10,40" in out.read_text()
    printed = capsys.readouterr().out
    assert "volume_fraction" in printed and "all" in printed and f"wrote {len(ids)}" in printed


def test_evaluate(files, capsys):
    folder, s = files
    out = folder / "ev.json"
    code = main(
        ["evaluate", str(folder / "pred.tif"), str(folder / "labels.tif"), "--json", str(out)]
    )
    assert code == 0
    data = json.loads(out.read_text())
    assert data["n_gt"] == s.n_objects and data["n_pred"] == s.n_objects - 1
    assert data["instances"]["0.5"]["fn"] == 1 and data["instances"]["0.5"]["fp"] == 0
    printed = capsys.readouterr()
    assert f"predicted {s.n_objects - 1}, true {s.n_objects}" in printed.out
    assert "does not record its voxel size" in printed.err


def test_mesh(files, capsys):
    folder, _ = files
    out = folder / "meshes"
    args = ["mesh", str(folder / "labels.tif"), "--out", str(out), "--voxel-size", "10,10,40"]
    assert main([*args, "--ids", "1,3", "--smooth", "2"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["mesh_00001.ply", "mesh_00003.ply"]
    assert len(read_ply(out / "mesh_00003.ply")["face"]) > 0
    # an earlier export is kept unless --overwrite, which replaces it (not a mix of both)
    assert main([*args, "--points", "--combined", "--downscale", "1,2,2"]) == 1
    assert "already holds 2 earlier export file(s)" in capsys.readouterr().err
    assert main([*args, "--points", "--combined", "--downscale", "1,2,2", "--overwrite"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["points.ply"]
    assert len(read_ply(out / "points.ply")["vertex"]) > 0
    with pytest.raises(SystemExit) as usage:
        main([*args, "--downscale", "x"])
    assert usage.value.code == 2
    assert "--downscale 'x'" in capsys.readouterr().err


def test_clear_error_for_missing_file(tmp_path, capsys):
    assert main(["stats", str(tmp_path / "nope.tif"), "--csv", str(tmp_path / "o.csv")]) == 1
    assert "nope.tif" in capsys.readouterr().err
