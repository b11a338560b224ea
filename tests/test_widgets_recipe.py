"""The Train panel's fields are the recipe's settings, with the recipe's defaults."""

from __future__ import annotations

from qtpy.QtWidgets import QComboBox

from napari_anatomics.napari.panels.train import TrainWidget, describe_validation
from napari_anatomics.train.recipe import RECIPE


def test_train_panel_fields_follow_the_recipe(make_napari_viewer, qtbot):
    panel = TrainWidget(make_napari_viewer())
    qtbot.addWidget(panel)
    assert set(panel.fields) <= set(RECIPE)
    config = panel.config()
    for name, widget in panel.fields.items():
        setting = RECIPE[name]
        if isinstance(widget, QComboBox):
            assert widget.currentData() == setting.default, name
        elif setting.default is None:  # left to the data: the box shows its special text
            assert widget.value() == widget.minimum() and widget.specialValueText(), name
        else:
            assert widget.value() == setting.default, name
            low = setting.low if setting.low is not None else 0
            assert widget.minimum() <= low and (setting.high is None or
                                                widget.maximum() == setting.high), name
        assert setting.help.split(" (")[0][:30] in widget.toolTip(), name
        # the untouched panel asks for exactly the recipe's default
        assert getattr(config, name) == setting.default, name


def test_validation_sentence():
    found = {"on": "the held-out tiles", "dice": 0.91, "ap50": 0.6, "objects_found": 5}
    assert describe_validation(found) == "On the held-out tiles: Dice 0.91, AP@0.5 0.60."
    nothing = {"on": "the held-out tiles", "dice": 0.0, "objects_found": 0}
    assert describe_validation(nothing).startswith("Warning: the model finds nothing")
    semantic = {
        "on": "the held-out tiles",
        "dice": 0.8,
        "objects_found": 3,
        "classes": {"mito": {"dice": 0.8, "volume_fraction_found": 0.051,
                             "volume_fraction_painted": 0.047}},
    }
    assert "mito volume fraction 5.1 % (painted 4.7 %)" in describe_validation(semantic)
