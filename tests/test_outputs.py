"""The output policy (``io/outputs.py``, ``predict/outputs.py``, ``train/outputs.py``,
``core/files.py``) and validation at the edges, tested in-process.

The same behaviour through the real command line is in ``test_faults.py``.
"""

from __future__ import annotations

import argparse
import errno
import math
from pathlib import Path

import numpy as np
import pytest
import tifffile

from napari_anatomics.analyze.evaluate import check_iou_thresholds, evaluate
from napari_anatomics.analyze.measure import measure
from napari_anatomics.cli import build_parser
from napari_anatomics.cli._predict import security
from napari_anatomics.core.files import staged_folder
from napari_anatomics.core.volume import Volume
from napari_anatomics.io.outputs import (
    OutputError,
    check_new_file,
    check_output_folder,
    check_writable,
    describe_os_error,
    safe_file_name,
)
from napari_anatomics.models.config import ModelConfig
from napari_anatomics.predict.outputs import check_prediction_output
from napari_anatomics.train.outputs import check_train_output

DOCS = Path(__file__).resolve().parents[1] / "docs"


# --- 7: voxel sizes and IoU thresholds --------------------------------------------------------


@pytest.mark.parametrize(
    "voxel_size", [(-1, 1, 1), (math.nan, 1, 1), (0, 1, 1), (1, math.inf, 1), (1, 1), ("a", 1, 1)]
)
def test_volume_refuses_a_voxel_size_that_is_not_positive_and_finite(voxel_size):
    with pytest.raises(ValueError, match="must be three finite numbers above zero"):
        Volume(np.zeros((2, 3, 4), np.uint8), voxel_size)
    good = Volume(np.zeros((2, 3, 4), np.uint8), (40, 10, 10))
    with pytest.raises(ValueError, match="must be three finite numbers above zero"):
        good.with_voxel_size(voxel_size)


def test_measure_and_evaluate_refuse_a_negative_voxel_size():
    labels = np.zeros((2, 8, 8), np.uint16)
    labels[:, 2:5, 2:5] = 1
    with pytest.raises(ValueError, match="voxel_size"):
        measure(labels, (-40.0, 10.0, 10.0))
    with pytest.raises(ValueError, match="voxel_size"):
        evaluate(labels, labels, (40.0, math.nan, 10.0))
    table = measure(labels, (40.0, 10.0, 10.0))
    assert (table["volume_um3"] > 0).all()


@pytest.mark.parametrize("bad", [[1.5], [0.0], [-0.5], [0.5, math.nan], []])
def test_iou_thresholds_are_in_zero_one(bad):
    with pytest.raises(ValueError, match="above 0 and at most 1"):
        check_iou_thresholds(bad)
    assert check_iou_thresholds([0.5, 1.0]) == [0.5, 1.0]


def test_measure_a_2d_volume_as_one_slice():
    labels = np.zeros((8, 8), np.uint16)
    labels[2:5, 2:5] = 1
    table = measure(Volume(labels, (40.0, 10.0, 10.0)))
    assert table["voxels"].tolist() == [9]


# --- existing outputs, kinds of paths --------------------------------------------------------


def test_check_new_file(tmp_path):
    assert check_new_file(tmp_path / "a.csv") == tmp_path / "a.csv"
    (tmp_path / "a.csv").write_text("mine")
    with pytest.raises(FileExistsError, match=r"--csv .*a\.csv: already exists and is kept"):
        check_new_file(tmp_path / "a.csv", option="--csv")
    assert check_new_file(tmp_path / "a.csv", overwrite=True)
    with pytest.raises(OutputError, match="is a folder; give a file name"):
        check_new_file(tmp_path, option="--csv")
    with pytest.raises(OutputError, match="does not exist"):
        check_new_file(tmp_path / "nope" / "a.csv")


def test_output_folder_and_staged_replacement(tmp_path):
    out = tmp_path / "meshes"
    assert check_output_folder(out) == []
    with staged_folder(out) as stage:
        (stage / "mesh_00001.ply").write_text("new")
    assert sorted(p.name for p in out.iterdir()) == ["mesh_00001.ply"]
    (out / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="already holds 1 earlier export file"):
        check_output_folder(out, option="--out")
    earlier = check_output_folder(out, overwrite=True)
    assert earlier == [out / "mesh_00001.ply"]
    # an interrupted export changes nothing
    with pytest.raises(KeyboardInterrupt), staged_folder(out, earlier) as stage:
        (stage / "meshes.ply").write_text("half")
        raise KeyboardInterrupt
    assert sorted(p.name for p in out.iterdir()) == ["mesh_00001.ply", "notes.txt"]
    with staged_folder(out, earlier) as stage:
        (stage / "meshes.ply").write_text("new")
    assert sorted(p.name for p in out.iterdir()) == ["meshes.ply", "notes.txt"]
    # a folder the export created is removed again when it fails
    with pytest.raises(RuntimeError), staged_folder(tmp_path / "new") as stage:
        raise RuntimeError
    assert not (tmp_path / "new").exists()


