"""The decoding is chosen with the model, stored with it, and used by predict."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile
import zarr

from napari_anatomics.cli import main
from napari_anatomics.io.samples import synthetic_sbfsem
from napari_anatomics.models.config import ModelConfig
from napari_anatomics.train.decoding import instance_grid


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A small instance model trained by the CLI at its defaults (plus size limits)."""
    root = tmp_path_factory.mktemp("decoding")
    syn = synthetic_sbfsem((6, 96, 192), 14, voxel_size=(40.0, 20.0, 20.0), seed=2)
    tifffile.imwrite(root / "img.tif", syn.image)
    tifffile.imwrite(root / "lab.tif", syn.labels.astype("uint16"))
    args = ["train", "--images", str(root / "img.tif"), "--labels", str(root / "lab.tif")]
    args += ["--task", "instance", "--out", str(root / "model"), "--voxel-size", "20,20,40"]
    args += ["--iterations", "30", "--window", "1,64,64", "--quiet", "--threads", "1"]
    args += ["--val-fraction", "0.25", "--precision", "float32"]
    code = main(args)
    return root, code


def test_training_stores_its_decoding_and_held_out_scores(trained, capsys):
    root, code = trained
    config = ModelConfig.load(root / "model")
    # The chosen decoding is one of the settings tried, scaled to the painted objects.
    grid = instance_grid(config.training["painted"])
    chosen = {k: v for k, v in config.decoding.items() if k != "tta"}
    assert chosen in grid and config.decoding["tta"] == 4
    val = config.validation
    assert val["on"] == "the held-out tiles"
    assert 0.0 <= val["dice"] <= 1.0 and 0.0 <= val["ap50"] <= 1.0
    assert sum(val["tp_fp_fn"][::2]) == val["objects_painted"] > 0
    # exit 0 with a model that finds objects, 1 (and a warning) with one that finds none
    assert code == (0 if val["objects_found"] else 1)
    recipe = config.training["auto"]
    assert recipe["architecture"].startswith("unet2d")


def test_predict_decodes_as_the_model_chose_unless_told(trained, tmp_path):
    root, _ = trained
    config = ModelConfig.load(root / "model")
    out = tmp_path / "p.zarr"
    assert main(["predict", str(root / "model"), str(root / "img.tif"), "--out", str(out)]) == 0
    group = zarr.open_group(str(out), mode="r")
    used = group["labels"].attrs["postprocess"]
    for key, value in config.decoding.items():
        if key != "tta":
            assert used[key] == value, key
    assert group["probabilities"].attrs["prediction"]["tta"] == 4
    # A flag wins over the model's choice; the rest stays the model's.
    out2 = tmp_path / "q.zarr"
    code = main(
        ["predict", str(root / "model"), str(root / "img.tif"), "--out", str(out2),
         "--min-size", "7", "--tta", "0"]
    )
    assert code == 0
    used = zarr.open_group(str(out2), mode="r")["labels"].attrs["postprocess"]
    assert used["min_size"] == 7 and used["seed_erosion"] == config.decoding["seed_erosion"]
    # `anatomics postprocess` on the first prediction finds the model's decoding too.
    out3 = tmp_path / "r.zarr"
    assert main(["postprocess", str(out), "--out", str(out3)]) == 0
    again = zarr.open_group(str(out3), mode="r")["labels"].attrs["postprocess"]
    assert again["min_seed_size"] == config.decoding["min_seed_size"]
    assert np.array_equal(  # same maps, same decoding: the same labels, exactly
        np.asarray(zarr.open_group(str(out3), mode="r")["labels"]),
        np.asarray(zarr.open_group(str(out), mode="r")["labels"]),
    )
    history = json.loads((root / "model" / "config.json").read_text())["training"]
    assert history["precision_used"] == "float32"


def test_the_strongest_thinning_near_the_best_is_chosen():
    from napari_anatomics.train.decoding import AP_TOLERANCE, choose_trial

    grid = instance_grid({"median_diameter": 95, "median_volume": 70_000})
    assert len(grid) == 24 and {t["seed_depth"] for t in grid} == {0.0, 0.5, 0.7}
    scores = [0.70 if t["seed_depth"] == 0 else 0.60 for t in grid]
    chosen = grid[choose_trial(grid, scores)]
    assert chosen["seed_depth"] == 0.0  # the others are more than the tolerance below
    scores = [0.70 - (AP_TOLERANCE / 2 if t["seed_depth"] == 0.7 else 0) for t in grid]
    chosen = grid[choose_trial(grid, scores)]
    assert chosen["seed_depth"] == 0.7 and chosen["min_seed_size"] == round(0.02 * 70_000)
    assert chosen["seed_erosion"] == round(0.1 * 95)


def test_a_larger_minimum_seed_wins_over_a_deeper_seed_depth():
    # The chloroplast seed-2 pattern: depth 0.7 ties only with mid-sized minimum seeds,
    # depth 0.5 with the largest; the largest minimum seed is chosen, at depth 0.5.
    from napari_anatomics.train.decoding import choose_trial

    grid = instance_grid({"median_diameter": 95, "median_volume": 70_000})
    largest = max(t["min_seed_size"] for t in grid)

    def score(t):
        if t["seed_erosion"] or t["seed_depth"] == 0:
            return 0.70
        if t["seed_depth"] == 0.7 and t["min_seed_size"] == largest:
            return 0.76  # deep seeds and large minimum: small objects lose every seed
        return 0.85 if t["seed_depth"] == 0.7 or t["min_seed_size"] else 0.78

    chosen = grid[choose_trial(grid, [score(t) for t in grid])]
    assert (chosen["seed_erosion"], chosen["seed_depth"]) == (0, 0.5)
    assert chosen["min_seed_size"] == largest
