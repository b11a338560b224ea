"""The ecosystem's formats in napari: OME-Zarr layers, features, commands, menus, packages."""

from __future__ import annotations

import json
import urllib.request

import numpy as np
import pandas as pd
import pytest
import torch
from napari.plugins.io import save_layers
from napari.utils import DirectLabelColormap
from napari.utils.notifications import notification_manager

from napari_anatomics.analyze.measure import measure
from napari_anatomics.io.omezarr import open_multiscale, write_ome_zarr
from napari_anatomics.io.samples import synthetic_sbfsem
from napari_anatomics.models import build_network, plan_architecture
from napari_anatomics.models.config import ModelConfig
from napari_anatomics.models.store import load_model, save_model
from napari_anatomics.napari import commands
from napari_anatomics.napari.features import BY_ID, table_features, value_colormap
from napari_anatomics.napari.io import get_reader, write_labels_ome_zarr
from napari_anatomics.napari.layers import add_volume
from napari_anatomics.napari.model_picker import ModelCombo, prepare_torch
from napari_anatomics.napari.panels.export import ExportWidget
from napari_anatomics.napari.panels.proofread import ProofreadWidget
from napari_anatomics.napari.panels.train import TrainWidget

prepare_torch()

HANG_MS = 120_000
VOXEL = (40.0, 10.0, 10.0)


@pytest.fixture(scope="module")
def stack():
    return synthetic_sbfsem((6, 300, 300), 8, voxel_size=VOXEL, seed=5)


# ---- OME-Zarr ------------------------------------------------------------------------------
def test_reader_opens_ome_zarr_as_multiscale_image_and_level0_labels(tmp_path, stack):
    store = write_ome_zarr(stack.image, tmp_path / "s.ome.zarr", voxel_size=VOXEL)
    table = measure(stack.labels, VOXEL)
    rows = [
        {"label-value": int(i), "volume_um3": float(v)}
        for i, v in zip(table["id"], table["volume_um3"])
    ]
    write_ome_zarr(
        stack.labels, store / "labels" / "cells", voxel_size=VOXEL, labels=True, properties=rows
    )
    reader = get_reader(str(store))
    (image, image_kw, image_kind), (labels, labels_kw, labels_kind) = reader(str(store))
    assert (image_kind, labels_kind) == ("image", "labels")
    # every level, one multiscale layer, scaled in nm by level 0
    assert image_kw["multiscale"] is True and len(image) >= 2
    assert [tuple(a.shape) for a in image] == [(6, 300, 300), (6, 150, 150)]
    assert image_kw["scale"] == VOXEL
    np.testing.assert_array_equal(np.asarray(image[1]), np.asarray(open_multiscale(store)[1].data))
    # the labels at level 0, in memory (paintable), with their properties as features
    assert isinstance(labels, np.ndarray) and "multiscale" not in labels_kw
    np.testing.assert_array_equal(labels, stack.labels)
    assert labels_kw["scale"] == VOXEL and labels_kw["name"] == "cells"
    features = labels_kw["features"]
    assert features["label"].tolist() == table["id"].tolist()
    assert features["volume_um3"].tolist() == pytest.approx(table["volume_um3"].tolist())
    # a labels image opened on its own is one Labels layer
    cells = str(store / "labels" / "cells")
    ((alone, _, kind),) = get_reader(cells)(cells)
    assert kind == "labels"
    np.testing.assert_array_equal(alone, stack.labels)


def test_viewer_shows_the_pyramid_and_the_writer_round_trips(make_napari_viewer, tmp_path, stack):
    viewer = make_napari_viewer()
    store = write_ome_zarr(stack.image, tmp_path / "s.ome.zarr", voxel_size=VOXEL)
    (layer,) = viewer.open(str(store), plugin="napari-anatomics")
    assert layer.multiscale and len(layer.data) == 2
    assert tuple(layer.scale) == VOXEL
    labels = viewer.add_labels(stack.labels, name="cells", scale=VOXEL)
    labels.features = table_features(measure(stack.labels, VOXEL))
    # saved inside the image: napari picks the OME-Zarr writer by the longest extension
    target = store / "labels" / "cells.ome.zarr"
    written = save_layers(str(target), [labels], plugin="napari-anatomics")
    assert written == [str(target)]
    back = get_reader(str(store))(str(store))
    assert [kind for _, _, kind in back] == ["image", "labels"]
    np.testing.assert_array_equal(back[1][0], stack.labels)
    assert back[1][1]["features"]["volume_um3"].tolist() == pytest.approx(
        labels.features["volume_um3"].tolist()
    )
    # the writer on its own: levels in nm
    path = str(tmp_path / "own.ome.zarr")
    assert write_labels_ome_zarr(path, stack.labels, {"scale": VOXEL, "name": "own"}) == [path]
    assert [v.voxel_size for v in open_multiscale(path)][:2] == [VOXEL, (40.0, 20.0, 20.0)]


