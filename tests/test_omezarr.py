"""OME-Zarr: our multiscale images and labels read by ome-zarr-py, theirs read by us."""

from __future__ import annotations

import numpy as np
import pytest
import zarr

from napari_anatomics.core.progress import run_job
from napari_anatomics.io.combine import combine_slices
from napari_anatomics.io.omezarr import open_multiscale, pyramid_factors, write_ome_zarr
from napari_anatomics.io.read import open_volume
from napari_anatomics.io.samples import synthetic_sbfsem
from napari_anatomics.io.write import write_volume_job

VOXEL = (40.0, 10.0, 10.0)


@pytest.fixture(scope="module")
def sample():
    return synthetic_sbfsem((12, 300, 330), 10, voxel_size=VOXEL, seed=3)


def test_pyramid_halves_in_plane_until_voxels_are_not_flat():
    assert pyramid_factors((20, 600, 700), VOXEL) == [(1, 1, 1), (1, 2, 2), (1, 4, 4)]
    # near-isotropic voxels: z is halved with y and x
    assert pyramid_factors((64, 1024, 1024), (10, 10, 10))[:3] == [(1, 1, 1), (2, 2, 2), (4, 4, 4)]
    # 40 nm z, 5 nm x: z joins once the voxels are isotropic (40 nm in-plane)
    assert pyramid_factors((40, 2048, 2048), (40, 5, 5), levels=5) == [
        (1, 1, 1), (1, 2, 2), (1, 4, 4), (1, 8, 8), (2, 16, 16)
    ]


def test_image_and_labels_pyramids_are_exact(tmp_path, sample):
    store = write_ome_zarr(sample.image, tmp_path / "s.ome.zarr", voxel_size=VOXEL,
                           chunks=(4, 64, 64))
    write_ome_zarr(sample.labels, store / "labels" / "cells", voxel_size=VOXEL, labels=True,
                   chunks=(4, 64, 64),
                   properties=[{"label-value": 1, "volume_um3": 0.5, "class": "mito"}])
    levels = open_multiscale(store)
    assert [v.shape for v in levels] == [(12, 300, 330), (12, 150, 165)]
    assert [v.voxel_size for v in levels] == [VOXEL, (40.0, 20.0, 20.0)]
    image = sample.image.astype(np.float64)
    mean = image.reshape(12, 150, 2, 165, 2).mean(axis=(2, 4))
    assert np.array_equal(np.asarray(levels[1].data), np.round(mean).astype(np.uint8))
    labels = open_multiscale(store / "labels" / "cells")
    assert np.array_equal(np.asarray(labels[0].data), sample.labels)
    assert np.array_equal(np.asarray(labels[1].data), sample.labels[:, ::2, ::2])
    group = zarr.open_group(str(store / "labels" / "cells"), mode="r")
    meta = group.attrs["image-label"]
    assert meta["properties"] == [{"label-value": 1, "volume_um3": 0.5, "class": "mito"}]
    assert meta["source"] == {"image": "../../"}
    assert zarr.open_group(str(store / "labels"), mode="r").attrs["labels"] == ["cells"]


def test_ome_zarr_py_reads_ours(tmp_path, sample):
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Label, Multiscales, Reader

    store = write_ome_zarr(sample.image, tmp_path / "s.ome.zarr", voxel_size=VOXEL)
    write_ome_zarr(sample.labels, store / "labels" / "cells", voxel_size=VOXEL, labels=True)
    nodes = list(Reader(parse_url(str(store)))())
    image = next(n for n in nodes if n.load(Multiscales) and not n.load(Label))
    assert [tuple(d.shape) for d in image.data] == [(12, 300, 330), (12, 150, 165)]
    axes = image.metadata["axes"]
    assert [a["name"] for a in axes] == ["z", "y", "x"]
    assert {a["unit"] for a in axes} == {"nanometer"}
    scales = [t[0]["scale"] for t in image.metadata["coordinateTransformations"]]
    assert scales == [[40.0, 10.0, 10.0], [40.0, 20.0, 20.0]]
    label = next(n for n in nodes if n.load(Label))
    assert np.array_equal(np.asarray(label.data[0]), sample.labels)
    ids = {c["label-value"] for c in label.zarr.root_attrs["image-label"]["colors"]}
    assert ids == set(np.unique(sample.labels)) - {0}


