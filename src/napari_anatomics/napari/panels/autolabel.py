"""Auto-label: predict a whole stack with a trained model, watching it fill in.

The panel runs the one auto-label job
(:func:`napari_anatomics.tasks.autolabel.autolabel`: predict, post-process,
record what was done). Its setting fields are built from the declared settings
(:data:`napari_anatomics.predict.config.SETTINGS`,
:data:`napari_anatomics.segment.config.SETTINGS`: range, default, tooltip) by
:func:`napari_anatomics.napari.fields.setting_field`.
While the prediction writes probability maps to a zarr group region by region,
the panel shows them as a Labels layer that *reads the zarr on disk*
(:class:`LiveLabels`: the most probable class, or the foreground of an instance
model) and refreshes it each time a region is written, so the layer fills tile
by tile. Then the layer switches to the final labels array
(``OUT.zarr/labels``), still on disk.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from napari.layers import Image, Labels
from napari.utils.notifications import show_info
from qtpy.QtWidgets import (
    QCheckBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QVBoxLayout,
)

from ...core.chunkcache import CachedArray
from ...core.progress import CancelToken, Job, Progress
from ...core.runtime import VIEWER_CORES, cpu_threads
from ...io.outputs import check_writable
from ...io.probabilities import decode
from ...models.config import ModelConfig
from ...predict.config import PREDICT, PredictConfig
from ...predict.outputs import check_prediction_output
from ...segment.config import PRESETS, SEGMENT, SegmentConfig
from ...tasks.autolabel import PROBABILITIES, AutoLabelResult, autolabel
from ..fields import field_value, setting_field
from ..jobs import JobPanel
from ..layers import LayerCombo, PathEdit, pick_volume, volume_layer_kwargs
from ..model_picker import ModelCombo, prepare_torch

#: The prediction settings the panel shows (the stride as three boxes).
PREDICT_FIELDS = ("stride", "tta", "batch")
#: The post-processing settings it shows; "as tuned" keeps the decoding's value.
SEGMENT_FIELDS = ("min_size",)
#: The test-time augmentations as the panel names them.
TTA_ITEMS = {"as the model chose": None, "none": 0, "4 flips": 4, "8 flips + rotations": 8}
#: The decoding of a model that chose none, with "Decode as tuned" ticked.
SPLIT_TOUCHING = PRESETS["split touching objects"]


def default_output(image_name: str) -> Path:
    """``~/anatomics-predictions/<image>.zarr`` (``$ANATOMICS_PREDICTIONS`` overrides)."""
    root = Path(os.environ.get("ANATOMICS_PREDICTIONS", Path.home() / "anatomics-predictions"))
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in image_name) or "image"
    return root / f"{safe}.zarr"


class LiveLabels:
    """Labels read from ``(C, Z, Y, X)`` probability maps on disk, afresh at each access.

    An array-like napari can show: indexing reads only the requested part of
    the zarr array and turns it into labels. Semantic models: the most
    probable class (0 = background). Instance models: 1 where the foreground
    probability is at least one half. Regions not written yet read as 0. (A
    dask view would not do: napari caches dask chunks, so the layer would
    not change as the file fills.)
    """

    def __init__(self, maps: Any, config: ModelConfig) -> None:
        self.maps = maps
        self.semantic = config.task == "semantic"
        targets = list(config.targets)
        self.channel = targets.index("foreground") if "foreground" in targets else 0
        self.shape = tuple(int(n) for n in maps.shape[1:])
        self.dtype = np.dtype(np.uint8)
        self.ndim = len(self.shape)
        self.size = int(np.prod(self.shape))

    def __getitem__(self, key: Any) -> np.ndarray:
        key = key if isinstance(key, tuple) else (key,)
        if any(k is Ellipsis for k in key):
            i = next(i for i, k in enumerate(key) if k is Ellipsis)
            key = key[:i] + (slice(None),) * (self.ndim - len(key) + 1) + key[i + 1 :]
        if self.semantic:  # the stored values order as the probabilities do
            maps = np.asarray(self.maps[(slice(None), *key)])
            return maps.argmax(axis=0).astype(np.uint8)
        return (decode(self.maps[(self.channel, *key)]) >= 0.5).astype(np.uint8)

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        data = self[...]
        return data if dtype is None else data.astype(dtype)

    def __len__(self) -> int:
        return self.shape[0]


class AutoLabelWidget(JobPanel):
    """Run a trained model over an image and post-process the result.

    Parameters
    ----------
    napari_viewer : napari.viewer.Viewer
    """

    title = "Auto-label"

    def __init__(self, napari_viewer) -> None:
        super().__init__(napari_viewer, start_text="Auto-label")
        self.layer: Labels | None = None
        #: The labels of the last run, once it has ended (None before).
        self.result = None
        self._labels = None
        self.regions_shown = 0
        self.kept_labels = False
        self._config: ModelConfig | None = None
        self._out: Path | None = None
        self._image = None
        self._folder: str | None = None
        #: More :class:`PredictConfig` settings (chunks, memory_mb, precision...).
        self.extra_settings: dict = {}
        prepare_torch()

        self.model = ModelCombo()
        self.model.follow_new = True
        self.image_combo = LayerCombo(napari_viewer, Image)
        self.image_file = PathEdit("open", "Images (*.tif *.tiff *.h5 *.zarr)", "or a file")
        self.output = PathEdit("save", "zarr (*.zarr)", "default: ~/anatomics-predictions")
        self.stride = [setting_field(PREDICT["stride"], high=4096) for _ in range(3)]
        self.tta = setting_field(PREDICT["tta"], items=TTA_ITEMS)
        self.batch = setting_field(PREDICT["batch"], high=256)
        self.min_size = setting_field(SEGMENT["min_size"], high=10_000_000)
        self.min_size.setMinimum(-1)
        self.min_size.setSpecialValueText("as tuned")
        self.min_size.setValue(-1)
        self.min_size.setSuffix(" voxels")
        #: The setting fields, by setting name (the stride's boxes together).
        self.fields = {"tta": self.tta, "batch": self.batch, "min_size": self.min_size}
        self.split = QCheckBox("Decode as tuned for this model")
        self.split.setChecked(True)
        self.split.setToolTip(
            "Use the decoding chosen on the painted data when the model was trained (instance "
            "seeds thinned to split touching objects, semantic thresholds that match the "
            "painted volume fraction). Models without one split touching objects (seed "
            f"depth {SPLIT_TOUCHING.seed_depth}, specks under {SPLIT_TOUCHING.min_seed_size} "
            "voxels ignored)."
        )
        self.overwrite = QCheckBox("Replace earlier results in this file")
        self.overwrite.setToolTip(
            "Without it, labels already in the output file (perhaps corrected by hand) are "
            "kept, and an unfinished prediction with the same settings resumes"
        )

        data = QGroupBox("Model and data")
        form = QFormLayout(data)
        form.addRow("Model", self.model)
        form.addRow("Image", self.image_combo)
        form.addRow("", self.image_file)
        form.addRow("Output", self.output)
        settings = QGroupBox("Settings")
        settings_form = QFormLayout(settings)
        stride = QHBoxLayout()
        for axis, box in zip("ZYX", self.stride):
            stride.addWidget(QLabel(axis))
            stride.addWidget(box)
        settings_form.addRow(PREDICT["stride"].label, stride)
        for name, widget in self.fields.items():
            settings_form.addRow({**PREDICT, **SEGMENT}[name].label, widget)
        settings_form.addRow(self.split)
        settings_form.addRow(self.overwrite)
        layout = QVBoxLayout(self)
        layout.addWidget(data)
        layout.addWidget(settings)
        layout.addLayout(self.button_row())
        layout.addWidget(self.progress)
        layout.addWidget(self.status)
        layout.addStretch(1)

    # ---- settings --------------------------------------------------------------------------
    def predict_config(self) -> PredictConfig:
        """The prediction settings of the fields (and :attr:`extra_settings`)."""
        stride = tuple(box.value() for box in self.stride)
        values = {
            "stride": stride if all(stride) else None,
            "tta": field_value(self.tta),
            "batch": field_value(self.batch),
            "threads": cpu_threads(leave_free=VIEWER_CORES),  # one core for the viewer
        }
        return PredictConfig(**(values | self.extra_settings))

    def segment_config(self, config: ModelConfig) -> SegmentConfig:
        """The decoding: the model's tuned one (or :data:`SPLIT_TOUCHING` for instance
        models without one) when "Decode as tuned" is ticked, else the defaults; then
        the fields that are set."""
        base = SegmentConfig()
        if self.split.isChecked():
            untuned = SPLIT_TOUCHING if config.task == "instance" else SegmentConfig()
            base = SegmentConfig.tuned(config.decoding, fallback=untuned)
        values = {name: field_value(self.fields[name]) for name in SEGMENT_FIELDS}
        return replace(base, **{k: v for k, v in values.items() if v is not None})

    # ---- running ---------------------------------------------------------------------------
    def make_job(self, cancel: CancelToken) -> Job[AutoLabelResult | None]:
        """Prediction + post-processing of the chosen image with the chosen model."""
        folder = self.model.folder()
        if folder is None:
            raise ValueError("no model chosen: train one, or pick a model folder with ...")
        config = ModelConfig.load(folder)
        image = pick_volume(self.image_combo, self.image_file, "image")
        out = Path(self.output.text()) if self.output.text() else default_output(image.name)
        out.parent.mkdir(parents=True, exist_ok=True)
        check_prediction_output(out, option="Output")
        check_writable(out)
        for earlier in (self.result, self.layer.data if self.layer is not None else None):
            if isinstance(earlier, CachedArray):  # corrections of the last result: to disk
                earlier.flush()
        job = autolabel(
            image,
            folder,
            out,
            predict=self.predict_config(),
            segment=self.segment_config(config),
            overwrite=self.overwrite.isChecked(),
            cancel=cancel,
        )
        self._config, self._out, self.regions_shown = config, out, 0
        self.result = self._labels = None
        self.kept_labels = False
        self._image, self._folder = image, folder
        self.layer = None
        self.description = f"Auto-labelling {image.name}"
        return job

    def _live_layer(self, probabilities: Any) -> Labels:
        data = LiveLabels(probabilities, self._config)
        if self.layer is None or self.layer not in self.viewer.layers:
            options = volume_layer_kwargs(self._image, f"{self._image.name} auto-label")
            options["metadata"].update(source=str(self._out), model=str(self._folder))
            self.layer = self.viewer.add_labels(data, **options)
        else:
            self.layer.data = data
        return self.layer

    def on_progress(self, event: Progress) -> None:
        """Progress, and the layer that shows the maps as they are written."""
        super().on_progress(event)
        payload = event.payload
        if isinstance(payload, dict) and PROBABILITIES in payload:
            # the finished maps moved to their final name: read those from now on
            self._live_layer(payload[PROBABILITIES])
            self.progress.setRange(0, 0)
            return
        if self.layer is None and self._out is not None:
            from ...predict.tiled import partial_path_of

            partial = partial_path_of(self._out, PROBABILITIES)
            if (partial / "zarr.json").exists():
                import zarr

                self._live_layer(zarr.open_array(str(partial), mode="r"))
        if isinstance(payload, tuple) and self.layer is not None:
            self.regions_shown += 1
            self.layer.refresh()

    def on_result(self, result: AutoLabelResult | None) -> None:
        """Show the labels (on disk) in place of the live maps."""
        if result is None:
            self.status.setText("start again with the same settings to resume")
            return
        self.kept_labels = result.kept
        labels = result.labels
        if labels is None:
            self.status.setText(
                f"Kept the labels already in {self._out}, which cannot be read; tick "
                "'Replace earlier results' to label again."
            )
            return
        # edited through a cache of decoded chunks, written back in the background
        self._labels = labels = CachedArray(labels)
        attrs = dict(labels.attrs)
        n = attrs.get("n_objects")
        if self.layer is None or self.layer not in self.viewer.layers:
            options = volume_layer_kwargs(self._image, f"{self._image.name} auto-label")
            self.layer = self.viewer.add_labels(labels, **options)
        else:
            self.layer.data = labels
        meta = self.layer.metadata
        meta.update(source=f"{self._out}:labels", model=str(self._folder), task="instance")
        if attrs.get("label_classes") is not None:
            meta["class_of_id"] = list(attrs["label_classes"])
            meta["class_names"] = list(self._config.classes)
        if result.kept:
            self.status.setText(
                f"Kept the labels already in {self._out} ({n} objects; they may hold your "
                "corrections). Tick 'Replace earlier results' to label again."
            )
        else:
            self.status.setText(f"{n} objects labelled; saved in {self._out} (labels)")
        show_info(f"Auto-label finished: {n} objects in {self._out}")

    def on_finish(self) -> None:
        """The run ended: the buttons, then :attr:`result` (so a new run can start)."""
        super().on_finish()
        self.result = self._labels
