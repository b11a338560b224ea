"""The training recipe is one declaration; the data decides what is left to it."""

from __future__ import annotations

import dataclasses

import dask.array as da
import numpy as np
import pytest

from napari_anatomics.cli import build_parser
from napari_anatomics.cli._train import train_config
from napari_anatomics.core.runtime import THREADS_ENV, cpu_threads, usable_cores
from napari_anatomics.core.volume import Volume
from napari_anatomics.train.auto import measure_painted, resolve
from napari_anatomics.train.decoding import instance_grid
from napari_anatomics.train.holdout import holdout_tiles
from napari_anatomics.train.recipe import RECIPE, SETTINGS, TrainConfig
from napari_anatomics.train.sampler import CropSampler, prepare_data

BASE = ["train", "--images", "i.tif", "--labels", "l.tif", "--task", "instance", "--out", "m"]


def test_every_train_config_field_is_a_declared_setting_with_its_default():
    names = [f.name for f in dataclasses.fields(TrainConfig)]
    assert sorted(set(names) - {"voxel_size"}) == sorted(RECIPE)
    for f in dataclasses.fields(TrainConfig):
        if f.name in RECIPE:
            assert f.default == RECIPE[f.name].default, f.name


def test_train_options_are_generated_from_the_recipe():
    parser = build_parser()
    train = parser._subparsers._group_actions[0].choices["train"]
    flags = {opt for action in train._actions for opt in action.option_strings}
    for setting in SETTINGS:
        assert (setting.flag in flags) == setting.cli, setting.name
    # No option given: exactly the recipe's defaults.
    config = train_config(parser.parse_args(BASE))
    assert config == TrainConfig(task="instance")
    # Older names still work and land on the one setting.
    args = parser.parse_args([*BASE, "--arch", "unet2d", "--classes", "a,b", "--zoom", "0.25"])
    config = train_config(args)
    assert (config.architecture, config.class_names, config.zoom) == ("unet2d", ["a", "b"], 0.25)
    assert train_config(parser.parse_args([*BASE, "--no-augment"])).augment is False


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (["--lr", "0"], "--lr must be in [1e-07, 1], not 0"),
        (["--object-crops", "1.5"], "--object-crops must be in [0, 1], not 1.5"),
        (["--iterations", "0"], "--iterations must be >= 1, not 0"),
        (["--batch", "two"], "'two' is not an integer"),
    ],
)
def test_out_of_range_options_are_refused_in_one_line(option, message, capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args([*BASE, *option])
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert option[0] in err and message in err


def _blobs(shape, diameter: float, spacing: int, painted_slices=None) -> np.ndarray:
    """Discs of one diameter on a grid, one id each, on the painted slices."""
    labels = np.zeros(shape, np.uint16)
    yy, xx = np.mgrid[: shape[1], : shape[2]]
    n = 0
    for cy in range(spacing // 2, shape[1] - spacing // 2 + 1, spacing):
        for cx in range(spacing // 2, shape[2] - spacing // 2 + 1, spacing):
            n += 1
            labels[:, (yy - cy) ** 2 + (xx - cx) ** 2 <= (diameter / 2) ** 2] = n
    if painted_slices is not None:
        labels[~np.isin(np.arange(shape[0]), painted_slices)] = 0
    return labels


def test_measure_painted_counts_and_sizes_the_objects():
    labels = _blobs((6, 200, 200), 40, 100, painted_slices=[0, 1, 2, 4])
    painted = measure_painted(da.from_array(labels))
    # 4 discs x (slices 0-2 connected, slice 4 alone) = 8 objects.
    assert painted.count == 8 and painted.annotated == 4
    assert 38 <= painted.median_diameter <= 41
    # median of four 3-slice discs and four 1-slice discs: (3 + 1) / 2 slices of disc
    assert painted.median_volume == pytest.approx(np.pi * 20**2 * 2, rel=0.05)


@pytest.mark.parametrize(
    ("shape", "voxel", "diameter", "expected"),
    [
        # thin anisotropic stack of large objects: 2D, 2x in-plane
        ((10, 256, 256), (40.0, 10.0, 10.0), 100, ("unet2d", (1, 2, 2), 4, 5)),
        # small objects: no downsampling
        ((10, 256, 256), (40.0, 10.0, 10.0), 30, ("unet2d", (1, 1, 1), 4, 5)),
        # near-isotropic with enough painted slices: 3D; 4x objects, 2x everywhere
        ((20, 256, 256), (8.0, 8.0, 8.0), 100, ("resunet3d", (2, 2, 2), 2, 4)),
        # near-isotropic but thin: 2D
        ((10, 256, 256), (8.0, 8.0, 8.0), 100, ("unet2d", (1, 2, 2), 4, 5)),
    ],
)
def test_resolve_chooses_from_the_data(shape, voxel, diameter, expected):
    labels = _blobs(shape, diameter, 120)
    image = Volume(da.zeros(shape, np.uint8), voxel)
    painted = Volume(da.from_array(labels), voxel)
    config, why, _ = resolve(TrainConfig(device="cpu"), image, painted)
    assert (config.architecture, config.downsample, config.batch, config.depth) == expected
    assert set(why) >= {"architecture", "downsample", "batch", "depth", "threads"}


def test_settings_the_user_gives_win():
    labels = _blobs((10, 256, 256), 100, 120)
    image = Volume(da.zeros(labels.shape, np.uint8), (40.0, 10.0, 10.0))
    given = TrainConfig(architecture="resunet3d", downsample=(1, 4, 4), batch=3, depth=2,
                        threads=1)
    config, why, _ = resolve(given, image, Volume(da.from_array(labels), image.voxel_size))
    assert config == given and why == {}


def test_threads_follow_the_usable_cores_and_the_environment(monkeypatch):
    monkeypatch.delenv(THREADS_ENV, raising=False)
    assert 1 <= cpu_threads() == usable_cores()
    # a panel leaves a core to the viewer, never going below one thread
    assert cpu_threads(leave_free=1) == max(1, usable_cores() - 1)
    assert cpu_threads(leave_free=10_000) == 1
    monkeypatch.setattr("napari_anatomics.core.runtime.usable_cores", lambda: 8)
    assert cpu_threads(leave_free=1) == 7
    monkeypatch.setenv(THREADS_ENV, "1")
    assert cpu_threads(leave_free=1) == 1  # the environment wins
    assert cpu_threads() == 1 and cpu_threads(3) == 3
    monkeypatch.setenv(THREADS_ENV, "many")
    with pytest.raises(ValueError, match="ANATOMICS_THREADS='many'"):
        cpu_threads()


def test_instance_decoding_grid_scales_with_the_objects():
    small = instance_grid({"median_diameter": 20, "median_volume": 2000})
    large = instance_grid({"median_diameter": 100, "median_volume": 70000})
    assert len(small) == len(large) == 24
    assert max(t["seed_erosion"] for t in large) == 10
    assert max(t["seed_erosion"] for t in small) == 2
    assert max(t["min_seed_size"] for t in large) == 1400
    assert max(t["min_seed_size"] for t in small) == 40
    assert large[0]["min_size"] == 2800 and small[0]["min_size"] == 80


def test_crops_stay_inside_the_training_columns():
    """Objects straddling the held-out border: every drawn voxel is a training one."""
    labels = _blobs((2, 128, 256), 30, 64)
    image = np.random.default_rng(0).integers(0, 255, labels.shape).astype(np.uint8)
    data = prepare_data(da.from_array(image), da.from_array(labels))
    rng = np.random.default_rng(0)
    sampler = CropSampler(data, (1, 64, 64), "instance", rng, x_range=(0, 150), paste=1.0)
    for _ in range(300):
        z, y, x = sampler._foreground_voxel()
        assert 0 <= x < 150
        origin = sampler._window_at(z, y, x)
        assert origin[2] <= x < origin[2] + 64 <= 150
    for _ in range(20):
        sampler.crop(sampler.draw())


def test_held_out_tiles_are_spread_and_never_trained_on():
    held = holdout_tiles((300, 1600), 128, 0.1)
    # 3 x 13 tiles, 4 held out, in different columns and not all in one row.
    columns = {int(x) // 128 for x in np.nonzero(held.any(axis=0))[0]}
    rows = {int(y) // 128 for y in np.nonzero(held.any(axis=1))[0]}
    assert len(columns) == 4 and len(rows) >= 2
    assert 0.05 < held.mean() < 0.15
    assert holdout_tiles((300, 1600), 128, 0.0) is None
    # The sampler: no loss on held-out voxels, no crop centred on a held-out object.
    labels = _blobs((2, 256, 512), 30, 64)
    image = np.random.default_rng(0).integers(0, 255, labels.shape).astype(np.uint8)
    data = prepare_data(da.from_array(image), da.from_array(labels))
    held = holdout_tiles((256, 512), 64, 0.25)
    rng = np.random.default_rng(1)
    sampler = CropSampler(data, (1, 64, 64), "instance", rng, holdout=held, paste=1.0)
    for _ in range(200):
        _, y, x = sampler._foreground_voxel()
        assert not held[y, x]
    for _ in range(30):
        origin = sampler.draw()
        _, _, mask = sampler.crop(origin, augment=False)
        window = held[origin[1] : origin[1] + 64, origin[2] : origin[2] + 64]
        assert not (mask[0] & window).any()
        _, _, val_mask = sampler.crop(origin, augment=False, held_out=True)
        assert not (val_mask[0] & ~window).any()
