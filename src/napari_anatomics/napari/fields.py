"""Panel fields built from declared settings, and every other tooltip of the panels.

A job's settings are declared once as :class:`~napari_anatomics.core.settings.Setting`
(training: :data:`napari_anatomics.train.recipe.SETTINGS`). :func:`setting_field`
makes the panel's input for one of them, with the setting's default, range and
help (its tooltip, :func:`setting_tooltip`); :func:`field_value` reads it back.
The tooltips of the buttons and fields that are no setting are the
:data:`TOOLTIPS` table, set with :func:`tip`: no panel writes a tooltip itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from qtpy.QtWidgets import QCheckBox, QComboBox, QDoubleSpinBox, QSpinBox, QWidget

from ..core.settings import Setting

#: Tooltips of the panels' widgets that are not settings, by "panel.widget".
TOOLTIPS: dict[str, str] = {
    "image_tools.voxel_size": "Voxel size X,Y,Z in nanometres; overrides the file's",
    "data_check.finding": "Click to go to this slice",
    "model_picker.browse": (
        "Choose a model folder, or import a BioImage.IO package made by napari-anatomics "
        "(.zip) into a model folder next to it"
    ),
    "export.downscale": "Keep every n-th voxel in x and y (z is kept)",
    "export.overwrite": (
        "Without it an export whose files already exist in the folder is refused, "
        "and nothing is written"
    ),
    "proofread.table": (
        "Click a row to find the object; double-click it in the viewer to delete it"
    ),
    "proofread.train": "Choose these labels in the Train panel (to fine-tune)",
    "edits.merge": "Make the objects of the selected table rows one object (Ctrl/Shift-click "
    "rows to select several); Ctrl+Z undoes",
    "edits.seeds": "A points layer for split seeds: click points of the first part, raise "
    "'part', click the next part",
    "edits.split": "Grow each part from its seed points over the object (seeded watershed on "
    "the image, else on the object's shape); each part after the first gets a new id",
    "proofread.colour_by": (
        "Colour each object by a measurement of the table (viridis: low dark, high "
        "bright), or by id"
    ),
    "train.export": (
        "Write the model as a BioImage.IO package (.zip) for bioimage.io, ilastik, "
        "deepImageJ and the BioImage.IO tools; its test input is cut from the image "
        "when it has the model's voxel size"
    ),
    "train.preview": (
        "While training runs, show the model's labels for the visible slice (or box in 3D) "
        "in a preview layer, refreshed as the model learns; slices you paint meanwhile join "
        "the running training. K keeps the previewed object under the cursor, Shift+K the "
        "whole previewed slice. Switch off to give training every cycle"
    ),
    "export.neuroglancer": (
        "Serve the image and labels to a local Neuroglancer viewer (in the browser), "
        "with the objects' measurements when Proofread & Stats measured them"
    ),
}

#: Upper bound of a number field whose setting has none.
UNBOUNDED = 1_000_000


def tip(widget: QWidget, key: str) -> QWidget:
    """Give ``widget`` the tooltip ``TOOLTIPS[key]``; return it."""
    widget.setToolTip(TOOLTIPS[key])
    return widget


def setting_tooltip(setting: Setting) -> str:
    """A setting's help, with what decides it when it is left to the data."""
    return setting.help + (f" (auto: {setting.auto})" if setting.auto else "")


def setting_field(
    setting: Setting,
    *,
    high: float | None = None,
    step: float | None = None,
    decimals: int = 2,
    items: Mapping[str, Any] | None = None,
) -> QWidget:
    """The panel's input for ``setting``: its default, range and help as tooltip.

    Numbers become spin boxes (``int`` and ``triple`` settings: one integer box);
    a setting without a default (left to the data, or not set) starts at the
    box's minimum, 0, shown as "auto" or "none". Settings with choices become
    drop-downs; switches become check boxes.

    Parameters
    ----------
    setting : Setting
    high : float, optional
        Upper bound when the setting has none (default :data:`UNBOUNDED`).
    step : float, optional
        Step of a number box.
    decimals : int
        Decimals of a float box.
    items : mapping of str to object, optional
        Drop-down texts and their values (default: the setting's choices).

    Returns
    -------
    QWidget
        A QSpinBox, QDoubleSpinBox, QComboBox or QCheckBox.
    """
    widget: Any
    if setting.choices or items:
        widget = QComboBox()
        for text, value in (items or {str(c): c for c in setting.choices or ()}).items():
            widget.addItem(text, value)
        widget.setCurrentIndex(max(0, widget.findData(setting.default)))
    elif setting.kind == "bool":
        widget = QCheckBox(setting.label)
        widget.setChecked(bool(setting.default))
    else:
        widget = QSpinBox() if setting.kind in ("int", "triple") else QDoubleSpinBox()
        cast = int if isinstance(widget, QSpinBox) else float
        if isinstance(widget, QDoubleSpinBox):
            widget.setDecimals(decimals)
        top = setting.high if setting.high is not None else high or UNBOUNDED
        if setting.default is None:
            widget.setRange(cast(0), cast(top))
            widget.setSpecialValueText("auto" if setting.auto else "none")
            widget.setValue(cast(0))
        else:
            widget.setRange(cast(setting.low or 0), cast(top))
            widget.setValue(cast(setting.default))
        if step is not None:
            widget.setSingleStep(cast(step))
    widget.setToolTip(setting_tooltip(setting))
    return widget


def field_value(widget: QWidget) -> Any:
    """The value of a field made by :func:`setting_field`; None where it shows auto/none."""
    if isinstance(widget, QComboBox):
        return widget.currentData()
    if isinstance(widget, QCheckBox):
        return widget.isChecked()
    if isinstance(widget, (QSpinBox, QDoubleSpinBox)):
        if widget.specialValueText() and widget.value() == widget.minimum():
            return None
        return widget.value()
    raise TypeError(f"not a setting field: {type(widget).__name__}")
