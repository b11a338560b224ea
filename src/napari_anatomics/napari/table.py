"""A sortable table of a DataFrame, one row per instance."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from qtpy.QtCore import Qt, Signal
from qtpy.QtWidgets import QAbstractItemView, QHeaderView, QTableWidget, QTableWidgetItem


class _Item(QTableWidgetItem):
    """A cell that sorts by its value (numbers numerically), not by its text."""

    def __init__(self, value: object) -> None:
        number = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(
            value, bool
        )
        if isinstance(value, (bool, np.bool_)):
            text, value = ("yes" if value else ""), int(value)
            number = True
        elif number:
            value = value.item() if isinstance(value, np.generic) else value
            text = f"{value:d}" if isinstance(value, int) else f"{value:.4g}"
        else:
            text = str(value)
        super().__init__(text)
        self.key = (0, value) if number and np.isfinite(value) else (1, text)
        self.setFlags(Qt.ItemIsSelectable | Qt.ItemIsEnabled)
        if number:
            self.setTextAlignment(int(Qt.AlignRight | Qt.AlignVCenter))

    def __lt__(self, other: QTableWidgetItem) -> bool:
        if isinstance(other, _Item):
            return self.key < other.key
        return super().__lt__(other)


class FrameTable(QTableWidget):
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
        self.frame = pd.DataFrame()
        self.columns: list[str] = []
        self.setSelectionBehavior(QAbstractItemView.SelectRows)
        self.setSelectionMode(QAbstractItemView.ExtendedSelection)  # Ctrl/Shift: rows
        self.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.verticalHeader().setVisible(False)
        self.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeToContents)
        self.setSortingEnabled(True)
        self.cellClicked.connect(self._on_click)

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
        self.columns = columns
        header = self.horizontalHeader()
        sort_column, order = header.sortIndicatorSection(), header.sortIndicatorOrder()
        self.frame = frame
        self.setSortingEnabled(False)
        self.clearContents()
        self.setRowCount(len(frame))
        self.setColumnCount(len(columns))
        self.setHorizontalHeaderLabels([(headers or {}).get(c, c) for c in columns])
        for c, name in enumerate(columns):
            for r, value in enumerate(frame[name].to_numpy()):
                self.setItem(r, c, _Item(value))
        self.setSortingEnabled(True)
        if 0 <= sort_column < len(columns):
            self.sortByColumn(sort_column, order)

    def row_id(self, row: int) -> int | None:
        """The id of the row shown at ``row`` (after sorting)."""
        if self.id_column not in self.columns:
            return None
        item = self.item(row, self.columns.index(self.id_column))
        return None if item is None else int(item.key[1])

    def select_id(self, value: int) -> None:
        """Select the row whose id is ``value`` (no signal)."""
        for row in range(self.rowCount()):
            if self.row_id(row) == value:
                self.blockSignals(True)
                self.selectRow(row)
                self.blockSignals(False)
                self.scrollToItem(self.item(row, 0))
                return

    def sort_by(self, column: str, descending: bool = True) -> None:
        """Sort by a column of the frame (no-op when it is not shown)."""
        if column in self.columns:
            order = Qt.DescendingOrder if descending else Qt.AscendingOrder
            self.sortByColumn(self.columns.index(column), order)

    def _on_click(self, row: int, _column: int) -> None:
        value = self.row_id(row)
        if value is not None:
            self.row_clicked.emit(value)