def test_prediction_output_kinds(tmp_path):
    import zarr

    assert check_prediction_output(tmp_path / "p.zarr") == tmp_path / "p.zarr"
    (tmp_path / "empty").mkdir()
    assert check_prediction_output(tmp_path / "empty")
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "notes.txt").write_text("mine")
    with pytest.raises(OutputError, match="folder holding 1 other file"):
        check_prediction_output(tmp_path / "plain")
    (tmp_path / "f").write_text("x")
    with pytest.raises(OutputError, match="is a file"):
        check_prediction_output(tmp_path / "f")
    image = zarr.open_group(str(tmp_path / "img.zarr"), mode="w")
    image.create_array("raw", shape=(2, 2), dtype="u1")
    with pytest.raises(OutputError, match=r"holds other data \(raw\)"):
        check_prediction_output(tmp_path / "img.zarr")
    zarr.create_array(str(tmp_path / "arr.zarr"), shape=(2, 2), dtype="u1")
    with pytest.raises(OutputError, match="is a zarr array"):
        check_prediction_output(tmp_path / "arr.zarr")
    pred = zarr.open_group(str(tmp_path / "pred.zarr"), mode="w")
    pred.create_array("probabilities", shape=(2, 2), dtype="u1")
    pred.create_array("labels_proofread", shape=(2, 2), dtype="u4")  # the user's own
    assert check_prediction_output(tmp_path / "pred.zarr")


def _model_folder(folder: Path, shape=(8, 64, 64), image="img.tif", labels="lab.tif") -> None:
    folder.mkdir(parents=True)
    config = ModelConfig(
        task="instance", classes=["object"], window=(4, 32, 32), voxel_size=(40, 10, 10),
        architecture={"name": "resunet3d"}, targets=["foreground", "boundary"],
        data={"image": f"/data/{image}", "labels": f"/data/{labels}", "shape": list(shape)},
    )  # fmt: skip
    config.save(folder)
    (folder / "checkpoint.pt").write_bytes(b"")


def test_check_train_output(tmp_path):
    """Case 3: the one call cli/_train.py makes before training (see the report)."""
    image = Volume(np.zeros((8, 64, 64), np.uint8), source="/elsewhere/img.tif")
    labels = Volume(np.zeros((8, 64, 64), np.uint16), source="/elsewhere/lab.tif")
    assert check_train_output(tmp_path / "new") == tmp_path / "new"
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "thesis.docx").write_text("mine")
    with pytest.raises(OutputError, match=r"holding 1 other file.*, not a model"):
        check_train_output(tmp_path / "plain")
    (tmp_path / "f").write_text("x")
    with pytest.raises(OutputError, match="is a file"):
        check_train_output(tmp_path / "f")
    with pytest.raises(OutputError, match="holds no model to continue"):
        check_train_output(tmp_path / "new", resume=True)
    _model_folder(tmp_path / "m")
    # the same data moved to another folder resumes; other data is refused
    assert check_train_output(tmp_path / "m", resume=True, image=image, labels=labels)
    other = Volume(np.zeros((8, 32, 32), np.uint8), source="/data/img.tif")
    with pytest.raises(OutputError, match=r"shape \(8, 64, 64\), these images are \(8, 32, 32\)"):
        check_train_output(tmp_path / "m", resume=True, image=other, labels=labels)
    renamed = Volume(np.zeros((8, 64, 64), np.uint16), source="/data/lab_v2.tif")
    with pytest.raises(OutputError, match=r"was trained on labels /data/lab\.tif.*--init-from"):
        check_train_output(tmp_path / "m", resume=True, image=image, labels=renamed)


# --- 8: writability and room, before the work ------------------------------------------------


def test_check_writable(tmp_path, monkeypatch):
    import shutil

    assert check_writable(tmp_path / "a" / "b.csv") == tmp_path
    assert not [p for p in tmp_path.iterdir()]  # the probe is gone
    (tmp_path / "f").write_text("x")
    with pytest.raises(OutputError, match="is a file, not a folder"):
        check_writable(tmp_path / "f" / "x.csv")
    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage._replace(free=10**6))
    with pytest.raises(OutputError, match=r"needs about 2 MB, .* has 1 MB free"):
        check_writable(tmp_path / "x.zarr", 2 * 10**6)

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr("tempfile.mkstemp", read_only)
    with pytest.raises(OutputError, match="is on a read-only file system; choose a folder"):
        check_writable(tmp_path / "x.csv")


@pytest.mark.parametrize(
    ("code", "says"),
    [
        (errno.ENOSPC, "s.csv: the disk is full"),
        (errno.EROFS, "s.csv: is on a read-only file system"),
        (errno.EACCES, "s.csv: permission denied"),
        (errno.EISDIR, "s.csv: is a folder"),
    ],
)
def test_describe_os_error_names_the_final_file_and_the_fix(code, says):
    err = OSError(code, "raw", ".s.csv.1234.tmp", None, "s.csv")
    assert describe_os_error(err).startswith(says)
    assert "Errno" not in describe_os_error(err)


