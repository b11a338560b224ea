"""Models as BioImage.IO packages: valid, reproducible by bioimageio.core, and back again.

Packages made by other tools (built here with bioimageio.spec, no network) import when
their tensors fit and then run tiled like our own models; the others are refused.
"""

from __future__ import annotations

import hashlib
import warnings
import zipfile

import numpy as np
import pytest
import tifffile
import torch

from napari_anatomics.cli import main
from napari_anatomics.models import build_network, plan_architecture
from napari_anatomics.models.bioimageio import PackageError, export_model
from napari_anatomics.models.config import ModelConfig
from napari_anatomics.models.store import load_model, save_model
from napari_anatomics.models.zoo_import import import_model

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
    assert not (tmp_path / "d" / "weights.pt").exists()


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


def test_our_package_without_our_config_imports_as_torchscript(tmp_path):
    """Any tool's package with TorchScript weights: ours, its config taken out, runs the same."""
    folder = _model(tmp_path / "m", "resunet3d")
    package = export_model(folder, tmp_path / "m.zip")
    with zipfile.ZipFile(package) as src, zipfile.ZipFile(tmp_path / "other.zip", "w") as dst:
        for item in src.infolist():
            data = src.read(item)
            if item.filename == "rdf.yaml":
                data = data.replace(b"napari_anatomics:", b"someone_else:")
            dst.writestr(item, data)
    back = load_model(import_model(tmp_path / "other.zip", tmp_path / "back"), "cpu")
    assert back.config.architecture["name"] == "torchscript"
    assert back.config.targets == ["foreground", "boundary"] and back.config.task == "instance"
    assert back.config.voxel_size == (40.0, 20.0, 20.0)  # the package's model resolution
    assert back.config.normalization == pytest.approx({"mean": 120.0, "std": 30.0})
    batch = torch.randn(1, 1, 8, 32, 32)
    torch.testing.assert_close(back(batch), load_model(folder, "cpu")(batch), atol=1e-5, rtol=0)
    with pytest.raises(PackageError, match=r"imported from a BioImage\.IO package"):
        export_model(tmp_path / "back", tmp_path / "again.zip")


class Pointwise(torch.nn.Module):
    """A 1x1(x1) convolution: tiles and whole images give the same output everywhere."""

    def __init__(self, dims: int, weight, bias):
        super().__init__()
        self.conv = (torch.nn.Conv2d if dims == 2 else torch.nn.Conv3d)(1, len(weight), 1)
        with torch.no_grad():
            self.conv.weight.copy_(torch.tensor(weight).reshape(self.conv.weight.shape))
            self.conv.bias.copy_(torch.tensor(bias))

    def forward(self, x):
        return self.conv(x)


def _package(tmp_path, name, net, raw, expected, *, names, pre, post, scale,
             inputs=("raw",), channels=("raw",), weights="torchscript"):
    """A package as another tool would make it (bioimageio.spec 0.5), with ``net`` traced."""
    import bioimageio.spec.model.v0_5 as spec
    from bioimageio.spec import save_bioimageio_package

    root = tmp_path / name
    root.mkdir()
    np.save(root / "in.npy", np.repeat(raw, len(channels), axis=1).astype(np.float32))
    np.save(root / "out.npy", expected.astype(np.float32))
    (root / "README.md").write_text("# a model from elsewhere\n")
    space = "zyx"[3 - (raw.ndim - 2):]

    def axes(tensor):
        found = [spec.BatchAxis()]
        if tensor == "out":
            found.append(spec.ChannelAxis(channel_names=[spec.Identifier(n) for n in names]))
        else:
            found.append(spec.ChannelAxis(channel_names=[spec.Identifier(c) for c in channels]))
        for a in space:
            kw = {"id": spec.AxisId(a), "scale": scale[a], "unit": "nanometer"}
            if tensor == "out":
                ref = spec.SizeReference(tensor_id=spec.TensorId("raw"), axis_id=spec.AxisId(a))
                found.append(spec.SpaceOutputAxis(size=ref, **kw))
            else:
                found.append(spec.SpaceInputAxis(size=spec.ParameterizedSize(min=4, step=4), **kw))
        return found

    version = spec.Version(torch.__version__.split("+")[0])
    if weights == "torchscript":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # jit is deprecated, still read
            traced = torch.jit.trace(net.eval(), torch.from_numpy(raw.astype(np.float32)))
        traced.save(root / "w.pt")
        entry = {"torchscript": spec.TorchscriptWeightsDescr(source=root / "w.pt",
                                                             pytorch_version=version)}
    else:
        torch.save(net.state_dict(), root / "w.pt")
        (root / "net.py").write_text("import torch\n\nNet = torch.nn.Identity\n")
        arch = spec.ArchitectureFromFileDescr(source=root / "net.py", callable="Net")
        entry = {"pytorch_state_dict": spec.PytorchStateDictWeightsDescr(
            source=root / "w.pt", architecture=arch, pytorch_version=version)}
    descr = spec.ModelDescr(
        name=f"{name} from elsewhere",
        description="nuclei and their boundaries" if raw.ndim == 4 else "organelles",
        authors=[spec.Author(name="Someone Else")],
        cite=[spec.CiteEntry(text="a paper", url="https://example.org/paper")],
        license="MIT",
        documentation=spec.FileDescr(source=root / "README.md"),
        tags=["segmentation"],
        inputs=[
            spec.InputTensorDescr(id=spec.TensorId(t), axes=axes("in"), preprocessing=pre,
                                  test_tensor=spec.FileDescr(source=root / "in.npy"))
            for t in inputs
        ],
        outputs=[spec.OutputTensorDescr(id=spec.TensorId("probabilities"), axes=axes("out"),
                                        postprocessing=post,
                                        test_tensor=spec.FileDescr(source=root / "out.npy"))],
        weights=spec.WeightsDescr(**entry),
    )
    return save_bioimageio_package(descr, output_path=tmp_path / f"{name}.zip")


