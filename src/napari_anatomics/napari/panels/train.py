"""Train: pick data and settings, watch the loss live, stop with a usable model.

Training runs :func:`napari_anatomics.train.loop.train` in a ``thread_worker``;
each :class:`~napari_anatomics.core.progress.Progress` event adds a point to the
loss curve and updates the progress bar and ETA. Stop asks the job to finish
early through a :class:`~napari_anatomics.core.progress.CancelToken`: it saves the
checkpoint it has and returns its model folder like a finished run.
"""

from __future__ import annotations

import weakref

from napari.layers import Image, Labels, Layer
from napari.utils.notifications import show_error, show_info, show_warning
from qtpy.QtCore import Signal
from qtpy.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from ...core.progress import CancelToken, Progress
from ...core.volume import format_voxel_size, parse_voxel_size
from ...train.recipe import RECIPE
from ..jobs import start_job
from ..layers import LayerCombo, PathEdit, layer_voxel_size, pick_volume
from ..model_picker import (
    ModelCombo,
    default_model_root,
    prepare_torch,
    refresh_all,
    unique_folder,
)
from ..plot import LinePlot

#: The panel's display name in napari.yaml (Plugins menu).
TRAIN_DISPLAY_NAME = "4. Train"
#: Every open Train panel, so other panels can send it labels.
_INSTANCES: weakref.WeakSet = weakref.WeakSet()


#: Model choices of the panel: label -> TrainConfig.architecture.
ARCHITECTURES = {
    "Automatic (from the data)": "auto",
    "2D U-Net (slice by slice)": "unet2d",
    "3D U-Net (anisotropic)": "resunet3d",
}


def _spin(name: str, high: int = 1_000_000, auto: bool = False) -> QSpinBox:
    """An integer box for recipe setting ``name``; 0 shows "auto" when ``auto``."""
    setting = RECIPE[name]
    box = QSpinBox()
    box.setRange(0 if auto else int(setting.low or 0), high)
    if auto:
        box.setSpecialValueText("auto")
    box.setValue(int(setting.default or 0))
    box.setToolTip(setting.help + (f" (auto: {setting.auto})" if setting.auto else ""))
    return box


def _number(name: str, step: float, decimals: int = 2) -> QDoubleSpinBox:
    """A number box for recipe setting ``name``: its range, default and help."""
    setting = RECIPE[name]
    box = QDoubleSpinBox()
    box.setDecimals(decimals)
    box.setRange(float(setting.low or 0.0), float(setting.high or 1e6))
    box.setSingleStep(step)
    box.setValue(float(setting.default or 0.0))
    box.setToolTip(setting.help)
    return box


def format_eta(seconds: float | None) -> str:
    """Remaining time as users read it: "ETA 1 min 05 s"."""
    if seconds is None or seconds != seconds or seconds < 0:
        return "ETA --"
    seconds = round(seconds)
    if seconds >= 3600:
        return f"ETA {seconds // 3600} h {seconds % 3600 // 60:02d} min"
    if seconds >= 60:
        return f"ETA {seconds // 60} min {seconds % 60:02d} s"
    return f"ETA {seconds} s"


