"""Train: pick data and settings, watch the loss live, stop with a usable model.

Training runs :func:`napari_anatomics.train.loop.train` as the panel's job
(:class:`~napari_anatomics.napari.jobs.JobPanel`); each
:class:`~napari_anatomics.core.progress.Progress` event adds a point to the
loss curve and updates the progress bar and ETA. Stop sets the run's
:class:`~napari_anatomics.core.progress.CancelToken`: training saves the
checkpoint it has and returns its model folder like a finished run. The setting
fields are built from the training recipe
(:data:`napari_anatomics.train.recipe.RECIPE`: range, default, tooltip) by
:func:`napari_anatomics.napari.fields.setting_field`. "Export for BioImage.IO..."
writes the model as a BioImage.IO package
(:func:`~napari_anatomics.models.bioimageio.export_model`) in a side run.

**Live preview** (on by default, switchable during the run): while training
runs, a preview layer shows the model's labels for the visible slice or box,
and slices painted on the labels layer meanwhile join the running job
(:class:`~napari_anatomics.napari.live_preview.LiveView`; "accept preview"
paints a previewed object or slice into the labels).
"""

from __future__ import annotations

from pathlib import Path

from napari.layers import Image, Labels, Layer
from napari.utils.notifications import show_info, show_warning
from qtpy.QtCore import Signal
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
)

from ...core.progress import CancelToken, Job, Progress
from ...core.volume import format_voxel_size, parse_voxel_size
from ...train.recipe import RECIPE
from ..fields import field_value, setting_field, tip
from ..handoff import TRAIN, register
from ..jobs import JobPanel
from ..layers import LayerCombo, PathEdit, layer_array, layer_voxel_size, pick_volume
from ..model_picker import (
    ModelCombo,
    default_model_root,
    prepare_torch,
    refresh_all,
    unique_folder,
)
from ..plot import LinePlot, format_eta
from ..worker import call_job, until_cancelled

#: Model choices of the panel: label -> TrainConfig.architecture.
ARCHITECTURES = {
    "Automatic (from the data)": "auto",
    "2D U-Net (slice by slice)": "unet2d",
    "3D U-Net (anisotropic)": "resunet3d",
}
#: The recipe settings the panel shows, with their labels (the window: three boxes).
LABELS = {
    "architecture": "Model",
    "iterations": "Iterations",
    "batch": "Batch",
    "lr": "Learning rate",
    "time_limit": "Time limit (min)",
    "zoom": "Zoom augmentation",
    "object_crops": "Crops on objects",
    "copy_paste": "Copy-paste objects",
}


