"""Light plots painted with QPainter: a live line plot and a histogram.

They repaint in about a millisecond, so a training run can add a point to
the loss curve at every iteration without stalling the viewer (a matplotlib
redraw takes tens of milliseconds).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from qtpy.QtCore import QPointF, QRectF, QSize, Qt
from qtpy.QtGui import QColor, QPainter, QPainterPath, QPen
from qtpy.QtWidgets import QSizePolicy, QWidget

#: Series colours (napari's dark theme friendly).
COLORS = ("#4fc3f7", "#ffb74d", "#81c784", "#e57373", "#ba68c8")


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """Round tick values covering [lo, hi], about ``count`` of them."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return []
    if hi <= lo:
        hi = lo + (abs(lo) or 1.0)
    raw = (hi - lo) / max(count, 1)
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    first = math.ceil(lo / step - 1e-9) * step
    ticks = []
    value = first
    while value <= hi + step * 1e-9:
        ticks.append(0.0 if abs(value) < step * 1e-9 else value)
        value += step
    return ticks


def _fmt(value: float) -> str:
    if value != 0 and (abs(value) >= 1e5 or abs(value) < 1e-3):
        return f"{value:.1e}"
    return f"{value:.4g}"


class _Axes(QWidget):
    """Axes frame, ticks and labels shared by the plots."""

    def __init__(self, title: str = "", xlabel: str = "", ylabel: str = "") -> None:
        super().__init__()
        self.title, self.xlabel, self.ylabel = title, xlabel, ylabel
        self.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Expanding)
        self.setMinimumHeight(140)

    def sizeHint(self) -> QSize:
        return QSize(320, 200)

    def _limits(self) -> tuple[float, float, float, float] | None:
        raise NotImplementedError

    def _plot_rect(self) -> QRectF:
        metrics = self.fontMetrics()
        left = metrics.horizontalAdvance("-0.000") + 10
        top = metrics.height() + 6 if self.title else 8
        bottom = 2 * metrics.height() + 8
        width = max(self.width() - left - 10, 10)
        return QRectF(left, top, width, max(self.height() - top - bottom, 10))

    def _foreground(self) -> QColor:
        return self.palette().color(self.foregroundRole())

    def paintEvent(self, event) -> None:
        painter = QPainter(self)
        painter.setRenderHint(QPainter.Antialiasing)
        fg = self._foreground()
        rect = self._plot_rect()
        metrics = self.fontMetrics()
        if self.title:
            painter.setPen(fg)
            title_rect = QRectF(0, 2, self.width(), metrics.height())
            painter.drawText(title_rect, Qt.AlignCenter, self.title)
        limits = self._limits()
        painter.setPen(QPen(fg, 1))
        painter.drawRect(rect)
        if limits is None:
            painter.drawText(rect, Qt.AlignCenter, "no data yet")
            painter.end()
            return
        x0, x1, y0, y1 = limits
        sx = rect.width() / ((x1 - x0) or 1.0)
        sy = rect.height() / ((y1 - y0) or 1.0)

        def to_px(x: float, y: float) -> QPointF:
            return QPointF(rect.left() + (x - x0) * sx, rect.bottom() - (y - y0) * sy)

        grid = QColor(fg)
        grid.setAlpha(40)
        for tick in nice_ticks(x0, x1, max(2, int(rect.width() // 70))):
            if x0 <= tick <= x1:
                p = to_px(tick, y0)
                painter.setPen(QPen(grid, 1))
                painter.drawLine(QPointF(p.x(), rect.top()), QPointF(p.x(), rect.bottom()))
                painter.setPen(fg)
                text = _fmt(tick)
                w = metrics.horizontalAdvance(text)
                baseline = rect.bottom() + metrics.ascent() + 3
                painter.drawText(QPointF(p.x() - w / 2, baseline), text)
        for tick in nice_ticks(y0, y1, max(2, int(rect.height() // 35))):
            if y0 <= tick <= y1:
                p = to_px(x0, tick)
                painter.setPen(QPen(grid, 1))
                painter.drawLine(QPointF(rect.left(), p.y()), QPointF(rect.right(), p.y()))
                painter.setPen(fg)
                text = _fmt(tick)
                w = metrics.horizontalAdvance(text)
                baseline = p.y() + metrics.ascent() / 2 - 1
                painter.drawText(QPointF(rect.left() - w - 4, baseline), text)
        painter.setPen(fg)
        if self.xlabel:
            height = metrics.height()
            label_rect = QRectF(rect.left(), self.height() - height - 2, rect.width(), height)
            painter.drawText(label_rect, Qt.AlignCenter, self.xlabel)
        painter.save()
        painter.setClipRect(rect.adjusted(-1, -1, 1, 1))
        self._draw_data(painter, to_px, limits)
        painter.restore()
        if self.ylabel:
            painter.drawText(rect.adjusted(6, 4, -6, -4), Qt.AlignLeft | Qt.AlignTop, self.ylabel)
        painter.end()

    def _draw_data(self, painter: QPainter, to_px, limits) -> None:
        raise NotImplementedError


class LinePlot(_Axes):
    """A plot of one or more series that grow point by point (e.g. a loss curve).

    Points are stored in numpy buffers; ``append`` only schedules a repaint,
    which Qt merges, so it is cheap to call at every training iteration.
    """

    def __init__(self, title: str = "", xlabel: str = "", ylabel: str = "") -> None:
        super().__init__(title, xlabel, ylabel)
        self._series: dict[str, list[tuple[float, float]]] = {}

    def clear(self) -> None:
        """Remove every point."""
        self._series.clear()
        self.update()

    def append(self, name: str, x: float, y: float) -> None:
        """Add one point to series ``name`` (non-finite values are skipped)."""
        if math.isfinite(x) and math.isfinite(y):
            self._series.setdefault(name, []).append((float(x), float(y)))
            self.update()

    def series(self, name: str) -> np.ndarray:
        """The points of one series as an (n, 2) array."""
        return np.asarray(self._series.get(name, []), dtype=float).reshape(-1, 2)

    def _limits(self) -> tuple[float, float, float, float] | None:
        points = [p for pts in self._series.values() for p in pts]
        if not points:
            return None
        arr = np.asarray(points)
        x0, x1 = float(arr[:, 0].min()), float(arr[:, 0].max())
        y0, y1 = float(arr[:, 1].min()), float(arr[:, 1].max())
        pad = (y1 - y0) * 0.05 or abs(y1) * 0.1 or 1.0
        return x0, (x1 if x1 > x0 else x0 + 1), y0 - pad, y1 + pad

    def _draw_data(self, painter: QPainter, to_px, limits) -> None:
        metrics = self.fontMetrics()
        for k, (name, points) in enumerate(self._series.items()):
            color = QColor(COLORS[k % len(COLORS)])
            painter.setPen(QPen(color, 1.6))
            if len(points) == 1:
                painter.setBrush(color)
                painter.drawEllipse(to_px(*points[0]), 2.5, 2.5)
            else:
                path = QPainterPath(to_px(*points[0]))
                for point in points[1:]:
                    path.lineTo(to_px(*point))
                painter.setBrush(Qt.NoBrush)
                painter.drawPath(path)
            rect = self._plot_rect()
            text = f"{name} {_fmt(points[-1][1])}"
            x = rect.right() - metrics.horizontalAdvance(text) - 6
            painter.drawText(QPointF(x, rect.top() + (k + 1) * metrics.height()), text)


class HistogramPlot(_Axes):
    """A histogram of values, with an optional vertical marker (e.g. a size cut-off)."""

    def __init__(self, title: str = "", xlabel: str = "", ylabel: str = "count") -> None:
        super().__init__(title, xlabel, ylabel)
        self.counts = np.zeros(0, dtype=int)
        self.edges = np.zeros(0)
        self._marker: float | None = None

    def set_values(self, values: Sequence[float], bins: int = 30) -> None:
        """Histogram ``values`` into ``bins`` equal bins."""
        values = np.asarray(values, dtype=float)
        values = values[np.isfinite(values)]
        if values.size == 0:
            self.counts, self.edges = np.zeros(0, dtype=int), np.zeros(0)
        else:
            self.counts, self.edges = np.histogram(values, bins=bins)
        self.update()

    def set_marker(self, value: float | None) -> None:
        """Draw a vertical line at ``value`` (None removes it)."""
        self._marker = value
        self.update()

    def _limits(self) -> tuple[float, float, float, float] | None:
        if self.counts.size == 0:
            return None
        return float(self.edges[0]), float(self.edges[-1]), 0.0, float(self.counts.max()) * 1.08

    def _draw_data(self, painter: QPainter, to_px, limits) -> None:
        color = QColor(COLORS[0])
        fill = QColor(color)
        fill.setAlpha(150)
        painter.setPen(QPen(color, 1))
        painter.setBrush(fill)
        for count, lo, hi in zip(self.counts, self.edges[:-1], self.edges[1:]):
            if count:
                painter.drawRect(QRectF(to_px(lo, count), to_px(hi, 0)))
        if self._marker is not None:
            painter.setPen(QPen(QColor(COLORS[3]), 2, Qt.DashLine))
            top, bottom = to_px(self._marker, limits[3]), to_px(self._marker, 0)
            painter.drawLine(top, bottom)


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
