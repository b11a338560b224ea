"""open_volume on every format, slice folders, writers, combine_slices, lazy reading, errors."""

from __future__ import annotations

import threading
import tracemalloc

import dask.array as da
import h5py
import numpy as np
import pytest
import tifffile
import zarr
from PIL import Image

from napari_anatomics.core.progress import run_job
from napari_anatomics.io.combine import combine_slices
from napari_anatomics.io.read import VolumeReadError, open_volume, require_3d
from napari_anatomics.io.slices import natural_key
from napari_anatomics.io.write import write_h5, write_tif, write_zarr


@pytest.fixture
def stack() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 60000, (6, 20, 30)).astype(np.uint16)


def _slice_folder(folder, n=12, shape=(30, 40), suffix=".tif"):
    folder.mkdir()
    for i in range(1, n + 1):
        plane = np.full(shape, i, np.uint8)
        if suffix == ".tif":
            tifffile.imwrite(folder / f"img_{i}.tif", plane)
        else:
            Image.fromarray(plane).save(folder / f"img_{i}{suffix}")
    return folder


# --- TIFF -------------------------------------------------------------------------------


def test_imagej_tiff_lazy_with_voxel_size(tmp_path, stack):
    path = tmp_path / "stack.tif"
    tifffile.imwrite(
        path, stack, imagej=True, resolution=(1 / 0.008, 1 / 0.01),
        metadata={"spacing": 0.05, "unit": "um", "axes": "ZYX"},
    )  # fmt: skip
    volume = open_volume(path)
    assert isinstance(volume.data, da.Array)
    assert volume.data.chunksize == (1, 20, 30)  # one chunk per page
    # Voxel sizes come from TIFF rationals or µm floats times 1000: a few ulps off the
    # round number, so approx's default rel=1e-6 (here and below); images are exact.
    assert volume.voxel_size == pytest.approx((50.0, 10.0, 8.0))
    assert volume.voxel_size_origin == "file"
    np.testing.assert_array_equal(volume.data.compute(), stack)
    assert volume.source == str(path) and volume.name == "stack.tif"


def test_ome_tiff_voxel_size_in_nm(tmp_path, stack):
    path = tmp_path / "stack.ome.tif"
    meta = {"axes": "ZYX", "PhysicalSizeX": 7.0, "PhysicalSizeXUnit": "nm"}
    meta |= {"PhysicalSizeY": 7.0, "PhysicalSizeYUnit": "nm"}
    meta |= {"PhysicalSizeZ": 30.0, "PhysicalSizeZUnit": "nm"}
    tifffile.imwrite(path, stack, ome=True, metadata=meta)
    volume = open_volume(path)
    assert volume.voxel_size == pytest.approx((30.0, 7.0, 7.0))
    np.testing.assert_array_equal(volume.data[2:4].compute(), stack[2:4])


def test_plain_tiff_default_voxel_and_user_override(tmp_path, stack):
    path = tmp_path / "plain.tiff"
    tifffile.imwrite(path, stack, compression="zlib")
    assert open_volume(path).voxel_size_origin == "default"
    given = open_volume(path, voxel_size="8,8,30")  # user says X,Y,Z
    assert given.voxel_size == (30.0, 8.0, 8.0) and given.voxel_size_origin == "user"
    # a user voxel size overrides the one in the file
    tifffile.imwrite(tmp_path / "ij.tif", stack, imagej=True, metadata={"spacing": 2.0})
    assert open_volume(tmp_path / "ij.tif", voxel_size=(1, 2, 3)).voxel_size == (1, 2, 3)


def test_lazy_tiff_read_uses_memory_of_one_slab(tmp_path):
    """A 256 MiB TIFF is opened and one page read with far less memory than the file."""
    path, page_shape, n_pages = tmp_path / "big.tif", (2048, 2048), 64
    page = np.zeros(page_shape, np.uint8)
    with tifffile.TiffWriter(path) as tif:
        for z in range(n_pages):
            page[:] = z
            tif.write(page, contiguous=True)
    file_size = path.stat().st_size
    assert file_size >= 256 * 2**20
    tracemalloc.start()
    try:
        volume = open_volume(path)
        slab = volume.data[40].compute()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert volume.shape == (n_pages, *page_shape)
    assert (slab == 40).all()
    assert peak < file_size / 16, f"peak {peak / 2**20:.1f} MiB for one 4 MiB page"


