"""Models as BioImage.IO packages: valid, reproducible by bioimageio.core, and back again."""

from __future__ import annotations

import hashlib
import zipfile

import numpy as np
import pytest
import tifffile
import torch

from napari_anatomics.cli import main
from napari_anatomics.models import build_network, plan_architecture
from napari_anatomics.models.bioimageio import PackageError, export_model, import_model
from napari_anatomics.models.config import ModelConfig
from napari_anatomics.models.store import load_model, save_model

pytest.importorskip("bioimageio.core")


def _model(folder, name: str, task: str = "instance"):
    """A small untrained network of either kind, saved as a model folder."""
    torch.manual_seed(0)
    window = (1, 64, 64) if name == "unet2d" else (8, 32, 32)
    if task == "instance":
        targets, classes = ["foreground", "boundary"], ["chloroplast"]
    else:
        targets, classes = ["background", "mito", "synapse"], ["mito", "synapse"]
    arch = plan_architecture(name, len(targets), (40, 20, 20), window, width=8, depth=3)
    config = ModelConfig(
        task=task,
        classes=classes,
        window=window,
        voxel_size=(40.0, 10.0, 10.0),
        architecture=arch,
        targets=targets,
        downsample=(1, 2, 2),
        normalization={"mean": 120.0, "std": 30.0},
    )
    return save_model(folder, build_network(config).eval(), config)


@pytest.mark.parametrize(("name", "task"), [("unet2d", "semantic"), ("resunet3d", "instance")])
def test_export_validates_and_reproduces_with_bioimageio_core(tmp_path, name, task):
    from bioimageio.core import test_model
    from bioimageio.spec import load_model_description

    folder = _model(tmp_path / "m", name, task)
    package = export_model(folder, tmp_path / "m.zip")
    descr = load_model_description(package)
    assert descr.format_version.startswith("0.5")
    axes = {str(a.id): a for a in descr.inputs[0].axes}
    assert axes["y"].scale == 20.0 and axes["x"].scale == 20.0  # model resolution, nm
    assert str(axes["y"].unit) == "nanometer"
    assert ("z" in axes) == (name == "resunet3d")
    out_channels = [str(c) for c in next(a for a in descr.outputs[0].axes if a.id == "channel")
                    .channel_names]
    assert out_channels == load_model(folder).config.targets
    steps = {p.id: p for p in descr.inputs[0].preprocessing}
    zmuv = steps["fixed_zero_mean_unit_variance"]
    assert (zmuv.kwargs.mean, zmuv.kwargs.std) == (120.0, 30.0)
    assert descr.weights.pytorch_state_dict is not None
    assert descr.weights.torchscript is not None  # both nets trace
    summary = test_model(package)
    assert summary.status == "passed", [d.name for d in summary.details if d.status != "passed"]


def test_import_gives_back_the_same_model(tmp_path):
    folder = _model(tmp_path / "m", "resunet3d")
    package = export_model(folder, tmp_path / "m.zip")
    back = import_model(package, tmp_path / "back")
    original, imported = load_model(folder, "cpu"), load_model(back, "cpu")
    assert imported.config.to_dict()["architecture"] == original.config.to_dict()["architecture"]
    assert imported.config.normalization == original.config.normalization
    batch = torch.randn(1, 1, 8, 32, 32)
    assert torch.equal(original(batch), imported(batch))
    with pytest.raises(PackageError, match="already holds a model"):
        import_model(package, back)


def test_import_refuses_foreign_broken_and_tampered_packages(tmp_path):
    folder = _model(tmp_path / "m", "unet2d")
    package = export_model(folder, tmp_path / "m.zip")
    with pytest.raises(PackageError, match="no such file"):
        import_model(tmp_path / "missing.zip", tmp_path / "a")
    not_a_package = tmp_path / "notes.zip"
    with zipfile.ZipFile(not_a_package, "w") as z:
        z.writestr("notes.txt", "hello")
    with pytest.raises(PackageError, match=r"not a valid BioImage\.IO model package"):
        import_model(not_a_package, tmp_path / "b")

    def rewrite(target, edit):
        with zipfile.ZipFile(package) as src, zipfile.ZipFile(target, "w") as dst:
            for item in src.infolist():
                data = src.read(item)
                dst.writestr(item, edit(item.filename, data))
        return target

    def foreign(name, data):
        return data.replace(b"napari_anatomics:", b"someone_else:") if name == "rdf.yaml" else data

    with pytest.raises(PackageError, match="not made by napari-anatomics"):
        import_model(rewrite(tmp_path / "foreign.zip", foreign), tmp_path / "c")

    def other_output(name, data):
        if name != "test_output.npy":
            return data
        return data[:-8] + np.float32([0.5, 0.5]).tobytes()

    with pytest.raises(PackageError, match=r"SHA256 mismatch .* damaged or was edited"):
        import_model(rewrite(tmp_path / "tampered.zip", other_output), tmp_path / "d")

    with zipfile.ZipFile(package) as z:  # edited with care: the new file's hash is recorded
        old = z.read("test_output.npy")
    new = other_output("test_output.npy", old)
    old_hash, new_hash = (hashlib.sha256(d).hexdigest().encode() for d in (old, new))

    def edited(name, data):
        return data.replace(old_hash, new_hash) if name == "rdf.yaml" else other_output(name, data)

    with pytest.raises(PackageError, match="do not reproduce its own test output"):
        import_model(rewrite(tmp_path / "edited.zip", edited), tmp_path / "d")
    assert not (tmp_path / "c").exists() and not (tmp_path / "d" / "weights.pt").exists()


def test_cli_export_and_import(tmp_path, capsys):
    folder = _model(tmp_path / "m", "unet2d")
    image = np.random.default_rng(1).integers(60, 200, (4, 300, 300), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "image.tif", image)
    args = ["export-model", str(folder), str(tmp_path / "m.zip"), "--sample"]
    assert main([*args, str(tmp_path / "image.tif"), "--author", "A. Biologist"]) == 0
    assert "wrote" in capsys.readouterr().out
    with zipfile.ZipFile(tmp_path / "m.zip") as z:
        rdf = z.read("rdf.yaml").decode()
        raw = np.load(z.open("test_input.npy"))
    assert "A. Biologist" in rdf and "CC-BY-4.0" in rdf
    centre = image[1, 86:214:2, 86:214:2]  # the middle 128 px at full res, every 2nd
    assert raw.shape == (1, 1, 64, 64) and np.array_equal(raw[0, 0], centre)
    assert main([*args[:3], "--overwrite"]) == 0  # replaced on request
    assert main(["export-model", str(folder), str(tmp_path / "m.zip")]) == 1
    assert "already exists" in capsys.readouterr().err
    assert main(["export-model", str(folder), str(tmp_path / "m.tar")]) == 1
    assert "is a .zip file" in capsys.readouterr().err
    assert main(["import-model", str(tmp_path / "m.zip"), str(tmp_path / "back")]) == 0
    assert (tmp_path / "back" / "weights.pt").is_file()
