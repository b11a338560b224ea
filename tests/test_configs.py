"""Each job's settings are declared once; the CLI, the panels and the file format follow."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from napari_anatomics.cli import build_parser
from napari_anatomics.cli._predict import predict_config, segment_config
from napari_anatomics.core.settings import Setting
from napari_anatomics.io.probabilities import (
    ENCODINGS,
    ProbabilityMaps,
    attributes,
    check_encoding,
    decode,
    encode,
)
from napari_anatomics.models.config import ModelConfig
from napari_anatomics.predict.config import PREDICT, PredictConfig
from napari_anatomics.segment.config import PRESETS, SEGMENT, SegmentConfig
from napari_anatomics.train.decoding import instance_grid
from napari_anatomics.train.recipe import RECIPE, TrainConfig

CONFIGS = [(PredictConfig, PREDICT), (SegmentConfig, SEGMENT), (TrainConfig, RECIPE)]
#: Options of the commands that are not settings of a job.
NOT_SETTINGS = {
    "predict": {"-h", "--help", "--out", "--tls-ca-file", "--tls-cert", "--tls-key",
                "--no-postprocess", "--overwrite", "--voxel-size", "--ome-zarr"},
    "postprocess": {"-h", "--help", "--out", "--task", "--overwrite", "--voxel-size"},
}  # fmt: skip
PREDICT_ARGS = ["predict", "model", "image.tif", "--out", "p.zarr"]


def _command(name: str):
    return build_parser()._subparsers._group_actions[0].choices[name]


@pytest.mark.parametrize(("config", "settings"), CONFIGS, ids=lambda c: getattr(c, "__name__", ""))
def test_every_config_field_is_a_declared_setting_with_its_default_in_range(config, settings):
    names = {f.name for f in dataclasses.fields(config)} - {"voxel_size"}
    assert names == set(settings)
    for f in dataclasses.fields(config):
        if f.name in settings:
            setting = settings[f.name]
            assert f.default == setting.default, f.name
            setting.check(setting.default)  # the default is in its own range
            assert setting.help and setting.flag == "--" + f.name.replace("_", "-")
    config().check_ranges()


@pytest.mark.parametrize("command", ["predict", "postprocess"])
def test_cli_options_are_exactly_the_settings(command):
    flags = {opt for action in _command(command)._actions for opt in action.option_strings}
    declared = {s.flag for s in SEGMENT.values() if s.cli}
    if command == "predict":
        declared |= {s.flag for s in PREDICT.values() if s.cli}
    assert flags - NOT_SETTINGS[command] == declared


def test_options_land_on_the_configs_and_default_to_them():
    parser = build_parser()
    args = parser.parse_args(PREDICT_ARGS)
    assert predict_config(args) == PredictConfig()
    assert segment_config(args, None) == SegmentConfig()
    args = parser.parse_args(
        [*PREDICT_ARGS, "--stride", "4,8,8", "--tta", "4", "--memory-mb", "0.5",
         "--workers", "2", "--seed-depth", "0.5", "--thresholds", "0.4,0.6"]
    )  # fmt: skip
    assert predict_config(args) == PredictConfig(
        stride=(4, 8, 8), tta=4, memory_mb=0.5, workers=2
    )
    # a given option wins over the model's tuned decoding; the rest is the model's
    tuned = {"seed_depth": 0.2, "min_seed_size": 40, "tta": 4}
    decoding = segment_config(args, tuned)
    assert (decoding.seed_depth, decoding.min_seed_size) == (0.5, 40)
    assert decoding.thresholds == (0.4, 0.6)


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (["--batch", "0"], "--batch must be >= 1, not 0"),
        (["--memory-mb", "0"], "--memory-mb must be > 0, not 0"),
        (["--threads", "two"], "'two' is not an integer"),
        (["--seed-depth", "1"], "--seed-depth must be in [0, 0.99], not 1"),
        (["--min-size", "-3"], "--min-size must be >= 0, not -3"),
        (["--thresholds", "0.5,2"], "--thresholds 0.5,2: each is a probability in [0, 1]"),
        (["--stride", "4,0,4"], "expected three positive integers Z,Y,X"),
        (["--tta", "3"], "invalid choice: 3"),
    ],
)
def test_out_of_range_options_are_refused_in_one_line(option, message, capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args([*PREDICT_ARGS, *option])
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert option[0] in err and message in err


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (PredictConfig(batch=0), "batch must be at least 1, not 0"),
        (PredictConfig(memory_mb=0.0), "memory_mb must be above 0, not 0.0"),
        (PredictConfig(output="int16"), "output must be one of uint8, float16, float32"),
        (PredictConfig(scheduler="tcp://h:1", workers=2), "give either a scheduler"),
        (SegmentConfig(seed_threshold=1.5), "seed_threshold must be in [0, 1], not 1.5"),
        (SegmentConfig(connectivity=8), "connectivity must be one of 6, 18, 26, not 8"),
        (SegmentConfig(thresholds=(0.5, -0.1)), "thresholds must be in [0, 1]"),
    ],
)
def test_configs_refuse_values_out_of_range(config, message):
    with pytest.raises(ValueError, match="^" + message.replace("[", r"\[").replace("(", r"\(")):
        config.check_ranges()


def test_presets_are_valid_configs():
    assert PRESETS["as thresholded"] == SegmentConfig()
    for name, preset in PRESETS.items():
        assert isinstance(preset, SegmentConfig), name
        preset.check_ranges()
    split = PRESETS["split touching objects"]
    assert split.seed_depth > 0 and split.min_seed_size > 0


def test_a_models_tuned_decoding_is_a_segment_config():
    trial = instance_grid({"median_diameter": 80, "median_volume": 50_000})[-1]
    tuned = SegmentConfig.tuned({**trial, "tta": 4})  # tta is the prediction's
    assert dataclasses.asdict(tuned) | trial == dataclasses.asdict(tuned)
    tuned.check_ranges()
    semantic = SegmentConfig.tuned({"thresholds": [0.6, 0.7], "min_size": 0})
    assert semantic.thresholds == (0.6, 0.7)
    # no decoding: the fallback; the settings recorded read back as the same config
    assert SegmentConfig.tuned({}, fallback=PRESETS["split touching objects"]).seed_depth == 0.5
    assert SegmentConfig(**tuned.to_dict()) == tuned


def test_setting_parse_and_span():
    window = Setting("window", "triple", None, "crop")
    assert window.parse("8") == (8, 8, 8) and window.parse("1,64,64") == (1, 64, 64)
    ratio = Setting("ratio", "float", 0.5, "a share", low=0.0, high=1.0, low_open=True)
    assert ratio.span() == "in (0, 1]" and ratio.parse("1") == 1.0
    with pytest.raises(ValueError, match="--ratio must be in \\(0, 1\\], not 0"):
        ratio.parse("0")


def test_probability_encoding_round_trip_is_exact_to_half_a_step():
    rng = np.random.default_rng(0)
    probs = np.concatenate([rng.random(10_000, dtype=np.float32), [0.0, 1.0, 0.5]])
    probs = probs.astype(np.float32)
    stored = encode(probs.copy(), "uint8")
    assert stored.dtype == np.uint8 and stored[-3:].tolist() == [0, 255, 128]
    assert np.abs(decode(stored) - probs).max() <= 0.5 / 255 + 1e-7
    # every stored value reads back as value / 255, and encodes to itself again
    steps = np.arange(256, dtype=np.uint8)
    assert np.array_equal(decode(steps), steps.astype(np.float32) * np.float32(1 / 255))
    assert np.array_equal(encode(decode(steps), "uint8"), steps)
    # out-of-range values are clipped; floats are kept as they are
    assert encode(np.array([-0.2, 1.7], np.float32), "uint8").tolist() == [0, 255]
    assert np.array_equal(decode(encode(probs.copy(), "float32")), probs)
    assert decode(encode(probs.copy(), "float16")).dtype == np.float32
    with pytest.raises(ValueError, match="output must be one of"):
        check_encoding("int16")
    assert set(ENCODINGS) == {"uint8", "float16", "float32"}


def test_probability_maps_read_channels_as_recorded():
    probs = np.zeros((2, 3, 4, 5), np.float32)
    probs[1, 0, 0, 0] = 0.4
    stored = encode(probs.copy(), "uint8")
    attrs = attributes("uint8", ["foreground", "boundary"], "instance", ["x"], (40, 10, 10))
    assert attrs["encoding"] == "probability = value / 255" and attrs["axes"][0] == "c"

    class Stored(np.ndarray):
        """An array with zarr-like attributes."""

    array = stored.view(Stored)
    array.attrs = attrs
    maps = ProbabilityMaps(array)
    assert maps.task == "instance" and maps.voxel_size == [40, 10, 10]
    block = maps.read((slice(0, 1), slice(0, 2), slice(0, 2)), ["boundary"])
    assert block.shape == (1, 1, 2, 2) and block[0, 0, 0, 0] == pytest.approx(102 / 255)
    with pytest.raises(ValueError, match="not \\['distance'\\]"):
        maps.read((slice(0, 1),) * 3, ["distance"])
    with pytest.raises(ValueError, match="'semantic' or 'instance'"):
        ProbabilityMaps(stored)


def test_autolabel_panel_fields_follow_the_settings(make_napari_viewer, qtbot):
    from napari_anatomics.core.runtime import VIEWER_CORES, cpu_threads
    from napari_anatomics.napari.panels.autolabel import AutoLabelWidget

    panel = AutoLabelWidget(make_napari_viewer())
    qtbot.addWidget(panel)
    # untouched, the panel asks for the declared defaults, with a core left to the viewer
    threads = cpu_threads(leave_free=VIEWER_CORES)
    assert panel.predict_config() == PredictConfig(threads=threads)
    assert PREDICT["batch"].help[:30] in panel.batch.toolTip()
    assert SEGMENT["min_size"].help in panel.min_size.toolTip()
    assert panel.batch.minimum() == PREDICT["batch"].low
    instance = ModelConfig("instance", ["a"], (1, 32, 32), (40.0, 10.0, 10.0), {},
                           ["foreground", "boundary"])  # fmt: skip
    assert panel.segment_config(instance) == PRESETS["split touching objects"]
    tuned = dataclasses.replace(instance, decoding={"seed_erosion": 3, "tta": 4})
    assert panel.segment_config(tuned) == SegmentConfig(seed_erosion=3)
    panel.min_size.setValue(7)
    panel.tta.setCurrentIndex(panel.tta.findData(8))
    panel.split.setChecked(False)
    assert panel.segment_config(tuned) == SegmentConfig(min_size=7)
    assert panel.predict_config().tta == 8
