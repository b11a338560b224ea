"""A sortable table of a DataFrame, one row per instance.

A ``QTableView`` over a model that reads the frame (:class:`FrameModel`): only the
rows on screen are formatted, so showing a table of tens of thousands of objects,
or the same table again after each edit, costs about what the frame costs to sort,
not a widget per cell (the ``QTableWidget`` of earlier releases took ~2 s for 224
objects with columns sized to their contents: ``benchmarks/proofread_stall.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from qtpy.QtCore import QAbstractTableModel, QModelIndex, Qt, Signal
from qtpy.QtWidgets import QAbstractItemView, QHeaderView, QTableView


def cell_text(value: object) -> str:
    """How a cell shows ``value``: integers whole, other numbers to 4 digits, True as "yes"."""
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else ""
    if isinstance(value, (int, np.integer)):
        return f"{int(value):d}"
    if isinstance(value, (float, np.floating)):
        return f"{float(value):.4g}"
    return str(value)


class FrameModel(QAbstractTableModel):
    """The rows of a DataFrame (some of its columns) for a ``QTableView``; sorts the frame."""

    def __init__(self) -> None:
        super().__init__()
        self.frame = pd.DataFrame()
        self.columns: list[str] = []
        self.headers: list[str] = []
        self._values: list[np.ndarray] = []  # the shown columns, for fast cell access

    def set_frame(self, frame: pd.DataFrame, columns: list[str], headers: list[str]) -> None:
        """Show ``frame`` (its ``columns``, titled ``headers``)."""
        self.beginResetModel()
        self.frame, self.columns, self.headers = frame.reset_index(drop=True), columns, headers
        self._values = [self.frame[c].to_numpy() for c in columns]
        self.endResetModel()

    def rowCount(self, parent: QModelIndex = QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self.frame)

    def columnCount(self, parent: QModelIndex = QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self.columns)

    def data(self, index: QModelIndex, role: int = Qt.DisplayRole) -> Any:
        """The cell's text, and numbers aligned right."""
        if not index.isValid():
            return None
        value = self._values[index.column()][index.row()]
        if role == Qt.DisplayRole:
            return cell_text(value)
        if role == Qt.TextAlignmentRole and isinstance(value, (int, float, np.number)):
            return int(Qt.AlignRight | Qt.AlignVCenter)
        return None

    def headerData(self, section: int, orientation, role: int = Qt.DisplayRole) -> Any:
        if role == Qt.DisplayRole and orientation == Qt.Horizontal:
            return self.headers[section] if section < len(self.headers) else None
        return None

    def sort(self, column: int, order=Qt.AscendingOrder) -> None:
        """Sort the rows by a column: numbers by value (missing ones last), text by text."""
        if not 0 <= column < len(self.columns) or self.frame.empty:
            return
        self.layoutAboutToBeChanged.emit()
        self.frame = self.frame.sort_values(
            self.columns[column], ascending=order == Qt.AscendingOrder, kind="stable",
            na_position="last", key=lambda v: v.astype(str) if v.dtype == object else v,
        ).reset_index(drop=True)  # fmt: skip
        self._values = [self.frame[c].to_numpy() for c in self.columns]
        self.layoutChanged.emit()


class FrameTable(QTableView):
    """Show a :class:`pandas.DataFrame`; clicking a row emits its ``label`` value.

    Parameters
    ----------
    id_column : str
        Column whose value identifies a row (emitted by :attr:`row_clicked`).
    """

    row_clicked = Signal(int)

    def __init__(self, id_column: str = "label") -> None:
        super().__init__()
        self.id_column = id_column
        self._model = FrameModel()
        self.setModel(self._model)
        self.setSelectionBehavior(QAbstractItemView.SelectRows)
        self.setSelectionMode(QAbstractItemView.ExtendedSelection)  # Ctrl/Shift: rows
        self.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.verticalHeader().setVisible(False)
        header = self.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeToContents)
        header.setResizeContentsPrecision(100)  # sized by the first rows, not all of them
        self.setSortingEnabled(True)
        self.clicked.connect(lambda index: self._on_click(index.row()))

    @property
    def columns(self) -> list[str]:
        """The columns shown."""
        return self._model.columns

    def rowCount(self) -> int:
        """Rows shown."""
        return self._model.rowCount()

    def set_frame(
        self,
        frame: pd.DataFrame,
        columns: Sequence[str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        """Fill the table, keeping the user's sort column and order.

        Parameters
        ----------
        columns : sequence of str, optional
            Columns to show, in order (those missing from ``frame`` are skipped).
        headers : dict, optional
            Header text per column name (default: the name).
        """
        columns = [c for c in (columns or frame.columns) if c in frame.columns]
        header = self.horizontalHeader()
        sort_column, order = header.sortIndicatorSection(), header.sortIndicatorOrder()
        self._model.set_frame(frame, columns, [(headers or {}).get(c, c) for c in columns])
        if 0 <= sort_column < len(columns):
            self.sortByColumn(sort_column, order)

    def row_id(self, row: int) -> int | None:
        """The id of the row shown at ``row`` (after sorting)."""
        model = self._model
        if self.id_column not in self.columns or not 0 <= row < model.rowCount():
            return None
        return int(model.frame[self.id_column].iat[row])  # the frame as sorted

    def select_id(self, value: int) -> None:
        """Select the row whose id is ``value`` (no signal)."""
        model = self._model
        if self.id_column not in self.columns:
            return
        rows = np.flatnonzero(model.frame[self.id_column].to_numpy() == value)
        if rows.size:
            self.blockSignals(True)
            self.selectRow(int(rows[0]))
            self.blockSignals(False)
            self.scrollTo(model.index(int(rows[0]), 0))

    def sort_by(self, column: str, descending: bool = True) -> None:
        """Sort by a column of the frame (no-op when it is not shown)."""
        if column in self.columns:
            order = Qt.DescendingOrder if descending else Qt.AscendingOrder
            self.sortByColumn(self.columns.index(column), order)

    def _on_click(self, row: int) -> None:
        value = self.row_id(row)
        if value is not None:
            self.row_clicked.emit(value)