def test_an_error_that_names_no_file_is_told_with_the_output():
    from napari_anatomics.cli import error_line

    full = OSError(errno.ENOSPC, "No space left on device")  # as zarr's writes raise it
    assert error_line(full, "out/s.zarr").startswith("out/s.zarr: the disk is full")
    assert error_line(KeyError("labels")) == "KeyError: 'labels'"
    assert error_line(ValueError("two\n  lines")) == "two lines"


# --- 12: file names from layer names ---------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "safe"),
    [
        ("f.h5:volumes/labels", "f.h5_volumes_labels"),
        ("my labels", "my_labels"),
        ("../../etc/passwd", "etc_passwd"),
        ("a\\b:c*?<>|d", "a_b_c_d"),
        ("...", "export"),
        ("", "export"),
        ("CON", "CON_"),
        ("chloroplasts [1]", "chloroplasts_1"),
        ("x" * 300, "x" * 100),
    ],
)
def test_safe_file_name(name, safe, tmp_path):
    assert safe_file_name(name) == safe
    (tmp_path / f"{safe}_objects.csv").write_text("ok")  # one flat file, no folders
    assert [p.name for p in tmp_path.iterdir()] == [f"{safe}_objects.csv"]


# --- 4: a cut TIFF is refused wherever it is cut ---------------------------------------------


@pytest.mark.parametrize("kind", ["plain", "zlib", "imagej", "ome", "tiled", "pages"])
def test_a_tiff_cut_anywhere_is_refused_or_read_whole(kind, tmp_path):
    from napari_anatomics.io.read import VolumeReadError, open_volume

    stack = np.random.default_rng(0).integers(0, 255, (5, 24, 30), dtype=np.uint8)
    path = tmp_path / "full.tif"
    options = {
        "plain": {}, "zlib": {"compression": "zlib"}, "imagej": {"imagej": True},
        "ome": {"ome": True}, "tiled": {"tile": (16, 16), "compression": "zlib"},
    }  # fmt: skip
    if kind == "pages":  # one IFD per page, no metadata: as many other programs write
        with tifffile.TiffWriter(path) as tif:
            for page in stack:
                tif.write(page, contiguous=False, photometric="minisblack", metadata=None)
    else:
        tifffile.imwrite(path, stack, **options[kind])
    whole = path.read_bytes()
    for cut in range(0, len(whole), max(1, len(whole) // 40)):
        (tmp_path / "cut.tif").write_bytes(whole[:cut])
        try:
            volume = open_volume(tmp_path / "cut.tif")
        except VolumeReadError as err:
            assert "cut.tif" in str(err)
            continue
        np.testing.assert_array_equal(np.asarray(volume.data), stack)  # nothing missing


# --- 13: TLS for --scheduler, and the word on trust ------------------------------------------


def _predict_args(*extra: str) -> argparse.Namespace:
    return build_parser().parse_args(["predict", "m", "i.tif", "--out", "p.zarr", *extra])


def test_tls_options_build_a_dask_security(tmp_path):
    for name in ("ca.pem", "cert.pem", "key.pem"):
        (tmp_path / name).write_text("x")
    assert security(_predict_args()) is None
    args = _predict_args(
        "--scheduler", "tls://host:8786", "--tls-ca-file", str(tmp_path / "ca.pem"),
        "--tls-cert", str(tmp_path / "cert.pem"), "--tls-key", str(tmp_path / "key.pem"),
    )  # fmt: skip
    secured = security(args)
    assert secured.tls_ca_file == str(tmp_path / "ca.pem")
    assert secured.tls_client_cert == str(tmp_path / "cert.pem")
    assert secured.tls_client_key == str(tmp_path / "key.pem")
    assert secured.require_encryption
    with pytest.raises(ValueError, match="--tls-cert with --tls-key"):
        security(_predict_args("--scheduler", "tls://h:1", "--tls-ca-file", "ca.pem",
                               "--tls-cert", "cert.pem"))  # fmt: skip


def test_the_security_reaches_the_dask_client(monkeypatch):
    import distributed

    from napari_anatomics.predict.distributed import cluster_executor

    seen = {}

    class Refused(Exception):
        pass

    def client(address, **kwargs):
        seen.update(address=address, **kwargs)
        raise Refused

    monkeypatch.setattr(distributed, "Client", client)
    marker = object()
    runner = cluster_executor(None, None, None, "x", "uint8", scheduler="tls://h:1",
                              security=marker)  # fmt: skip
    with pytest.raises(Refused), runner:
        pass
    assert seen == {"address": "tls://h:1", "security": marker}


def test_scheduler_help_and_docs_say_whom_to_trust():
    parser = build_parser()
    predict = parser._subparsers._group_actions[0].choices["predict"]
    text = " ".join(predict.format_help().split())
    assert "pickled" in text and "a cluster you control" in text
    assert "--tls-ca-file" in text and "--tls-cert" in text and "--tls-key" in text
    docs = (DOCS / "cluster.md").read_text()
    assert "Trust: connect only to a scheduler you control" in docs
    assert "--tls-ca-file" in docs and "Security(" in docs