def _cells(shape, seed=0):
    """A dim (z, y, x) stack with bright disks: foreground for the nets below."""
    rng = np.random.default_rng(seed)
    z, y, x = np.ogrid[: shape[0], : shape[1], : shape[2]]
    image = rng.normal(40, 8, shape)
    for cy, cx in ((60, 70), (150, 200), (230, 90)):
        image[:, :, :][((y - cy) ** 2 + (x - cx) ** 2 < 30**2) & (z >= 0)] = 200
    return np.clip(image + rng.normal(0, 4, shape), 0, 255).astype(np.uint8)


def _percentile_2d(tmp_path):
    """2D, (b, c, y, x), scale_range 1..99.8 percentiles, sigmoid; boundary channel first."""
    import bioimageio.spec.model.v0_5 as spec

    net = Pointwise(2, [-2.0, 12.0], [-3.0, -6.0])
    raw = _cells((1, 64, 64))[None].astype(np.float32)  # (b, c, y, x)
    lo, hi = np.percentile(raw, [1, 99.8])
    with torch.no_grad():
        normalized = ((raw - lo) / (hi - lo + 1e-6)).astype(np.float32)
        expected = torch.sigmoid(net(torch.from_numpy(normalized))).numpy()
    pre = [spec.EnsureDtypeDescr(kwargs=spec.EnsureDtypeKwargs(dtype="float32")),
           spec.ScaleRangeDescr(kwargs=spec.ScaleRangeKwargs(
               axes=[spec.AxisId("y"), spec.AxisId("x")], min_percentile=1, max_percentile=99.8))]
    options = {"names": ["boundary", "nuclei"], "pre": pre, "post": [spec.SigmoidDescr()],
               "scale": {"y": 4.0, "x": 4.0}}
    return net, raw, expected, options


def test_foreign_2d_percentile_package_runs_tiled_per_stack(tmp_path, capsys):
    from bioimageio.core import test_model

    net, raw, expected, options = _percentile_2d(tmp_path)
    package = _package(tmp_path, "nuclei", net, raw, expected, **options)
    summary = test_model(package)  # bioimageio.core reproduces the test output too
    assert summary.status == "passed", [d.name for d in summary.details if d.status != "passed"]
    assert main(["import-model", str(package), str(tmp_path / "model")]) == 0
    assert "instance: foreground, boundary; window 1,256,256; normalized per stack" in (
        capsys.readouterr().out
    )
    config = ModelConfig.load(tmp_path / "model")
    assert (config.task, config.classes, config.window) == ("instance", ["nuclei"], (1, 256, 256))
    assert config.voxel_size[1:] == (4.0, 4.0) and config.downsample == (1, 1, 1)
    assert config.normalization == {"mode": "percentile", "min": 1.0, "max": 99.8, "eps": 1e-6}

    stack = _cells((5, 300, 280), seed=1)
    tifffile.imwrite(tmp_path / "stack.tif", stack)
    args = ["predict", str(tmp_path / "model"), str(tmp_path / "stack.tif"), "--out",
            str(tmp_path / "out.zarr"), "--output", "float32", "--precision", "float32",
            "--voxel-size", "4,4,40"]
    assert main(args) == 0, capsys.readouterr().err
    import zarr

    group = zarr.open_group(str(tmp_path / "out.zarr"), mode="r")
    got = group["probabilities"][...]
    lo, hi = np.percentile(stack, [1, 99.8])  # once for the whole stack
    with torch.no_grad():
        direct = torch.sigmoid(net(torch.from_numpy((stack[:, None] - lo) / (hi - lo + 1e-6))
                                   .float())).numpy()
    np.testing.assert_allclose(got, direct[:, [1, 0]].transpose(1, 0, 2, 3), atol=1e-5)
    recorded = group["probabilities"].attrs["prediction"]["normalization"]
    assert recorded["mean"] == pytest.approx(lo) and recorded["std"] == pytest.approx(hi - lo)
    assert group["labels"].attrs["n_objects"] == 3  # the three disks


