"""npe2 reader, Labels writers and sample data round trips."""

from __future__ import annotations

import importlib

import dask.array as da
import numpy as np
import pytest
import tifffile
from npe2 import PluginManifest

from napari_anatomics.core.volume import Volume
from napari_anatomics.io.read import open_volume
from napari_anatomics.io.samples import SAMPLE_CREDIT, synthetic_sbfsem
from napari_anatomics.io.write import write_h5, write_zarr
from napari_anatomics.napari import layers
from napari_anatomics.napari.io import (
    get_reader,
    write_labels_h5,
    write_labels_tif,
    write_labels_zarr,
)
from napari_anatomics.napari.layers import add_volume, layer_volume
from napari_anatomics.napari.sample_data import chloroplast_sample, synthetic_sample


def _read(path):
    reader = get_reader(str(path))
    assert callable(reader), path
    layers = reader(str(path))
    assert len(layers) == 1
    return layers[0]


def test_reader_declines_what_it_cannot_read(tmp_path):
    (tmp_path / "notes.txt").write_text("x")
    assert get_reader(str(tmp_path / "notes.txt")) is None
    assert get_reader([str(tmp_path / "a.tif"), str(tmp_path / "b.tif")]) is None
    empty = tmp_path / "empty"
    empty.mkdir()
    assert get_reader(str(empty)) is None


def test_reader_image_and_labels_with_scale(tmp_path):
    image = np.random.default_rng(0).integers(0, 255, (4, 16, 20)).astype(np.uint8)
    labels = (image > 128).astype(np.uint16)
    meta = {"spacing": 0.04, "unit": "um"}
    tifffile.imwrite(
        tmp_path / "raw.tif", image, imagej=True, resolution=(100, 100), metadata=meta
    )
    tifffile.imwrite(tmp_path / "raw_labels.tif", labels)
    data, kwargs, kind = _read(tmp_path / "raw.tif")
    # scales from TIFF rationals / µm floats: a few ulps, approx's rel=1e-6 (also below)
    assert kind == "image" and kwargs["scale"] == pytest.approx((40.0, 10.0, 10.0))
    np.testing.assert_array_equal(np.asarray(data), image)
    data, kwargs, kind = _read(tmp_path / "raw_labels.tif")  # integer + "labels" in the name
    assert kind == "labels" and isinstance(data, np.ndarray)
    np.testing.assert_array_equal(data, labels)
    assert kwargs["metadata"]["voxel_size_origin"] == "default"
    # h5 with a key, zarr and a slice folder
    write_h5(image, tmp_path / "raw.h5", key="em", voxel_size=(30, 5, 5))
    data, kwargs, kind = _read(f"{tmp_path}/raw.h5:em")
    assert kind == "image" and kwargs["scale"] == (30.0, 5.0, 5.0)
    write_zarr(labels, tmp_path / "pred.zarr", attrs={"layer_type": "labels"})
    assert _read(tmp_path / "pred.zarr")[2] == "labels"  # flagged by the file, not the name
    folder = tmp_path / "slices"
    folder.mkdir()
    for z in range(3):
        tifffile.imwrite(folder / f"s{z + 1}.tif", image[z])
    np.testing.assert_array_equal(np.asarray(_read(folder)[0]), image[:3])


def test_reader_and_panels_share_one_volume_to_layer_rule(
    make_napari_viewer, tmp_path, monkeypatch
):
    """The reader's layer and the panels' (add_volume) are the same: kind, data, scale."""
    viewer = make_napari_viewer()
    labels = np.arange(4 * 6 * 8, dtype=np.uint16).reshape(4, 6, 8) % 5
    for name, kind in (("cells_seg.h5", "labels"), ("cells.h5", "image")):
        write_h5(labels, tmp_path / name, key="data", voxel_size=(30, 5, 5))
        data, kwargs, read_kind = _read(tmp_path / name)
        np.testing.assert_array_equal(np.asarray(data), labels)
        layer = add_volume(viewer, open_volume(str(tmp_path / name)))
        assert read_kind == kind == layer._type_string
        assert tuple(layer.scale) == kwargs["scale"] == (30.0, 5.0, 5.0)
        assert layer.metadata == kwargs["metadata"]
        # paintable labels are in memory, images stay lazy; both read back as the volume
        assert isinstance(layer.data, np.ndarray) == (kind == "labels")
        assert layer_volume(layer).voxel_size == (30.0, 5.0, 5.0)
    # labels too big to paint stay on disk, however they are added
    monkeypatch.setattr(layers, "PAINTABLE_BYTES", labels.nbytes - 1)
    big = Volume(da.from_array(labels, chunks=2), source="big_labels.zarr")
    assert isinstance(add_volume(viewer, big).data, da.Array)
    assert isinstance(layers.volume_layer_data(big)[0], da.Array)


@pytest.mark.parametrize(
    ("writer", "name"),
    [(write_labels_zarr, "seg.zarr"), (write_labels_tif, "seg.tif"), (write_labels_h5, "seg.h5")],
)
def test_labels_writers_round_trip(tmp_path, writer, name):
    labels = synthetic_sbfsem((6, 40, 40), n_objects=4, seed=3).labels
    path = str(tmp_path / name)
    assert writer(path, labels, {"scale": (40.0, 8.0, 8.0), "name": "seg"}) == [path]
    data, kwargs, kind = _read(path)
    assert kind == "labels"
    np.testing.assert_array_equal(np.asarray(data), labels)
    assert kwargs["scale"] == pytest.approx((40.0, 8.0, 8.0))
    assert kwargs["metadata"]["voxel_size_origin"] == "file"


def test_sample_data():
    (image, image_kw, image_kind), (labels, labels_kw, labels_kind) = chloroplast_sample()
    assert (image_kind, labels_kind) == ("image", "labels")
    assert image.shape == labels.shape == (10, 292, 823)
    assert image_kw["scale"] == labels_kw["scale"] == (40.0, 40.0, 40.0)
    assert labels_kw["metadata"]["credit"] == SAMPLE_CREDIT
    assert len(np.unique(labels)) == 62  # 61 chloroplast values and background
    (image, kwargs, _), (labels, _, kind) = synthetic_sample()
    assert image.shape == labels.shape == (32, 256, 256) and kind == "labels"
    expected = synthetic_sbfsem((32, 256, 256), n_objects=24, seed=0)
    np.testing.assert_array_equal(labels, expected.labels)
    assert kwargs["scale"] == expected.voxel_size


def test_manifest_names_resolve():
    manifest = PluginManifest.from_distribution("napari-anatomics")
    mine = ("get_reader", "write_labels", "sample", "image_tools", "data_check")
    commands = [c for c in manifest.contributions.commands if c.id.split(".")[1].startswith(mine)]
    assert len(commands) == 9
    # every command resolves, the panels', the menus' and the scripts' ones too
    for command in manifest.contributions.commands:
        module, _, name = command.python_name.partition(":")
        assert callable(getattr(importlib.import_module(module), name)), command.python_name
    ids = {c.id for c in manifest.contributions.commands}
    menus = manifest.contributions.menus
    assert {m for m in menus} == {"napari/layers/measure", "napari/layers/segment"}
    assert all(item.command in ids for items in menus.values() for item in items)
    assert {c.value for c in manifest.categories} >= {"Segmentation", "Measurement"}
