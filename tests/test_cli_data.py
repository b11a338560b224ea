"""``anatomics combine / check / info``: output and exit codes."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from napari_anatomics.cli import main
from napari_anatomics.io.read import open_volume
from napari_anatomics.io.samples import synthetic_sbfsem


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pair")
    synthetic = synthetic_sbfsem((8, 64, 64), n_objects=6, seed=4)
    tifffile.imwrite(folder / "image.tif", synthetic.image)
    tifffile.imwrite(folder / "labels.tif", synthetic.labels.astype(np.uint16))
    tifffile.imwrite(folder / "empty.tif", np.zeros((8, 64, 64), np.uint8))
    return folder


def test_help_lists_data_commands(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert all(name in out for name in ("combine", "check", "info"))


def test_combine(tmp_path, capsys):
    folder = tmp_path / "slices"
    folder.mkdir()
    for i in range(1, 12):
        tifffile.imwrite(folder / f"img_{i}.tif", np.full((20, 30), i, np.uint8))
    out = tmp_path / "stack.zarr"
    code = main(
        ["combine", str(folder), str(out), "--chunks", "4,16,16", "--voxel-size", "8,8,30"]
    )
    assert code == 0
    assert "wrote stack.zarr" in capsys.readouterr().out
    volume = open_volume(out)
    np.testing.assert_array_equal(volume.data[:, 0, 0].compute(), np.arange(1, 12))
    assert volume.data.chunksize == (4, 16, 16) and volume.voxel_size == (30.0, 8.0, 8.0)
    assert main(["combine", str(folder), str(out)]) == 1  # exists: one clear line
    assert "already exists" in capsys.readouterr().err


def test_check_exit_codes(pair, capsys):
    code = main(["check", str(pair / "image.tif"), str(pair / "labels.tif"), "--task", "instance"])
    out = capsys.readouterr().out
    assert code == 0 and "Verdict: usable" in out and "look instance" in out
    code = main(["check", str(pair / "image.tif"), str(pair / "empty.tif"), "--voxel-size", "10"])
    out = capsys.readouterr().out
    assert code == 1 and "ERROR" in out and "No slice carries any annotation" in out
    assert "(given)" in out


def test_info_and_errors(pair, capsys):
    assert main(["info", str(pair / "image.tif")]) == 0
    out = capsys.readouterr().out
    assert "(8, 64, 64)" in out and "uint8" in out and "assumed" in out
    assert main(["info", str(pair / "nope.tif")]) == 1
    err = capsys.readouterr().err
    assert "nope.tif: no such file" in err and len(err.strip().splitlines()) == 2
