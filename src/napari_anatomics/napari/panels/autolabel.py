"""Auto-label: predict a whole stack with a trained model, watching it fill in.

:func:`napari_anatomics.predict.tiled.predict` writes probability maps to a zarr
group region by region. The panel shows them at once as a Labels layer that
*reads the zarr on disk* (:class:`LiveLabels`: the most probable class, or the
foreground of an instance model) and refreshes it each time a region is
written, so the layer fills tile by tile. Then
:func:`napari_anatomics.segment.postprocess.postprocess` labels the objects and the
layer switches to the final labels array (``OUT.zarr/labels``), still on disk.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
from napari.layers import Image, Labels
from napari.utils.notifications import show_error, show_info
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from ...core.progress import CancelToken, Progress
from ...io.outputs import check_prediction_output, check_writable, describe_os_error
from ...models.config import ModelConfig
from ...segment.postprocess import SPLIT_TOUCHING, postprocess
from ..jobs import start_job
from ..layers import LayerCombo, PathEdit, pick_volume, volume_layer_kwargs
from ..model_picker import ModelCombo, prepare_torch

#: Name of the probability array inside the output group (as ``anatomics predict``).
PROBABILITIES = "probabilities"


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
        self.half = 128 if np.dtype(maps.dtype) == np.uint8 else 0.5
        self.shape = tuple(int(n) for n in maps.shape[1:])
        self.dtype = np.dtype(np.uint8)
        self.ndim = len(self.shape)
        self.size = int(np.prod(self.shape))

    def __getitem__(self, key: Any) -> np.ndarray:
        key = key if isinstance(key, tuple) else (key,)
        if any(k is Ellipsis for k in key):
            i = next(i for i, k in enumerate(key) if k is Ellipsis)
            key = key[:i] + (slice(None),) * (self.ndim - len(key) + 1) + key[i + 1 :]
        if self.semantic:
            maps = np.asarray(self.maps[(slice(None), *key)])
            return maps.argmax(axis=0).astype(np.uint8)
        return (np.asarray(self.maps[(self.channel, *key)]) >= self.half).astype(np.uint8)

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        data = self[...]
        return data if dtype is None else data.astype(dtype)

    def __len__(self) -> int:
        return self.shape[0]


def decoding_levels(task: str, tuned: dict, use_tuned: bool, min_size: int) -> dict:
    """Post-processing keywords: the model's tuned decoding (or, for instance models
    without one, :data:`SPLIT_TOUCHING`), and ``min_size`` when it is set (>= 0)."""
    levels: dict = {}
    if use_tuned:
        levels = dict(tuned) if tuned else (dict(SPLIT_TOUCHING) if task == "instance" else {})
    if min_size >= 0:
        levels["min_size"] = min_size
    return levels


class AutoLabelWidget(QWidget):
    """Run a trained model over an image and post-process the result.

    Parameters
    ----------
    napari_viewer : napari.viewer.Viewer
    """

    def __init__(self, napari_viewer) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.worker = None
        self.cancel_token: CancelToken | None = None
        self.layer: Labels | None = None
        self.result = None
        self.regions_shown = 0
        self._config: ModelConfig | None = None
        self._out: Path | None = None
        self._image = None
        self._folder: str | None = None
        #: More :func:`~napari_anatomics.predict.tiled.predict` settings (chunks, memory_mb...).
        self.extra_settings: dict = {}
        prepare_torch()

        self.model = ModelCombo()
        self.model.follow_new = True
        self.image_combo = LayerCombo(napari_viewer, Image)
        self.image_file = PathEdit("open", "Images (*.tif *.tiff *.h5 *.zarr)", "or a file")
        self.output = PathEdit("save", "zarr (*.zarr)", "default: ~/anatomics-predictions")
        self.stride = [QSpinBox() for _ in range(3)]
        for box in self.stride:
            box.setRange(0, 1024)
            box.setSpecialValueText("auto")
        self.tta = QComboBox()
        self.tta.addItems(["as the model chose", "none", "4 flips", "8 flips + rotations"])
        self.batch = QSpinBox()
        self.batch.setRange(1, 256)
        self.batch.setValue(2)
        self.min_size = QSpinBox()
        self.min_size.setRange(-1, 10_000_000)
        self.min_size.setSpecialValueText("as tuned")
        self.min_size.setValue(-1)
        self.min_size.setSuffix(" voxels")
        self.split = QCheckBox("Decode as tuned for this model")
        self.split.setChecked(True)
        self.split.setToolTip(
            "Use the decoding chosen on the painted data when the model was trained (instance "
            "seeds thinned to split touching objects, semantic thresholds that match the "
            "painted volume fraction). Models without one split touching objects (seed "
            f"depth 0.5, specks under {SPLIT_TOUCHING['min_seed_size']} voxels ignored)."
        )
        self.overwrite = QCheckBox("Replace earlier results in this file")
        self.overwrite.setToolTip(
            "Without it, labels already in the output file (perhaps corrected by hand) are "
            "kept, and an unfinished prediction with the same settings resumes"
        )
        self.kept_labels = False
        self.start_button = QPushButton("Auto-label")
        self.start_button.clicked.connect(self.start)
        self.stop_button = QPushButton("Stop")
        self.stop_button.setEnabled(False)
        self.stop_button.clicked.connect(self.stop)
        self.progress = QProgressBar()
        self.status = QLabel("")
        self.status.setWordWrap(True)

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
        settings_form.addRow("Tile step", stride)
        settings_form.addRow("Test-time augmentation", self.tta)
        settings_form.addRow("Batch (tiles)", self.batch)
        settings_form.addRow("Drop objects under", self.min_size)
        settings_form.addRow(self.split)
        settings_form.addRow(self.overwrite)
        buttons = QHBoxLayout()
        buttons.addWidget(self.start_button)
        buttons.addWidget(self.stop_button)
        layout = QVBoxLayout(self)
        layout.addWidget(data)
        layout.addWidget(settings)
        layout.addLayout(buttons)
        layout.addWidget(self.progress)
        layout.addWidget(self.status)
        layout.addStretch(1)

    # ---- running ---------------------------------------------------------------------------
    def start(self):
        """Start prediction + post-processing in a worker; return it (None on bad input)."""
        from ...models.store import load_model
        from ...predict.tiled import predict

        folder = self.model.folder()
        try:
            if folder is None:
                raise ValueError("no model chosen: train one, or pick a model folder with ...")
            config = ModelConfig.load(folder)
            image = pick_volume(self.image_combo, self.image_file, "image")
            out = Path(self.output.text()) if self.output.text() else default_output(image.name)
            out.parent.mkdir(parents=True, exist_ok=True)
            check_prediction_output(out, option="Output")
            check_writable(out)
        except (ValueError, OSError) as err:
            show_error(f"Auto-label: {describe_os_error(err)}")
            return None
        overwrite = self.overwrite.isChecked()
        stride = tuple(box.value() for box in self.stride)
        tuned = dict(config.decoding)
        tta = tuned.pop("tta", 0)
        settings = {
            "stride": None if not all(stride) else stride,
            "tta": (tta, 0, 4, 8)[self.tta.currentIndex()],
            "batch": self.batch.value(),
            "overwrite": overwrite,
            **self.extra_settings,
        }
        levels = decoding_levels(
            config.task, tuned, self.split.isChecked(), self.min_size.value()
        )
        token = self.cancel_token = CancelToken()

        def job():
            model = load_model(folder)
            probabilities = yield from predict(model, image, out, cancel=token, **settings)
            if probabilities is None:
                return None
            yield Progress(0, None, "labelling objects", payload={PROBABILITIES: probabilities})
            if not overwrite and (out / "labels").is_dir():
                # labels of an earlier run may hold the user's corrections: never replaced
                # unless "Replace earlier results" is ticked
                import zarr

                self.kept_labels = True
                return zarr.open_group(str(out), mode="r+")["labels"]
            return (
                yield from postprocess(
                    probabilities,
                    out,
                    overwrite=overwrite,
                    voxel_size=image.voxel_size,
                    cancel=token,
                    **levels,
                )
            )

        self._config, self._out, self.result, self.regions_shown = config, out, None, 0
        self.kept_labels = False
        self._image, self._folder = image, folder
        self.layer = None
        self.progress.setRange(0, 0)
        self.status.setText(f"Predicting {image.name} with {config.name or Path(folder).name}...")
        self.start_button.setEnabled(False)
        self.stop_button.setEnabled(True)
        self.worker = start_job(
            job,
            description=f"Auto-labelling {image.name}",
            on_event=self._on_progress,
            on_done=self._on_done,
            on_finish=self._on_finish,
        )
        return self.worker

    def stop(self) -> None:
        """Stop after the current batch; starting again with the same settings resumes."""
        if self.cancel_token is not None:
            self.cancel_token.cancel()
            self.status.setText("Stopping... (start again with the same settings to resume)")

    def _live_layer(self, probabilities: Any) -> Labels:
        data = LiveLabels(probabilities, self._config)
        if self.layer is None or self.layer not in self.viewer.layers:
            options = volume_layer_kwargs(self._image, f"{self._image.name} auto-label")
            options["metadata"].update(source=str(self._out), model=str(self._folder))
            self.layer = self.viewer.add_labels(data, **options)
        else:
            self.layer.data = data
        return self.layer

    def _on_progress(self, event: Progress) -> None:
        if event.total:
            self.progress.setRange(0, event.total)
            self.progress.setValue(event.step)
        if event.message:
            self.status.setText(event.message)
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

    def _on_done(self, labels) -> None:
        if labels is None:
            self.status.setText("Stopped. Start again with the same settings to resume.")
            return
        self.result = labels
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
        if self.kept_labels:
            self.status.setText(
                f"Kept the labels already in {self._out} ({n} objects; they may hold your "
                "corrections). Tick 'Replace earlier results' to label again."
            )
        else:
            self.status.setText(f"{n} objects labelled; saved in {self._out} (labels)")
        show_info(f"Auto-label finished: {n} objects in {self._out}")

    def _on_finish(self) -> None:
        self.start_button.setEnabled(True)
        self.stop_button.setEnabled(False)
        self.cancel_token = None
        if self.progress.maximum() == 0:
            self.progress.setRange(0, 1)
            self.progress.setValue(1 if self.result is not None else 0)