class TrainWidget(QWidget):
    """Train or fine-tune a model on an image + labels pair.

    Parameters
    ----------
    napari_viewer : napari.viewer.Viewer
    """

    #: Emitted with the model folder when a run ends (finished or stopped).
    model_trained = Signal(str)

    def __init__(self, napari_viewer) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.worker = None
        self.cancel_token: CancelToken | None = None
        self.model_folder: str | None = None
        #: More :class:`~napari_anatomics.train.loop.TrainConfig` settings (network size...).
        self.extra_settings: dict = {}
        self._smoothed: float | None = None
        _INSTANCES.add(self)
        prepare_torch()

        self.image_combo = LayerCombo(napari_viewer, Image)
        self.image_file = PathEdit("open", "Images (*.tif *.tiff *.h5 *.zarr)", "or a file")
        self.labels_combo = LayerCombo(napari_viewer, Labels)
        self.labels_file = PathEdit("open", "Labels (*.tif *.tiff *.h5 *.zarr)", "or a file")
        self.task_combo = QComboBox()
        self.task_combo.addItems(["instance", "semantic"])
        self.arch_combo = QComboBox()
        for text, arch in ARCHITECTURES.items():
            self.arch_combo.addItem(text, arch)
        self.arch_combo.setToolTip(
            RECIPE["architecture"].help + f". Automatic: {RECIPE['architecture'].auto}."
        )
        self.arch_combo.currentIndexChanged.connect(self._on_arch)
        self.window = [_spin("window", 1024, auto=True) for _ in range(3)]
        self.zoom = _number("zoom", 0.25)
        self.object_crops = _number("object_crops", 0.1)
        self.copy_paste = _number("copy_paste", 0.1)
        self.voxel_size = QLineEdit()
        self.voxel_size.setPlaceholderText("X,Y,Z in nm, e.g. 10,10,40")
        self.iterations = _spin("iterations")
        self.batch = _spin("batch", 256, auto=True)
        self.learning_rate = _number("lr", 1e-4, decimals=6)
        self.time_limit = _number("time_limit", 5.0, decimals=1)
        self.time_limit.setMinimum(0.0)
        self.time_limit.setSpecialValueText("none")
        self.time_limit.setValue(float(RECIPE["time_limit"].default or 0.0))
        #: The panel's fields by recipe setting (tests check them against the recipe).
        self.fields = {
            "architecture": self.arch_combo,
            "iterations": self.iterations,
            "batch": self.batch,
            "lr": self.learning_rate,
            "time_limit": self.time_limit,
            "zoom": self.zoom,
            "object_crops": self.object_crops,
            "copy_paste": self.copy_paste,
        }
        self.model_name = QLineEdit("chloroplasts")
        self.out_dir = PathEdit("folder", placeholder="folder for trained models")
        self.out_dir.setText(str(default_model_root()))
        self.finetune = ModelCombo(none_text="(new model, from scratch)")
        self.out_dir.edit.editingFinished.connect(
            lambda: self.finetune.set_root(self.out_dir.text())
        )
        self.finetune.set_root(self.out_dir.text())
        self.start_button = QPushButton("Train")
        self.start_button.clicked.connect(self.start)
        self.stop_button = QPushButton("Stop (keeps the model so far)")
        self.stop_button.setEnabled(False)
        self.stop_button.clicked.connect(self.stop)
        self.progress = QProgressBar()
        self.progress.setFormat("%v / %m iterations")
        self.eta = QLabel("ETA --")
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.loss_plot = LinePlot("Training loss", "iteration")

        data = QGroupBox("Data")
        data_form = QFormLayout(data)
        data_form.addRow("Image", self.image_combo)
        data_form.addRow("", self.image_file)
        data_form.addRow("Labels", self.labels_combo)
        data_form.addRow("", self.labels_file)
        data_form.addRow("Voxel size", self.voxel_size)
        settings = QGroupBox("Settings")
        form = QFormLayout(settings)
        form.addRow("Task", self.task_combo)
        form.addRow("Model", self.arch_combo)
        window = QHBoxLayout()
        for axis, box in zip("ZYX", self.window):
            window.addWidget(QLabel(axis))
            window.addWidget(box)
        form.addRow("Window (voxels)", window)
        form.addRow("Iterations", self.iterations)
        form.addRow("Batch", self.batch)
        form.addRow("Learning rate", self.learning_rate)
        form.addRow("Time limit (min)", self.time_limit)
        form.addRow("Zoom augmentation", self.zoom)
        form.addRow("Crops on objects", self.object_crops)
        form.addRow("Copy-paste objects", self.copy_paste)
        form.addRow("Model name", self.model_name)
        form.addRow("Save in", self.out_dir)
        form.addRow("Fine-tune from", self.finetune)
        buttons = QHBoxLayout()
        buttons.addWidget(self.start_button)
        buttons.addWidget(self.stop_button)
        bar = QHBoxLayout()
        bar.addWidget(self.progress, stretch=1)
        bar.addWidget(self.eta)
        layout = QVBoxLayout(self)
        layout.addWidget(data)
        layout.addWidget(settings)
        layout.addLayout(buttons)
        layout.addLayout(bar)
        layout.addWidget(self.loss_plot, stretch=1)
        layout.addWidget(self.status)

        self.image_combo.layer_changed.connect(self._on_image)
        self.labels_combo.layer_changed.connect(self._on_labels)
        self._on_image(self.image_combo.layer())
        self._on_labels(self.labels_combo.layer())

    # ---- choices -------------------------------------------------------------------------
    def _on_image(self, layer: Layer | None) -> None:
        if layer is not None:
            voxel_size, origin = layer_voxel_size(layer)
            z, y, x = voxel_size
            self.voxel_size.setText(f"{x:g},{y:g},{z:g}")
            self.voxel_size.setToolTip(f"{format_voxel_size(voxel_size)} ({origin})")

    def _on_arch(self, _index: int = 0) -> None:
        arch = self.arch_combo.currentData()
        for box in self.window:  # "auto": the architecture's default window
            box.setValue(0)
        self.window[0].setEnabled(arch != "unet2d")

    def _on_labels(self, layer: Layer | None) -> None:
        if layer is not None and layer.metadata.get("task") in ("instance", "semantic"):
            self.task_combo.setCurrentText(layer.metadata["task"])

    def use_labels(self, labels: Labels, image: Image | None = None) -> None:
        """Choose ``labels`` (and ``image``) for the next run; fine-tune their model."""
        self.labels_file.setText("")
        self.labels_combo.set_layer(labels)
        if image is not None:
            self.image_file.setText("")
            self.image_combo.set_layer(image)
        model = labels.metadata.get("model")
        if model:
            self.finetune.set_root(self.out_dir.text())
            self.finetune.select_folder(model)
        self.status.setText(f"Labels {labels.name!r} chosen: press Train to fine-tune.")

    # ---- running ---------------------------------------------------------------------------
    def config(self, labels: Layer | None = None):
        """The :class:`~napari_anatomics.train.loop.TrainConfig` from the panel's fields.

        Class names and values come from the labels layer when the Annotate
        panel made it (``metadata["classes"]``).
        """
        from ...core.runtime import usable_cores
        from ...train.recipe import TrainConfig

        task = self.task_combo.currentText()
        classes = dict((labels.metadata or {}).get("classes") or {}) if labels else {}
        names = values = None
        if task == "semantic" and classes:
            values = [int(v) for v in classes]
            names = [str(n) for n in classes.values()]
        elif task == "instance" and classes:
            names = [str(next(iter(classes.values())))]
        window = tuple(box.value() for box in self.window)
        arch = self.arch_combo.currentData()
        if arch == "unet2d" and all(window[1:]):
            window = (1, *window[1:])
        settings = {
            "task": task,
            "window": window if all(window) else None,
            "iterations": self.iterations.value(),
            "batch": self.batch.value() or None,
            "lr": self.learning_rate.value(),
            "time_limit": self.time_limit.value() or None,
            "architecture": arch,
            "zoom": self.zoom.value(),
            "object_crops": self.object_crops.value(),
            "copy_paste": self.copy_paste.value(),
            "init_from": self.finetune.folder(),
            "class_names": names,
            "class_values": values,
            # leave a core to the viewer so it stays responsive
            "threads": max(1, usable_cores() - 1),
        }
        return TrainConfig(**(settings | self.extra_settings))

    def start(self):
        """Start training in a worker thread; return the worker (None on a bad input)."""
        from ...train.loop import train

        try:
            voxel_size = parse_voxel_size(self.voxel_size.text())
            image = pick_volume(self.image_combo, self.image_file, "image")
            labels = pick_volume(self.labels_combo, self.labels_file, "labels")
            image = image.with_voxel_size(voxel_size)
            labels = labels.with_voxel_size(voxel_size)
            labels_layer = None if self.labels_file.text() else self.labels_combo.layer()
            config = self.config(labels_layer)
            name = self.model_name.text().strip() or "model"
            out_dir = unique_folder(self.out_dir.text() or default_model_root(), name)
        except (ValueError, OSError, TypeError) as err:
            show_error(f"Train: {err}")
            return None
        self.loss_plot.clear()
        self._smoothed = None
        self.progress.setRange(0, config.iterations)
        self.progress.setValue(0)
        self.eta.setText("ETA --")
        self.status.setText("Training...")
        self.cancel_token = CancelToken()
        token = self.cancel_token
        self.start_button.setEnabled(False)
        self.stop_button.setEnabled(True)
        self.worker = start_job(
            lambda: train(image, labels, config, out_dir, cancel=token),
            description=f"Training {out_dir.name}",
            on_event=self._on_progress,
            on_done=self._on_done,
            on_finish=self._on_finish,
        )
        return self.worker

    def stop(self) -> None:
        """Ask training to stop after the current iteration, keeping a usable model."""
        if self.cancel_token is not None:
            self.cancel_token.cancel()
            self.status.setText("Stopping: saving the model trained so far...")
            self.stop_button.setEnabled(False)

    def _on_progress(self, event: Progress) -> None:
        if event.total:
            self.progress.setMaximum(event.total)
        self.progress.setValue(event.step)
        metrics = event.metrics or {}
        if "loss" in metrics:
            loss = float(metrics["loss"])
            self.loss_plot.append("loss", event.step, loss)
            last = self._smoothed
            self._smoothed = loss if last is None else 0.9 * last + 0.1 * loss
            self.loss_plot.append("smoothed", event.step, self._smoothed)
        if "val_dice" in metrics and metrics["val_dice"] == metrics["val_dice"]:
            self.loss_plot.append("validation Dice", event.step, metrics["val_dice"])
        if "eta_s" in metrics:
            self.eta.setText(format_eta(metrics["eta_s"]))
        if event.message:
            self.status.setText(event.message)

    def _on_done(self, folder) -> None:
        from ...models.config import ModelConfig

        self.model_folder = str(folder)
        report = describe_validation(ModelConfig.load(folder).validation)
        self.status.setText(f"Model saved in {folder}. {report}")
        if report.startswith("Warning"):
            show_warning(f"Training finished: {report}")
        else:
            show_info(f"Training finished: model saved in {folder}")
        refresh_all(self.model_folder)
        self.model_trained.emit(self.model_folder)

    def _on_finish(self) -> None:
        self.start_button.setEnabled(True)
        self.stop_button.setEnabled(False)
        self.cancel_token = None


def describe_validation(validation: dict) -> str:
    """The held-out scores of a model in one sentence (a warning when it finds nothing)."""
    if not validation:
        return ""
    if not validation.get("objects_found"):
        return (
            f"Warning: the model finds nothing on {validation['on']}; train longer or "
            "paint more slices."
        )
    parts = [f"Dice {validation['dice']:.2f}"]
    if "ap50" in validation:
        parts.append(f"AP@0.5 {validation['ap50']:.2f}")
    for name, c in validation.get("classes", {}).items():
        parts.append(
            f"{name} volume fraction {100 * c['volume_fraction_found']:.1f} % "
            f"(painted {100 * c['volume_fraction_painted']:.1f} %)"
        )
    return f"On {validation['on']}: " + ", ".join(parts) + "."


def send_to_train(viewer, labels: Labels, image: Image | None = None) -> TrainWidget:
    """Choose ``labels`` in the Train panel (opening it if needed); return the panel."""
    panels = [w for w in _INSTANCES if w.viewer is viewer]
    if panels:
        panel = panels[0]
    else:
        _dock, panel = viewer.window.add_plugin_dock_widget("napari-anatomics", TRAIN_DISPLAY_NAME)
    panel.use_labels(labels, image)
    return panel
