"""Shared fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest

#: The real SBFSEM pair, next to the repository (../shared/data) as on CI.
REAL_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "sbfsem-chloroplasts"


@pytest.fixture
def real_data_dir() -> Path:
    """Folder of the real SBFSEM chloroplast pair; skips when it is absent."""
    if not (REAL_DATA / "images.tif").is_file():
        pytest.skip(f"real SBFSEM data not found at {REAL_DATA}")
    return REAL_DATA


def tiny_training(panel, models: Path, iterations: int, name: str = "tiny", **extra) -> None:
    """Set a Train panel to a few-second run of a small 3D net on the viewer's
    "image" and "labels" layers, saving into ``models``.

    These panels train to test the panel, not the precision path: float32 on every
    machine (bfloat16 went NaN in the 3D net on one CPU, and NaN losses leave the plot).
    """
    viewer = panel.viewer
    panel.out_dir.setText(str(models))
    panel.finetune.set_root(models)
    panel.image_combo.set_layer(viewer.layers["image"])
    panel.labels_combo.set_layer(viewer.layers["labels"])
    panel.task_combo.setCurrentText("instance")
    panel.arch_combo.setCurrentIndex(panel.arch_combo.findData("resunet3d"))
    for box, size in zip(panel.window, (4, 32, 32)):
        box.setValue(size)
    panel.iterations.setValue(iterations)
    panel.batch.setValue(1)
    panel.model_name.setText(name)
    panel.extra_settings = {"precision": "float32", "tune_decoding": False, **extra}