# --- HDF5 -------------------------------------------------------------------------------


def test_h5_single_dataset_key_and_colon_syntax(tmp_path, stack):
    single = tmp_path / "one.h5"
    with h5py.File(single, "w") as f:
        f.create_dataset("raw", data=stack, chunks=(2, 20, 30)).attrs["element_size_um"] = [
            0.04, 0.01, 0.01
        ]  # fmt: skip
    volume = open_volume(single)
    assert volume.voxel_size == pytest.approx((40.0, 10.0, 10.0))
    assert volume.source == f"{single}:raw"
    np.testing.assert_array_equal(volume.data.compute(), stack)

    several = tmp_path / "several.h5"
    with h5py.File(several, "w") as f:
        f.create_dataset("volumes/raw", data=stack)
        f.create_dataset("volumes/labels", data=stack // 1000)
        f["volumes/labels"].attrs["resolution"] = [40, 4, 4]
    labels = open_volume(f"{several}:volumes/labels")
    np.testing.assert_array_equal(labels.data.compute(), stack // 1000)
    assert labels.voxel_size == (40.0, 4.0, 4.0)
    assert open_volume(several, key="volumes/raw").voxel_size_origin == "default"
    with pytest.raises(VolumeReadError, match=r"several datasets \(volumes/labels, volumes/raw\)"):
        open_volume(several)  # several datasets, no key: the error lists the keys
    with pytest.raises(VolumeReadError, match="no dataset 'nope'"):
        open_volume(several, key="nope")


# --- zarr -------------------------------------------------------------------------------


def test_zarr_array_group_and_ome_zarr(tmp_path, stack):
    array_path = tmp_path / "a.zarr"
    z = zarr.create_array(
        str(array_path), shape=stack.shape, chunks=(2, 10, 10), dtype=stack.dtype
    )
    z[:] = stack
    z.attrs["voxel_size"] = [50, 5, 5]
    volume = open_volume(array_path)
    assert volume.data.chunksize == (2, 10, 10) and volume.voxel_size == (50.0, 5.0, 5.0)
    np.testing.assert_array_equal(volume.data.compute(), stack)

    group = zarr.open_group(str(tmp_path / "g.zarr"), mode="w")
    group.create_array("raw", data=stack)
    group.create_array("labels", data=stack // 1000)
    np.testing.assert_array_equal(open_volume(tmp_path / "g.zarr", key="raw").data, stack)
    np.testing.assert_array_equal(open_volume(f"{tmp_path}/g.zarr:labels").data, stack // 1000)
    with pytest.raises(VolumeReadError, match="labels, raw"):
        open_volume(tmp_path / "g.zarr")

    ome = zarr.open_group(str(tmp_path / "ome.zarr"), mode="w")
    ome.create_array("0", data=stack[None])  # (c, z, y, x) with one channel
    ome.create_array("1", data=stack[None, :, ::2, ::2])
    axes = [{"name": "c", "type": "channel"}] + [
        {"name": a, "type": "space", "unit": "micrometer"} for a in "zyx"
    ]
    datasets = [
        {"path": str(i), "coordinateTransformations": [{"type": "scale", "scale": s}]}
        for i, s in enumerate([[1, 0.04, 0.008, 0.008], [1, 0.04, 0.016, 0.016]])
    ]
    ome.attrs["multiscales"] = [{"version": "0.4", "axes": axes, "datasets": datasets}]
    volume = open_volume(tmp_path / "ome.zarr")
    assert volume.shape == stack.shape
    assert volume.voxel_size == pytest.approx((40.0, 8.0, 8.0))
    np.testing.assert_array_equal(volume.data.compute(), stack)


# --- slice folders ----------------------------------------------------------------------


def test_slice_folder_in_natural_order(tmp_path):
    folder = _slice_folder(tmp_path / "slices")
    (folder / "notes.txt").write_text("not a slice")
    volume = open_volume(folder, voxel_size="10,10,40")
    assert volume.shape == (12, 30, 40)
    assert volume.data.chunksize == (1, 30, 40)
    # img_1 .. img_12 in numeric, not alphabetical (1, 10, 11, 12, 2, ...) order
    np.testing.assert_array_equal(volume.data[:, 0, 0].compute(), np.arange(1, 13))
    assert sorted(["b10", "b2", "a1"], key=natural_key) == ["a1", "b2", "b10"]


def test_png_slice_folder(tmp_path):
    folder = _slice_folder(tmp_path / "png", n=3, suffix=".png")
    np.testing.assert_array_equal(open_volume(folder).data[:, 5, 5].compute(), [1, 2, 3])


def test_slice_folder_rejects_odd_slice_by_name(tmp_path):
    folder = _slice_folder(tmp_path / "slices", n=4)
    tifffile.imwrite(folder / "img_5.tif", np.zeros((31, 40), np.uint8))
    with pytest.raises(VolumeReadError, match=r"img_5\.tif.*same size and type"):
        open_volume(folder)
    tifffile.imwrite(folder / "img_5.tif", np.zeros((30, 40), np.uint16))
    with pytest.raises(VolumeReadError, match=r"img_5\.tif.*uint16"):
        open_volume(folder)


# --- bad input --------------------------------------------------------------------------


def test_bad_input_gives_one_clear_error(tmp_path):
    with pytest.raises(VolumeReadError, match=r"missing\.tif: no such file"):
        open_volume(tmp_path / "missing.tif")
    corrupt = tmp_path / "corrupt.tif"
    corrupt.write_bytes(b"II*\x00" + b"\x13" * 200)
    with pytest.raises(VolumeReadError, match=r"corrupt\.tif: .*copy (or export )?it again"):
        open_volume(corrupt)
    bad_h5 = tmp_path / "bad.h5"
    bad_h5.write_bytes(b"not hdf5 at all")
    with pytest.raises(VolumeReadError, match=r"bad\.h5: is not a readable HDF5"):
        open_volume(bad_h5)
    other = tmp_path / "table.csv"
    other.write_text("a,b")
    with pytest.raises(VolumeReadError, match=r"table\.csv: unsupported file type '\.csv'"):
        open_volume(other)
    flat = tmp_path / "flat.tif"
    tifffile.imwrite(flat, np.zeros((30, 40), np.uint8))
    volume = open_volume(flat)
    assert volume.ndim == 2
    with pytest.raises(VolumeReadError, match=r"flat\.tif: is a single 2D image.*3D stack"):
        require_3d(volume)
    tifffile.imwrite(tmp_path / "two.tif", np.zeros((2, 30, 40), np.uint8))
    assert require_3d(open_volume(tmp_path / "two.tif")).shape == (2, 30, 40)


# --- writers ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("writer", "name"), [(write_zarr, "out.zarr"), (write_h5, "out.h5"), (write_tif, "out.tif")]
)
def test_writers_round_trip_voxel_size(tmp_path, stack, writer, name):
    written = writer(
        da.from_array(stack, chunks=(2, 20, 30)), tmp_path / name, voxel_size=(40, 9, 8)
    )
    volume = open_volume(written)
    np.testing.assert_array_equal(volume.data.compute(), stack)
    assert volume.voxel_size == pytest.approx((40.0, 9.0, 8.0))
    assert volume.voxel_size_origin == "file"
    assert [p.name for p in tmp_path.iterdir()] == [name]  # no temporary left behind
    with pytest.raises(FileExistsError, match="already exists"):
        writer(stack, tmp_path / name)
    writer(stack[:2], tmp_path / name, overwrite=True)
    assert open_volume(tmp_path / name).shape == (2, 20, 30)


def test_uint32_tif_and_zarr_component_in_existing_group(tmp_path, stack):
    labels = stack.astype(np.uint32) * 70000
    np.testing.assert_array_equal(open_volume(write_tif(labels, tmp_path / "l.tif")).data, labels)
    store = tmp_path / "result.zarr"
    write_zarr(stack, store, component="raw")
    path = write_zarr(labels, store, component="pred/labels", chunks=(4, 8, 8))
    assert path == f"{store}:pred/labels"
    assert open_volume(path).data.chunksize == (4, 8, 8)
    np.testing.assert_array_equal(open_volume(store, key="raw").data, stack)
    assert sorted(p.name for p in (store / "pred").iterdir()) == ["labels", "zarr.json"]


@pytest.mark.parametrize("suffix", [".zarr", ".tif", ".h5"])
def test_cancelled_combine_leaves_nothing(tmp_path, suffix):
    folder = _slice_folder(tmp_path / "slices", n=12)
    job = combine_slices(folder, tmp_path / f"out{suffix}", chunks=(4, 30, 40))
    for _ in range(6):  # a few slices in, then the user cancels
        next(job)
    job.close()
    assert [p.name for p in tmp_path.iterdir()] == ["slices"]
    assert "anatomics-tif-writer" not in {t.name for t in threading.enumerate()}


def test_zarr_writer_streams_in_bounded_memory(tmp_path):
    z = da.arange(512, chunks=16).astype(np.uint8)[:, None, None]
    data = z * da.ones((1, 512, 512), dtype=np.uint8, chunks=(1, 512, 512))  # 128 MiB
    write_zarr(data[:1, :8, :8], tmp_path / "warm-up.zarr")  # imports and thread pools
    tracemalloc.start()
    try:
        write_zarr(data, tmp_path / "big.zarr", chunks=(16, 256, 256))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < data.nbytes / 4, f"peak {peak / 2**20:.0f} MiB for a 128 MiB array, 4 MiB slabs"
    written = open_volume(tmp_path / "big.zarr").data
    assert written.shape == (512, 512, 512)
    np.testing.assert_array_equal(written[:, 500, 300].compute(), np.arange(512).astype(np.uint8))


@pytest.mark.parametrize("suffix", [".zarr", ".tif", ".h5"])
def test_combine_slices_with_progress(tmp_path, suffix):
    folder = _slice_folder(tmp_path / "slices", n=12)
    events = []
    volume = run_job(
        combine_slices(folder, tmp_path / f"stack{suffix}", chunks=(5, 16, 16),
                       voxel_size=(40, 10, 10)),
        events.append,
    )  # fmt: skip
    assert volume.shape == (12, 30, 40)
    np.testing.assert_array_equal(volume.data[:, 3, 3].compute(), np.arange(1, 13))
    reopened = open_volume(tmp_path / f"stack{suffix}")
    assert reopened.voxel_size == (40.0, 10.0, 10.0) and reopened.voxel_size_origin == "file"
    steps = [e.step for e in events if e.total == 12]
    assert steps[-1] == 12 and len(set(steps)) >= 12  # progress every slice
    assert sorted(p.name for p in tmp_path.iterdir()) == ["slices", f"stack{suffix}"]


def test_default_chunks_keep_slabs_bounded_for_huge_slices():
    from napari_anatomics.io.write import MAX_SLAB_BYTES, _chunks

    huge = da.zeros((40, 9000, 9000), dtype=np.uint16, chunks=(1, 9000, 9000))  # lazy
    depth, *rest = _chunks(huge, None)
    assert rest == [256, 256] and 1 <= depth < 16
    assert depth * 9000 * 9000 * 2 <= MAX_SLAB_BYTES < (depth + 1) * 9000 * 9000 * 2
    assert _chunks(da.zeros((4, 100, 100)), None) == (4, 100, 100)
    assert _chunks(huge, (32, 64, 64)) == (32, 64, 64)  # explicit chunks are kept


def test_combine_slices_memory_does_not_grow_with_the_folder(tmp_path):
    folder, plane = tmp_path / "many", np.zeros((1024, 1024), np.uint8)
    folder.mkdir()
    for i in range(48):  # 48 MiB of slices
        plane[:] = i
        tifffile.imwrite(folder / f"s_{i}.tif", plane)
    run_job(combine_slices(_slice_folder(tmp_path / "few", n=2), tmp_path / "warm-up.zarr"))
    tracemalloc.start()
    try:
        volume = run_job(combine_slices(folder, tmp_path / "all.zarr", chunks=(4, 256, 256)))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 48 * 2**20 / 4, f"peak {peak / 2**20:.1f} MiB for 48 MiB of slices"
    np.testing.assert_array_equal(volume.data[:, 9, 9].compute(), np.arange(48))
