"""The stats table: a DataFrame shown through a model, sorted by value, rows found by id."""

from __future__ import annotations

import numpy as np
import pandas as pd
from qtpy.QtCore import Qt

from napari_anatomics.napari.table import FrameTable, cell_text


def test_sort_select_click(qtbot):
    table = FrameTable("id")
    qtbot.addWidget(table)
    frame = pd.DataFrame({
        "id": [3, 10, 2, 7],
        "volume_um3": [0.5, 12.25, np.nan, 2.0],
        "touches": [True, False, False, True],
        "class": ["b", "a", "c", "a"],
    })  # fmt: skip
    table.set_frame(frame, ["id", "volume_um3", "touches", "missing"], {"volume_um3": "µm³"})
    assert table.rowCount() == 4 and table.columns == ["id", "volume_um3", "touches"]
    model = table.model()
    assert model.headerData(1, Qt.Horizontal) == "µm³"
    table.sort_by("volume_um3")  # descending, missing last
    assert [table.row_id(r) for r in range(4)] == [10, 7, 3, 2]
    assert [model.data(model.index(r, 1)) for r in range(4)] == ["12.25", "2", "0.5", "nan"]
    assert model.data(model.index(1, 2)) == "yes" and model.data(model.index(0, 2)) == ""
    table.sort_by("id", descending=False)
    assert [table.row_id(r) for r in range(4)] == [2, 3, 7, 10]
    # a new frame keeps the user's sort
    table.set_frame(frame[frame["id"] != 3], ["id", "volume_um3"])
    assert [table.row_id(r) for r in range(3)] == [2, 7, 10]
    table.select_id(10)
    assert {i.row() for i in table.selectedIndexes()} == {2}
    with qtbot.waitSignal(table.row_clicked) as clicked:
        table.clicked.emit(model.index(1, 0))
    assert clicked.args == [7]
    assert table.row_id(99) is None
    assert cell_text(np.int64(5)) == "5" and cell_text(1 / 3) == "0.3333"