class TrainWidget(JobPanel):
    """Train or fine-tune a model on an image + labels pair.

    Parameters
    ----------
    napari_viewer : napari.viewer.Viewer
    """

    title = "Train"
    #: Emitted with the model folder when a run ends (finished or stopped).
    model_trained = Signal(str)

    def __init__(self, napari_viewer) -> None:
        super().__init__(
            napari_viewer, start_text="Train", stop_text="Stop (keeps the model so far)"
        )
        self.model_folder: str | None = None
        #: More :class:`~napari_anatomics.train.loop.TrainConfig` settings (network size...).
        self.extra_settings: dict = {}
        self._smoothed: float | None = None
        #: The live loop of the latest run (preview layer, painting hand-over).
        self.live = None
        register(self, TRAIN)
        prepare_torch()

        self.image_combo = LayerCombo(napari_viewer, Image)
        self.image_file = PathEdit("open", "Images (*.tif *.tiff *.h5 *.zarr)", "or a file")
        self.labels_combo = LayerCombo(napari_viewer, Labels)
        self.labels_file = PathEdit("open", "Labels (*.tif *.tiff *.h5 *.zarr)", "or a file")
        self.task_combo = QComboBox()
        self.task_combo.addItems(["instance", "semantic"])
        self.arch_combo = setting_field(RECIPE["architecture"], items=ARCHITECTURES)
        self.arch_combo.currentIndexChanged.connect(self._on_arch)
        self.window = [setting_field(RECIPE["window"], high=1024) for _ in range(3)]
        self.zoom = setting_field(RECIPE["zoom"], step=0.25)
        self.object_crops = setting_field(RECIPE["object_crops"], step=0.1)
        self.copy_paste = setting_field(RECIPE["copy_paste"], step=0.1)
        self.voxel_size = QLineEdit()
        self.voxel_size.setPlaceholderText("X,Y,Z in nm, e.g. 10,10,40")
        self.iterations = setting_field(RECIPE["iterations"])
        self.batch = setting_field(RECIPE["batch"], high=256)
        self.learning_rate = setting_field(RECIPE["lr"], step=1e-4, decimals=6)
        self.time_limit = setting_field(RECIPE["time_limit"], step=5.0, decimals=1)
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
        self.progress.setFormat("%v / %m iterations")
        self.eta = QLabel("ETA --")
        self.loss_plot = LinePlot("Training loss", "iteration")
        self.export_button = tip(QPushButton("Export for BioImage.IO..."), "train.export")
        self.export_button.clicked.connect(lambda: self.export_package())
        self.preview_box = tip(QCheckBox("Live preview while training"), "train.preview")
        self.preview_box.setChecked(True)
        self.preview_box.toggled.connect(self._on_preview_toggled)

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
        window = QHBoxLayout()
        for axis, box in zip("ZYX", self.window):
            window.addWidget(QLabel(axis))
            window.addWidget(box)
        form.addRow("Window (voxels)", window)
        for name, field in self.fields.items():
            form.addRow(LABELS[name], field)
        form.addRow("Model name", self.model_name)
        form.addRow("Save in", self.out_dir)
        form.addRow("Fine-tune from", self.finetune)
        bar = QHBoxLayout()
        bar.addWidget(self.progress, stretch=1)
        bar.addWidget(self.eta)
        layout = QVBoxLayout(self)
        layout.addWidget(data)
        layout.addWidget(settings)
        layout.addWidget(self.preview_box)
        layout.addLayout(self.button_row(self.export_button))
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

    def _on_preview_toggled(self, checked: bool) -> None:
        if self.live is not None:
            self.live.enabled = checked

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
        from ...core.runtime import VIEWER_CORES, cpu_threads
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
        arch = field_value(self.arch_combo)
        if arch == "unet2d" and all(window[1:]):
            window = (1, *window[1:])
        settings = {
            "task": task,
            "window": window if all(window) else None,
            **{name: field_value(field) for name, field in self.fields.items()},
            "init_from": self.finetune.folder(),
            "class_names": names,
            "class_values": values,
            "threads": cpu_threads(leave_free=VIEWER_CORES),
        }
        return TrainConfig(**(settings | self.extra_settings))

    def make_job(self, cancel: CancelToken) -> Job[str]:
        """The training run of the chosen data and settings, into a new model folder."""
        from ...train.live import LiveSession
        from ...train.loop import train
        from ..live_preview import LiveView

        voxel_size = parse_voxel_size(self.voxel_size.text())
        image = pick_volume(self.image_combo, self.image_file, "image")
        labels = pick_volume(self.labels_combo, self.labels_file, "labels")
        image = image.with_voxel_size(voxel_size)
        labels = labels.with_voxel_size(voxel_size)
        labels_layer = None if self.labels_file.text() else self.labels_combo.layer()
        config = self.config(labels_layer)
        name = self.model_name.text().strip() or "model"
        out_dir = unique_folder(self.out_dir.text() or default_model_root(), name)
        self.loss_plot.clear()
        self._smoothed = None
        self.eta.setText("ETA --")
        self.description = f"Training {out_dir.name}"
        session = LiveSession(preview=self.preview_box.isChecked())
        if self.live is not None:
            self.live.close()
        reference = None if self.image_file.text() else self.image_combo.layer()
        name = f"{labels_layer.name if labels_layer is not None else labels.name} preview"
        self.live = LiveView(
            self.viewer, session, image, labels_layer, reference=reference,
            task=config.task, name=name,
            layer=self.live.layer if self.live is not None else None,
        )
        return train(image, labels, config, out_dir, cancel=cancel, live=session)

    def on_progress(self, event: Progress) -> None:
        """Progress bar and status, the loss curves and the ETA."""
        super().on_progress(event)
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

    def on_finish(self) -> None:
        """The run ended: the live loop stops listening (its preview layer stays)."""
        super().on_finish()
        if self.live is not None:
            self.live.close()

    def on_result(self, folder) -> None:
        """The model folder of a finished (or stopped) run: its validation, the registry."""
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

    # ---- BioImage.IO ----------------------------------------------------------------------
    def export_package(self, path: str | None = None):
        """Write the model (the last trained, else "Fine-tune from") as a BioImage.IO .zip.

        Asks for the file when ``path`` is not given. The test input is cut from the
        chosen image layer when it has the model's voxel size, else it is seeded
        noise. Runs as a side run; returns its worker (None when nothing starts).
        """
        from ...models.bioimageio import centre_sample, export_model
        from ...models.config import ModelConfig

        folder = self.model_folder or self.finetune.folder()
        if not folder:
            self.fail("train a model first, or choose one under 'Fine-tune from'")
            return None
        if path is None:
            path, _ = QFileDialog.getSaveFileName(
                self, "Save the BioImage.IO package", f"{folder}.zip", "BioImage.IO (*.zip)"
            )
            if not path:
                return None
        out = Path(path if path.lower().endswith(".zip") else f"{path}.zip")
        try:
            config = ModelConfig.load(folder)
        except (OSError, ValueError) as err:
            self.fail(err)
            return None
        image, sample = self.image_combo.layer(), None
        if image is not None and _same_voxels(layer_voxel_size(image)[0], config.voxel_size):
            sample = centre_sample(layer_array(image), config)

        def done(written) -> None:
            source = "the image" if sample is not None else "seeded noise (no matching image)"
            self.status.setText(f"BioImage.IO package written: {written} (test input: {source})")
            show_info(f"BioImage.IO package written: {written}")

        cancel = CancelToken()
        job = call_job(export_model, folder, out, sample=sample, message=f"Exporting {out.name}")
        description = f"Exporting {Path(folder).name} for BioImage.IO"
        return self.run(
            until_cancelled(job, cancel),
            cancel,
            description=description,
            on_result=done,
            main=False,
        )


def _same_voxels(a, b) -> bool:
    """Two voxel sizes (z, y, x nm) equal to 0.1 %."""
    return all(abs(float(x) - float(y)) <= 1e-3 * max(abs(float(y)), 1e-9) for x, y in zip(a, b))


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