# ---- features and colouring ----------------------------------------------------------------
def test_features_hold_the_table_in_um_and_colour_follows_a_column():
    table = pd.DataFrame(
        {
            "id": [3, 7],
            "volume_um3": [0.5, 2.0],
            "bbox_z0": [0, 1],
            "centroid_z": [1.0, 2.0],
            "centroid_z_um": [0.04, 0.08],
            "class": ["a", "b"],
        }
    )
    features = table_features(table)
    assert list(features.columns) == ["index", "label", "volume_um3", "centroid_z_um", "class"]
    assert features["label"].tolist() == features["index"].tolist() == [3, 7]
    colours = value_colormap(features, "volume_um3")
    assert isinstance(colours, DirectLabelColormap)
    np.testing.assert_allclose(colours.color_dict[0], 0)  # background transparent
    low, high = colours.color_dict[3], colours.color_dict[7]
    np.testing.assert_allclose(low[:3], [0.267004, 0.004874, 0.329415], atol=1e-5)  # viridis 0
    np.testing.assert_allclose(high[:3], [0.993248, 0.906157, 0.143936], atol=1e-5)  # viridis 1


def test_measure_merge_and_colour_by_in_the_proofread_panel(make_napari_viewer, qtbot, stack):
    viewer = make_napari_viewer()
    layer = viewer.add_labels(stack.labels.copy(), name="cells", scale=VOXEL)
    widget = ProofreadWidget(viewer)
    qtbot.addWidget(widget)
    ids = sorted(set(np.unique(stack.labels)) - {0})
    qtbot.waitUntil(lambda: len(layer.features) == len(ids), timeout=HANG_MS)
    assert layer.features["label"].tolist() == ids
    expected = measure(stack.labels, VOXEL)
    assert layer.features["volume_um3"].tolist() == pytest.approx(expected["volume_um3"].tolist())
    # napari's status bar reads the row of the object under the cursor
    z, y, x = np.argwhere(layer.data == ids[0])[0]
    viewer.dims.set_point(0, z * VOXEL[0])  # on the object's slice
    props = layer._get_properties(layer.data_to_world((z, y, x)), world=True)
    assert f"label: {ids[0]}" in props
    # colour by volume, then by id again
    assert widget.colour_by.findText("volume_um3") >= 0
    original = layer.colormap
    widget.colour_by.setCurrentText("volume_um3")
    assert isinstance(layer.colormap, DirectLabelColormap)
    largest = int(expected.sort_values("volume_um3").iloc[-1]["id"])
    np.testing.assert_allclose(
        layer.colormap.color_dict[largest][:3], [0.993248, 0.906157, 0.143936], atol=1e-5
    )
    # a merge: one row fewer, the kept object measured again (the colour follows)
    a, b = ids[:2]
    volume = float(expected.set_index("id").loc[[a, b], "volume_um3"].sum())
    assert widget.merge_ids([a, b]) == 1
    qtbot.waitUntil(lambda: len(layer.features) == len(ids) - 1, timeout=HANG_MS)
    qtbot.waitUntil(
        lambda: layer.features.set_index("label").loc[a, "volume_um3"] == pytest.approx(volume),
        timeout=HANG_MS,
    )
    assert b not in set(layer.features["label"])
    assert isinstance(layer.colormap, DirectLabelColormap)
    widget.colour_by.setCurrentText(BY_ID)
    assert layer.colormap is original


# ---- commands and menus --------------------------------------------------------------------
def test_script_commands_give_exact_results():
    labels = np.zeros((3, 10, 10), dtype=np.uint16)
    labels[1, 2:4, 2:4] = 1  # 4 voxels, inside
    labels[:, 4:8, 4:8] = 2  # 48 voxels, inside
    labels[1, 0:2, 5:7] = 3  # 4 voxels, touching y = 0
    small = commands.remove_small_objects(labels, min_voxels=5)
    assert sorted(np.unique(small)) == [0, 2] and labels.max() == 3  # a copy
    np.testing.assert_array_equal(small == 2, labels == 2)
    border = commands.remove_border_objects(labels)
    assert sorted(np.unique(border)) == [0, 1, 2]
    assert sorted(np.unique(commands.remove_border_objects(labels, all_faces=True))) == [0, 1]
    # one foreground probability: its connected components, background where p < 0.5
    p = np.zeros((4, 12, 12), dtype=np.float32)
    p[1:3, 1:4, 1:4] = 0.9
    p[1:3, 7:11, 7:11] = 0.8
    out = commands.postprocess_probabilities(p, min_size=0)
    assert out.dtype == np.uint32 and sorted(np.unique(out)) == [0, 1, 2]
    assert (out[1:3, 1:4, 1:4] > 0).all() and ((out > 0) == (p >= 0.5)).all()
    assert len(np.unique(out[1:3, 1:4, 1:4])) == 1
    assert commands.postprocess_probabilities(p, min_size=20).max() == 1  # 18 voxels dropped


