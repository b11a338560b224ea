"""Neuroglancer view: segment properties from the stats table, and the page in a real browser."""

from __future__ import annotations

import json
import shutil
import urllib.request

import pandas as pd
import pytest

from napari_anatomics.analyze.measure import measure
from napari_anatomics.core.volume import Volume
from napari_anatomics.io.samples import synthetic_sbfsem
from napari_anatomics.tasks.view import segment_properties, serve

pytest.importorskip("neuroglancer")
VOXEL = (40.0, 10.0, 10.0)
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def test_segment_properties_from_the_stats_table():
    table = pd.DataFrame(
        {"id": [3, 7], "volume_um3": [0.5, 1.25], "voxels": [50, 125], "class": ["mito", "er"]}
    )
    info = segment_properties(table)
    assert info["@type"] == "neuroglancer_segment_properties"
    inline = info["inline"]
    assert inline["ids"] == ["3", "7"]
    props = {p["id"]: p for p in inline["properties"]}
    assert props["label"]["values"] == ["#3 0.5 µm³ mito", "#7 1.25 µm³ er"]
    assert props["volume_um3"]["values"] == [0.5, 1.25]
    assert props["voxels"]["type"] == "number"
    assert props["tags"]["tags"] == ["er", "mito"]
    assert props["tags"]["values"] == [[1], [0]]
    with pytest.raises(ValueError, match="'id' column"):
        segment_properties(table.drop(columns="id"))


@pytest.fixture
def served():
    s = synthetic_sbfsem((16, 192, 192), 8, voxel_size=VOXEL, seed=2)
    image = Volume(s.image, VOXEL, "user", "", "EM image")
    labels = Volume(s.labels, VOXEL, "user", "", "chloroplasts")
    table = measure(s.labels, VOXEL)
    view = serve(image, [labels], [table])
    yield view, table
    view.close()


def test_serve_lists_layers_and_serves_properties(served):
    view, table = served
    assert view.layers == ["EM image", "chloroplasts"]
    state = view.viewer.state
    assert list(state.dimensions.names) == ["x", "y", "z"]  # the "xy" panel shows a section
    assert [round(s * 1e9, 3) for s in state.dimensions.scales] == [10.0, 10.0, 40.0]
    assert state.layout.type == "xy"  # a thin stack opens on its sections
    sources = state.layers["chloroplasts"].source
    url = next(s.url for s in sources if str(s.url).startswith("precomputed://"))
    info = json.loads(urllib.request.urlopen(url.removeprefix("precomputed://") + "/info").read())
    assert info["inline"]["ids"] == [str(i) for i in table["id"]]


def test_other_shapes_are_refused():
    s = synthetic_sbfsem((8, 64, 64), 3, voxel_size=VOXEL, seed=1)
    image = Volume(s.image, VOXEL, "user", "", "image")
    small = Volume(s.labels[:, :32], VOXEL, "user", "", "cut")
    with pytest.raises(ValueError, match="cut: shape"):
        serve(image, [small])


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (CI installs it)")
def test_the_page_loads_in_a_headless_browser(served, tmp_path):
    from playwright.sync_api import sync_playwright

    view, table = served
    shot = tmp_path / "neuroglancer.png"
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=["--use-angle=swiftshader", "--enable-unsafe-swiftshader"],
        )
        page = browser.new_page(viewport={"width": 1200, "height": 800})
        page.goto(view.url)
        page.wait_for_selector(".neuroglancer-layer-item-label", timeout=60_000)
        names = page.locator(".neuroglancer-layer-item-label").all_inner_texts()
        first = f"#{int(table['id'].iloc[0])} "
        page.wait_for_selector(f"text={first}", timeout=60_000)  # properties in the list
        page.screenshot(path=str(shot))
        browser.close()
    assert names == ["EM image", "chloroplasts"]
    assert shot.stat().st_size > 10_000


def test_cli_view_prints_the_link_and_stops_on_ctrl_c(tmp_path, monkeypatch, capsys):
    import tifffile

    from napari_anatomics.cli import _view, main

    s = synthetic_sbfsem((8, 96, 96), 4, voxel_size=VOXEL, seed=4)
    tifffile.imwrite(tmp_path / "image.tif", s.image)
    tifffile.imwrite(tmp_path / "labels.tif", s.labels)
    seen = {}

    def interrupt():
        seen["url"] = capsys.readouterr().out
        raise KeyboardInterrupt

    monkeypatch.setattr(_view, "serve_forever", interrupt)
    args = ["view", str(tmp_path / "image.tif"), str(tmp_path / "labels.tif")]
    assert main([*args, "--voxel-size", "10,10,40"]) == 130
    assert "Neuroglancer: http://127.0.0.1:" in seen["url"]
    assert "layers: image.tif, labels.tif" in seen["url"]
    assert main([*args, "--stats", "a.csv", "--stats", "b.csv"]) == 1
    assert "2 --stats tables for 1 labels stacks" in capsys.readouterr().err
