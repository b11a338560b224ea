"""``anatomics train`` and ``anatomics models``."""

from __future__ import annotations

import tifffile

from napari_anatomics.cli import main
from napari_anatomics.io.samples import synthetic_sbfsem
from napari_anatomics.models.store import load_model


def write_pair(folder):
    syn = synthetic_sbfsem((8, 64, 64), 8, seed=4)
    tifffile.imwrite(folder / "img.tif", syn.image)
    tifffile.imwrite(folder / "lab.tif", syn.labels.astype("uint16"))
    return folder / "img.tif", folder / "lab.tif"


def test_train_then_list(tmp_path, capsys):
    image, labels = write_pair(tmp_path)
    args = ["train", "--images", str(image), "--labels", str(labels), "--task", "instance"]
    args += ["--out", str(tmp_path / "models" / "chloro"), "--window", "4,32,32"]
    args += ["--voxel-size", "10,10,40", "--iterations", "3", "--width", "4", "--depth", "3"]
    args += ["--threads", "1", "--quiet", "--zoom", "0.5", "--arch", "resunet3d"]
    args += ["--no-tune-decoding"]
    # float32: this test is about options reaching the model, not the precision path
    # (a non-default value still shows --precision is passed on)
    args += ["--object-crops", "0.8", "--contact-weight", "10", "--precision", "float32"]
    args += ["--brightness", "0.4", "--contrast", "0.5", "--copy-paste", "0.5"]
    assert main(args) == 0
    assert "3 iterations" in capsys.readouterr().out
    model = load_model(tmp_path / "models" / "chloro", device="cpu")
    assert model.config.voxel_size == (40.0, 10.0, 10.0)
    assert model.config.training["zoom"] == 0.5
    assert model.config.training["object_crops"] == 0.8
    assert model.config.training["contact_weight"] == 10.0
    assert model.config.training["precision"] == "float32"
    training = model.config.training
    augment = (training["brightness"], training["contrast"], training["copy_paste"])
    assert augment == (0.4, 0.5, 0.5)
    assert model.config.data["image"].endswith("img.tif")
    assert main(["models", str(tmp_path / "models")]) == 0
    out = capsys.readouterr().out
    assert "chloro: instance (object), 3 iterations" in out
    # Same folder again without --resume: refused with the fix named.
    assert main(args) == 1
    assert "--resume" in capsys.readouterr().err
    more = list(args)
    more[more.index("--iterations") + 1] = "5"
    assert main([*more, "--resume"]) == 0
    assert load_model(tmp_path / "models" / "chloro", device="cpu").config.iterations == 5


def test_train_bad_window_is_one_clear_line(tmp_path, capsys):
    image, labels = write_pair(tmp_path)
    code = main(
        [
            "train",
            "--images",
            str(image),
            "--labels",
            str(labels),
            "--task",
            "instance",
            "--out",
            str(tmp_path / "m"),
            "--window",
            "16,32,32",
            "--architecture",
            "resunet3d",
            "--quiet",
        ]
    )
    assert code == 1
    err = capsys.readouterr().err
    assert "larger than the volume" in err and "(8, 64, 64)" in err
    assert not (tmp_path / "m").exists()


def test_models_on_empty_folder(tmp_path, capsys):
    assert main(["models", str(tmp_path)]) == 0
    assert "no models" in capsys.readouterr().out