def test_we_read_theirs(tmp_path, sample):
    from ome_zarr.format import FormatV04
    from ome_zarr.writer import write_image

    root = zarr.open_group(str(tmp_path / "theirs.ome.zarr"), mode="w", zarr_format=2)
    write_image(sample.image, root, scale_factors=[{"z": 1, "y": 2, "x": 2}], fmt=FormatV04(),
                axes="zyx", scale={"z": 0.04, "y": 0.01, "x": 0.01},
                axes_units=dict.fromkeys("zyx", "micrometer"))
    levels = open_multiscale(tmp_path / "theirs.ome.zarr")
    assert len(levels) == 2
    assert levels[0].voxel_size == pytest.approx(VOXEL)
    assert levels[1].voxel_size == pytest.approx((40.0, 20.0, 20.0))
    opened = open_volume(tmp_path / "theirs.ome.zarr")
    assert opened.voxel_size == pytest.approx(VOXEL)
    assert np.array_equal(np.asarray(opened.data), sample.image)


def test_write_volume_picks_ome_zarr_and_reads_one_block_at_a_time(tmp_path, sample, monkeypatch):
    import dask.array as da

    source = zarr.create_array(str(tmp_path / "src.zarr"), shape=sample.image.shape,
                               chunks=(4, 64, 64), dtype=sample.image.dtype)
    source[:] = sample.image
    reads = []
    read = zarr.Array.__getitem__

    def recording(self, key):
        part = read(self, key)
        reads.append(np.asarray(part).size)
        return part

    monkeypatch.setattr(zarr.Array, "__getitem__", recording)
    path = run_job(write_volume_job(da.from_zarr(source), tmp_path / "w.ome.zarr",
                                    voxel_size=VOXEL, chunks=(4, 64, 64)))
    monkeypatch.undo()
    assert path == str(tmp_path / "w.ome.zarr")
    # every read (source chunks, then the level below each pyramid block) is block-sized
    assert reads and max(reads) <= 4 * 128 * 128 < sample.image.size
    assert np.array_equal(np.asarray(open_volume(path).data), sample.image)


def test_combine_slices_into_ome_zarr(tmp_path, sample):
    import tifffile

    folder = tmp_path / "slices"
    folder.mkdir()
    for z, plane in enumerate(sample.image):
        tifffile.imwrite(folder / f"s_{z}.tif", plane)
    out = run_job(combine_slices(folder, tmp_path / "c.ome.zarr", voxel_size=VOXEL))
    assert out.voxel_size == VOXEL
    assert len(open_multiscale(tmp_path / "c.ome.zarr")) == 2


def test_napari_ome_zarr_opens_ours_as_multiscale_layers(tmp_path, sample):
    from napari_ome_zarr import napari_get_reader

    store = write_ome_zarr(sample.image, tmp_path / "s.ome.zarr", voxel_size=VOXEL)
    write_ome_zarr(sample.labels, store / "labels" / "cells", voxel_size=VOXEL, labels=True)
    layers = napari_get_reader(str(store))(str(store))
    kinds = {kind: (data, meta) for data, meta, kind in layers}
    data, meta = kinds["image"]
    assert [tuple(d.shape) for d in data] == [(12, 300, 330), (12, 150, 165)]
    assert list(meta["scale"]) == [40.0, 10.0, 10.0]
    labels, _ = kinds["labels"]
    assert np.array_equal(np.asarray(labels[0]), sample.labels)


def test_probability_maps_with_a_channel_axis(tmp_path, sample):
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Reader

    maps = np.stack([sample.image, 255 - sample.image])  # (C, Z, Y, X)
    store = write_ome_zarr(maps, tmp_path / "p.ome.zarr", voxel_size=VOXEL,
                           channels=["foreground", "boundary"], chunks=(4, 64, 64))
    node = next(iter(Reader(parse_url(str(store)))()))
    assert [tuple(d.shape) for d in node.data] == [(2, 12, 300, 330), (2, 12, 150, 165)]
    assert [a["name"] for a in node.metadata["axes"]] == ["c", "z", "y", "x"]
    assert node.metadata["coordinateTransformations"][1][0]["scale"] == [1.0, 40.0, 20.0, 20.0]
    level1 = np.asarray(node.data[1][1])
    expected = np.round((255 - sample.image).reshape(12, 150, 2, 165, 2).mean(axis=(2, 4)))
    assert np.array_equal(level1, expected.astype(np.uint8))
    assert [c["label"] for c in zarr.open_group(str(store)).attrs["omero"]["channels"]] == [
        "foreground", "boundary"
    ]
    with pytest.raises(ValueError, match=r"needs a \(3, z, y, x\) stack"):
        write_ome_zarr(maps, tmp_path / "q.ome.zarr", voxel_size=VOXEL, channels=["a", "b", "c"])