def test_menu_commands_run_from_the_layers_menu(make_napari_viewer, stack):
    from napari._app_model import get_app_model

    viewer = make_napari_viewer()
    layer = viewer.add_labels(stack.labels.copy(), name="cells", scale=VOXEL)
    app = get_app_model()
    menus = {
        m: [i.command.id for i in app.menus.get_menu(m) if hasattr(i, "command")]
        for m in ("napari/layers/measure", "napari/layers/segment")
    }
    assert "napari-anatomics.measure_labels" in menus["napari/layers/measure"]
    assert "napari-anatomics.label_probabilities" in menus["napari/layers/segment"]
    viewer.layers.selection.active = layer
    app.commands.execute_command("napari-anatomics.measure_labels").result()
    expected = measure(stack.labels, VOXEL)
    assert layer.features["label"].tolist() == expected["id"].tolist()
    touching = set(expected.loc[expected["touches_border_xy"], "id"])
    app.commands.execute_command("napari-anatomics.remove_border_labels").result()
    assert touching and not np.isin(layer.data, list(touching)).any()
    assert set(layer.features["label"]) == set(expected["id"]) - touching
    layer.undo()  # one undo step
    np.testing.assert_array_equal(layer.data, stack.labels)
    # Segment: a probability image becomes a new Labels layer in its scale
    probability = viewer.add_image((stack.labels > 0).astype(np.float32), scale=VOXEL, name="p")
    viewer.layers.selection.active = probability
    app.commands.execute_command("napari-anatomics.label_probabilities").result()
    objects = viewer.layers["p objects"]
    assert tuple(objects.scale) == VOXEL
    np.testing.assert_array_equal(objects.data > 0, stack.labels > 0)


# ---- BioImage.IO ---------------------------------------------------------------------------
def _model(folder):
    torch.manual_seed(0)
    arch = plan_architecture("unet2d", 2, VOXEL, (1, 64, 64), width=8, depth=3)
    config = ModelConfig(
        task="instance",
        classes=["cell"],
        window=(1, 64, 64),
        voxel_size=VOXEL,
        architecture=arch,
        targets=["foreground", "boundary"],
        downsample=(1, 1, 1),
        normalization={"mean": 120.0, "std": 30.0},
    )
    return save_model(folder, build_network(config).eval(), config)


def test_train_exports_a_package_the_picker_imports(make_napari_viewer, qtbot, tmp_path, stack):
    pytest.importorskip("bioimageio.core")
    from bioimageio.spec import load_description

    viewer = make_napari_viewer()
    add_volume(viewer, _volume(stack), "image", name="image")
    widget = TrainWidget(viewer)
    qtbot.addWidget(widget)
    assert widget.export_package(str(tmp_path / "none.zip")) is None  # no model yet
    widget.model_folder = str(_model(tmp_path / "cells"))
    worker = widget.export_package(str(tmp_path / "cells"))
    with qtbot.waitSignal(worker.finished, timeout=HANG_MS):
        pass
    package = tmp_path / "cells.zip"
    assert "test input: the image" in widget.status.text(), widget.status.text()
    descr = load_description(package)
    assert type(descr).__name__ == "ModelDescr", descr
    # the test input is the image's middle window
    raw = np.load(descr.inputs[0].test_tensor.get_reader())
    np.testing.assert_array_equal(raw[0, 0], stack.image[2, 118:182, 118:182])

    picker = ModelCombo()
    qtbot.addWidget(picker)
    folder = picker.import_package(package)
    assert folder == tmp_path / "cells-2" and picker.folder() == str(folder)
    batch = torch.randn(1, 1, 1, 64, 64)
    assert torch.equal(
        load_model(folder, "cpu")(batch), load_model(tmp_path / "cells", "cpu")(batch)
    )
    bad = tmp_path / "bad.zip"
    bad.write_bytes(b"not a zip")
    assert picker.import_package(bad) is None and picker.folder() == str(folder)
    assert "not a valid BioImage.IO model package" in picker.error
    assert picker.error in notification_manager.records[-1].message


def _volume(stack):
    from napari_anatomics.core.volume import Volume

    return Volume(stack.image, VOXEL, "file", "", "image")


# ---- Neuroglancer --------------------------------------------------------------------------
def test_view_in_neuroglancer_serves_the_layers_and_their_measurements(
    make_napari_viewer, qtbot, stack
):
    pytest.importorskip("neuroglancer")
    viewer = make_napari_viewer()
    add_volume(viewer, _volume(stack), "image", name="EM")
    labels = viewer.add_labels(stack.labels, name="cells", scale=VOXEL)
    table = measure(stack.labels, VOXEL)
    labels.features = table_features(table)
    widget = ExportWidget(viewer)
    qtbot.addWidget(widget)
    assert widget.view_in_neuroglancer(open_browser=False) is None  # no image chosen
    assert "choose an image layer" in widget.status.text()
    widget.image_combo.set_layer(viewer.layers["EM"])
    url = widget.view_in_neuroglancer(open_browser=False)
    assert url.startswith("http://127.0.0.1:") and url in widget.view_link.text()
    assert widget.view.layers == ["EM", "cells"]
    sources = widget.view.viewer.state.layers["cells"].source
    props = next(s.url for s in sources if str(s.url).startswith("precomputed://"))
    info = json.loads(
        urllib.request.urlopen(props.removeprefix("precomputed://") + "/info").read()
    )
    assert info["inline"]["ids"] == [str(i) for i in table["id"]]
    widget.close()  # closing the panel stops serving
    assert widget.view is None
