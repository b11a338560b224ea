"""`anatomics predict` and `anatomics postprocess` end to end on a small saved model."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
import torch
import zarr

from napari_anatomics.cli import main
from napari_anatomics.core.progress import CancelToken, run_job
from napari_anatomics.io.read import open_volume
from napari_anatomics.io.samples import synthetic_sbfsem
from napari_anatomics.models import build_network, plan_architecture
from napari_anatomics.models.config import ModelConfig
from napari_anatomics.models.store import save_model
from napari_anatomics.predict.config import PredictConfig
from napari_anatomics.segment.config import SegmentConfig
from napari_anatomics.segment.postprocess import postprocess
from napari_anatomics.tasks.autolabel import autolabel

LEVELS = [
    "--seed-threshold",
    "0.5",
    "--boundary-threshold",
    "0.6",
    "--foreground-threshold",
    "0.45",
    "--seed-erosion",
    "1",
    "--seed-depth",
    "0.3",
    "--seed-depth-radius",
    "8",
    "--min-seed-size",
    "5",
]


@pytest.fixture(scope="module")
def model_and_image(tmp_path_factory):
    root = tmp_path_factory.mktemp("predict")
    window = (8, 32, 32)
    arch = plan_architecture("resunet3d", 2, (40, 40, 40), window, width=4, depth=2)
    config = ModelConfig(
        task="instance",
        classes=["chloroplast"],
        window=window,
        voxel_size=(40, 20, 20),
        architecture=arch,
        targets=["foreground", "boundary"],
        normalization={"mean": 150.0, "std": 40.0},
        downsample=(1, 2, 2),
    )
    torch.manual_seed(0)
    save_model(root / "model", build_network(config), config)
    image = synthetic_sbfsem((12, 64, 80), 6, voxel_size=(40, 20, 20)).image
    tifffile.imwrite(root / "image.tif", image)
    return root / "model", root / "image.tif", root


def test_predict_writes_probabilities_labels_and_settings(model_and_image, capsys):
    model, image, root = model_and_image
    out = root / "out.zarr"
    code = main(
        [
            "predict",
            str(model),
            str(image),
            "--out",
            str(out),
            "--tta",
            "4",
            "--batch",
            "2",
            "--voxel-size",
            "20,20,40",
            "--min-size",
            "3",
            *LEVELS,
        ]
    )
    assert code == 0, capsys.readouterr().err
    group = zarr.open_group(str(out), mode="r")
    probabilities, labels = group["probabilities"], group["labels"]
    assert probabilities.shape == (2, 12, 64, 80) and probabilities.dtype == np.uint8
    assert labels.shape == (12, 64, 80) and labels.dtype == np.uint32
    assert labels.attrs["voxel_size_nm"] == [40.0, 20.0, 20.0]
    attrs = dict(group.attrs)
    assert attrs["model"]["folder"] == str(model)
    assert attrs["prediction"]["tta"] == 4 and attrs["postprocess"]["min_size"] == 3
    assert attrs["postprocess"]["seed_depth"] == 0.3
    assert attrs["postprocess"]["min_seed_size"] == 5
    # the labels are the post-processing of the stored maps (exact: the same uint8
    # maps through the same code)
    decoding = SegmentConfig(
        min_size=3,
        seed_threshold=0.5,
        boundary_threshold=0.6,
        foreground_threshold=0.45,
        seed_erosion=1,
        seed_depth=0.3,
        seed_depth_radius=8,
        min_seed_size=5,
    )
    recorded = {"task": "instance", **decoding.to_dict(), "block": [12, 64, 80]}
    assert attrs["postprocess"] == recorded
    expected = run_job(postprocess(probabilities, root / "check.zarr", decoding))
    np.testing.assert_array_equal(labels[:], expected[:])
    assert f"{labels.attrs['n_objects']} objects" in capsys.readouterr().out
    # `anatomics postprocess` gives the same labels
    code = main(
        ["postprocess", str(out), "--out", str(root / "post.zarr"), "--min-size", "3", *LEVELS]
    )
    assert code == 0
    np.testing.assert_array_equal(zarr.open_group(str(root / "post.zarr"))["labels"][:], labels[:])


def test_predict_options_and_errors(model_and_image, capsys):
    model, image, root = model_and_image
    out = root / "plain.zarr"
    assert (
        main(
            [
                "predict",
                str(model),
                str(image),
                "--out",
                str(out),
                "--no-postprocess",
                "--output",
                "float16",
                "--precision",
                "float32",
            ]
        )
        == 0
    )
    group = zarr.open_group(str(out), mode="r")
    assert "labels" not in group and group["probabilities"].dtype == np.float16
    assert group["probabilities"].attrs["prediction"]["precision"] == "float32"
    capsys.readouterr()
    assert main(["predict", str(model), str(image), "--out", str(out), "--stride", "9,8,8"]) == 1
    assert "larger than the model window" in capsys.readouterr().err
    assert main(["predict", str(root / "nope"), str(image), "--out", str(out)]) == 1
    assert "not a model folder" in capsys.readouterr().err
    assert main(["postprocess", str(root / "none.zarr"), "--out", str(out)]) == 1
    assert "no such prediction" in capsys.readouterr().err


def test_autolabel_records_resumes_and_keeps_labels(model_and_image):
    """The one auto-label job: provenance written, a stopped run resumes, labels kept."""
    model, image_path, root = model_and_image
    image = open_volume(str(image_path), voxel_size=(40, 20, 20))
    out = root / "job.zarr"
    settings = PredictConfig(memory_mb=0.05, chunks=(6, 32, 40), precision="float32")
    cancel = CancelToken()
    job = autolabel(image, str(model), out, predict=settings, cancel=cancel)
    for event in job:
        if isinstance(event.payload, tuple):  # one region written: stop
            cancel.cancel()
    assert "probabilities" not in zarr.open_group(str(out))
    events = []
    result = run_job(autolabel(image, str(model), out, predict=settings), events.append)
    assert events[0].message.startswith("predict: resuming: 1/")
    assert {e.message.split(":")[0] for e in events} >= {"predict", "postprocess"}
    assert not result.kept and result.segment == SegmentConfig()
    attrs = dict(zarr.open_group(str(out)).attrs)
    assert attrs["model"]["folder"] == str(model) and attrs["image"] == image.source
    assert attrs["prediction"] == result.probabilities.attrs["prediction"]
    assert attrs["postprocess"] == result.labels.attrs["postprocess"]
    # run again: the finished maps are reused and the labels (perhaps edited) are kept
    result.labels[0, 0, 0] = 77
    again = run_job(autolabel(image, str(model), out, predict=settings))
    assert again.kept and again.labels[0, 0, 0] == 77
    replaced = run_job(
        autolabel(image, str(model), out, predict=settings, segment=SegmentConfig(min_size=5),
                  overwrite=True)
    )  # fmt: skip
    assert not replaced.kept and replaced.labels.attrs["postprocess"]["min_size"] == 5


@pytest.mark.slow
def test_predict_on_local_cluster_equals_single_process(model_and_image):
    model, image, root = model_and_image
    single, cluster = root / "single.zarr", root / "cluster.zarr"
    # float32: the comparison is about regions split over processes, not precision
    args = ["--no-postprocess", "--memory-mb", "1", "--precision", "float32"]
    assert main(["predict", str(model), str(image), "--out", str(single), *args]) == 0
    assert (
        main(["predict", str(model), str(image), "--out", str(cluster), "--workers", "2", *args])
        == 0
    )
    # Workers predict each region's tiles in their own batches, so the float32 maps
    # differ by a few ulps (oneDNN's grouping, see test_inference.F32_REGROUPED); stored
    # as uint8 (steps of 1/255), a value that close to a rounding boundary can land one
    # step away, never more.
    steps = zarr.open_group(str(cluster))["probabilities"][:].astype(np.int16)
    steps -= zarr.open_group(str(single))["probabilities"][:]
    assert np.abs(steps).max() <= 1


def test_predict_writes_labels_as_ome_zarr_read_by_ome_zarr_py(model_and_image, capsys):
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Reader

    from napari_anatomics.io.omezarr import write_ome_zarr

    model, image, root = model_and_image
    args = ["predict", str(model), str(image), "--voxel-size", "20,20,40", "--min-size", "3"]
    # labels of their own
    own = root / "own.ome.zarr"
    assert main([*args, "--out", str(root / "o1.zarr"), "--ome-zarr", str(own)]) == 0
    labels = zarr.open_group(str(root / "o1.zarr"))["labels"][:]
    node = next(iter(Reader(parse_url(str(own)))()))
    assert len(node.data) >= 2  # a pyramid
    assert np.array_equal(np.asarray(node.data[0]), labels)
    axes = node.metadata["axes"]
    assert [a["unit"] for a in axes] == ["nanometer"] * 3
    scale = node.metadata["coordinateTransformations"][0][0]["scale"]
    assert scale == [40.0, 20.0, 20.0]  # the voxel size
    assert "image-label" in zarr.open_group(str(own)).attrs
    maps = next(iter(Reader(parse_url(str(root / "own_probabilities.ome.zarr")))()))
    probabilities = zarr.open_group(str(root / "o1.zarr"))["probabilities"]
    assert np.array_equal(np.asarray(maps.data[0]), probabilities[:])
    assert [a["name"] for a in maps.metadata["axes"]] == ["c", "z", "y", "x"]
    # into the labels/ group of an OME-Zarr image of the stack
    stack = write_ome_zarr(open_volume(image).data, root / "stack.ome.zarr",
                           voxel_size=(40, 20, 20))
    assert main([*args, "--out", str(root / "o2.zarr"), "--ome-zarr", str(stack)]) == 0
    assert zarr.open_group(str(stack / "labels")).attrs["labels"] == ["model"]
    assert np.array_equal(zarr.open_group(str(stack / "labels" / "model"))["0"][:], labels)
    assert (root / "stack_model_probabilities.ome.zarr").is_dir()
    capsys.readouterr()
    # refused before any work: an existing target, a name that is not *.ome.zarr
    assert main([*args, "--out", str(root / "o3.zarr"), "--ome-zarr", str(own)]) == 1
    assert "already exists" in capsys.readouterr().err
    assert main([*args, "--out", str(root / "o4.zarr"), "--ome-zarr", str(root / "x.zarr")]) == 1
    assert "name it x.ome.zarr" in capsys.readouterr().err
    assert not (root / "o3.zarr").exists() and not (root / "o4.zarr").exists()
