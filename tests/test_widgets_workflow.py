"""The napari workflow widgets driven end to end on the bundled sample (pytest-qt)."""

from __future__ import annotations

import numpy as np
import pytest

from napari_anatomics._widgets._layers import add_volume, layer_volume
from napari_anatomics._widgets._plot import HistogramPlot, LinePlot, nice_ticks
from napari_anatomics._widgets.annotate import AnnotateWidget, annotated_slices
from napari_anatomics.samples import load_sample

#: A small crop of the sample keeps every step fast: (z, y, x).
CROP = (slice(0, 6), slice(40, 168), slice(200, 392))


@pytest.fixture
def sample_viewer(make_napari_viewer):
    """A viewer with a crop of the bundled sample as image + labels layers."""
    viewer = make_napari_viewer()
    image, labels = load_sample()
    image.data, labels.data = image.data[CROP], labels.data[CROP]
    add_volume(viewer, image, "image", name="image")
    add_volume(viewer, labels, "labels", name="labels")
    return viewer


def test_layers_carry_voxel_size(sample_viewer):
    image = sample_viewer.layers["image"]
    assert tuple(image.scale) == (40.0, 40.0, 40.0)
    volume = layer_volume(sample_viewer.layers["labels"])
    assert volume.voxel_size == (40.0, 40.0, 40.0)
    assert volume.shape == (6, 128, 192)


def test_annotate_semantic_layer_classes_and_slices(sample_viewer, qtbot):
    widget = AnnotateWidget(sample_viewer)
    qtbot.addWidget(widget)
    widget.image_combo.set_layer(sample_viewer.layers["image"])
    widget.task_combo.setCurrentText("semantic")
    widget.add_class("mitochondrion")
    assert widget.classes() == {1: "chloroplast", 2: "mitochondrion"}
    layer = widget.new_labels_layer()
    assert layer.data.shape == (6, 128, 192)
    assert tuple(layer.scale) == (40.0, 40.0, 40.0)
    assert layer.metadata["task"] == "semantic"
    assert list(layer.features["class"]) == ["background", "chloroplast", "mitochondrion"]
    widget.paint_class(1)
    assert layer.selected_label == 2 and layer.mode == "paint"
    assert widget.update_slices() == []
    # paint two slices through the layer's history, as a brush stroke would
    layer.data_setitem((np.array([1, 1]), np.array([5, 6]), np.array([7, 7])), 2)
    layer.data_setitem((np.array([4]), np.array([50]), np.array([60])), 1)
    qtbot.waitUntil(lambda: widget.slice_list.count() == 2, timeout=2000)
    assert layer.metadata["annotated_slices"] == [1, 4]
    assert "2 of 6 slices annotated" in widget.summary.text()
    assert "unknown" in widget.summary.text()


def test_annotate_instance_next_free_id(sample_viewer, qtbot):
    widget = AnnotateWidget(sample_viewer)
    qtbot.addWidget(widget)
    widget.labels_combo.set_layer(sample_viewer.layers["labels"])
    labels = sample_viewer.layers["labels"]
    assert widget.next_free_id() == int(labels.data.max()) + 1
    assert labels.selected_label == int(labels.data.max()) + 1
    counts = annotated_slices(labels.data)
    assert widget.update_slices() == [int(z) for z in np.flatnonzero(counts)]


def test_line_plot_and_histogram(qtbot):
    plot = LinePlot("loss", "iteration")
    qtbot.addWidget(plot)
    for i in range(5):
        plot.append("loss", i, 1.0 / (i + 1))
    plot.append("loss", 5, float("nan"))
    assert plot.series("loss").shape == (5, 2)
    plot.resize(300, 200)
    plot.grab()  # paints without error
    hist = HistogramPlot("volumes")
    qtbot.addWidget(hist)
    hist.set_values([1, 2, 2, 3, 10], bins=3)
    assert hist.counts.tolist() == [4, 0, 1]
    hist.grab()
    assert nice_ticks(0, 1, 5) == pytest.approx([0, 0.2, 0.4, 0.6, 0.8, 1.0])