def test_foreign_3d_semantic_package_matches_bioimageio_core(tmp_path):
    import bioimageio.spec.model.v0_5 as spec
    from bioimageio.core import predict

    from napari_anatomics.core.progress import run_job
    from napari_anatomics.core.volume import Volume
    from napari_anatomics.predict.config import PredictConfig
    from napari_anatomics.tasks.autolabel import autolabel

    net = Pointwise(3, [0.0, 6.0, -6.0], [1.5, -1.5, -1.5])
    rng = np.random.default_rng(2)
    stack = np.full((12, 140, 136), 128.0) + rng.normal(0, 5, (12, 140, 136))
    stack[2:9, 20:60, 30:80], stack[4:12, 90:130, 60:120] = 220, 30  # "mito", "er"
    stack = stack.clip(0, 255).astype(np.uint8)
    raw = stack[None, None, :8, :64, :64].astype(np.float32)
    with torch.no_grad():
        x = torch.from_numpy((raw / 255 - 0.5) / (0.25 + 1e-6))
        expected = torch.softmax(net(x), 1).numpy()
    pre = [spec.ScaleLinearDescr(kwargs=spec.ScaleLinearKwargs(gain=1 / 255, offset=-0.5)),
           spec.FixedZeroMeanUnitVarianceDescr(
               kwargs=spec.FixedZeroMeanUnitVarianceKwargs(mean=0.0, std=0.25))]
    post = [spec.SoftmaxDescr(kwargs=spec.SoftmaxKwargs(axis=spec.AxisId("channel")))]
    package = _package(tmp_path, "organelles", net, raw, expected,
                       names=["background", "mito", "er"], pre=pre, post=post,
                       scale={"z": 40.0, "y": 10.0, "x": 10.0})
    folder = import_model(package, tmp_path / "model")
    config = ModelConfig.load(folder)
    assert (config.task, config.classes, config.window) == ("semantic", ["mito", "er"],
                                                            (8, 128, 128))
    assert config.voxel_size == (40.0, 10.0, 10.0)
    assert config.normalization == pytest.approx({"mean": 127.5, "std": 0.25 * 255}, rel=1e-5)

    volume = Volume(stack, voxel_size=(40.0, 10.0, 10.0), name="stack")
    settings = PredictConfig(output="float32", precision="float32", device="cpu")
    result = run_job(autolabel(volume, folder, tmp_path / "out.zarr", predict=settings))
    whole = predict(model=package, inputs=stack[None, None].astype(np.float32))
    reference = np.asarray(whole.members["probabilities"].data)[0]
    np.testing.assert_allclose(result.probabilities[...], reference, atol=1e-5)
    labels = result.labels[...]
    assert labels[5, 40, 50] != labels[8, 110, 90] and labels[5, 40, 50] and labels[8, 110, 90]
    assert labels[0, 5, 5] == 0


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"inputs": ("raw", "mask")}, "has 2 inputs and 1 outputs"),
        ({"channels": ("red", "green", "blue")}, "takes 3 input channels"),
        ({"weights": "pytorch_state_dict"}, "has no TorchScript weights .*pytorch_state_dict"),
    ],
)
def test_foreign_packages_that_do_not_fit_are_refused(tmp_path, change, message):
    net, raw, expected, options = _percentile_2d(tmp_path)
    package = _package(tmp_path, "misfit", net, raw, expected, **{**options, **change})
    with pytest.raises(PackageError, match=message) as err:
        import_model(package, tmp_path / "model")
    assert "\n" not in str(err.value) and not (tmp_path / "model").exists()
