"""Neuroglancer: serve a stack and its labels to a local web viewer, lazily.

For volumes too big to browse comfortably in napari and for sharing a view,
:func:`serve` starts Neuroglancer's Python server (the ``neuroglancer`` package,
its client bundled: nothing is fetched from the internet) with the image and
each labels volume as layers. Chunks are read on demand from the lazy
:class:`~napari_anatomics.core.volume.Volume` (zarr, OME-Zarr, tif, h5), in
nanometres.

Per-object measurements (the stats table: volume in µm³, class...) are served as
Neuroglancer *segment properties* next to each labels layer, so hovering an
object shows them and the segment list can be searched and sorted by them.
"""

from __future__ import annotations

import json
import shutil
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..core.volume import Volume

#: Stats-table columns shown as numbers on hover, in this order when present.
NUMBER_COLUMNS = ("volume_um3", "surface_um2", "voxels", "mean_intensity")


@dataclass
class NeuroglancerView:
    """A running viewer: its link, its layer names, and how to stop it.

    Attributes
    ----------
    url : str
        Open it in a browser (WebGL 2) on this machine.
    layers : list of str
        The layers shown, image first.
    """

    url: str
    layers: list[str]
    viewer: Any = field(repr=False)
    _servers: list[ThreadingHTTPServer] = field(default_factory=list, repr=False)
    _scratch: Path | None = field(default=None, repr=False)

    def close(self) -> None:
        """Stop serving the segment properties and forget the viewer's layers."""
        for server in self._servers:
            server.shutdown()
            server.server_close()
        with self.viewer.txn() as state:
            state.layers.clear()
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)


class _CorsHandler(SimpleHTTPRequestHandler):
    """Static files with the CORS header the viewer's page needs; no request log."""

    def end_headers(self) -> None:
        self.send_header("Access-Control-Allow-Origin", "*")
        super().end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def segment_properties(table: pd.DataFrame) -> dict[str, Any]:
    """Neuroglancer's ``neuroglancer_segment_properties`` info for a stats table.

    Parameters
    ----------
    table : DataFrame
        One row per object with an ``id`` column (as :func:`~napari_anatomics.analyze.
        measure.measure` writes it) and measurements such as ``volume_um3`` and ``class``.

    Returns
    -------
    dict
        Inline properties: a label per object ("#12 0.84 µm³ mito"), its numbers, and
        its class as a tag when the table has one.
    """
    if "id" not in table:
        raise ValueError("the stats table needs an 'id' column (one row per object)")
    ids = [str(int(i)) for i in table["id"]]
    words = []
    for _, row in table.iterrows():
        text = f"#{int(row['id'])}"
        if "volume_um3" in table:
            text += f" {row['volume_um3']:.3g} µm³"
        if "class" in table:
            text += f" {row['class']}"
        words.append(text)
    properties: list[dict[str, Any]] = [{"id": "label", "type": "label", "values": words}]
    for column in NUMBER_COLUMNS:
        if column in table:
            values = table[column].astype(float).round(6).tolist()
            properties.append(
                {"id": column, "type": "number", "data_type": "float32", "values": values}
            )
    if "class" in table:
        tags = sorted({str(c) for c in table["class"]})
        properties.append(
            {
                "id": "tags",
                "type": "tags",
                "tags": tags,
                "values": [[tags.index(str(c))] for c in table["class"]],
            }
        )
    return {
        "@type": "neuroglancer_segment_properties",
        "inline": {"ids": ids, "properties": properties},
    }


class _Chunks:
    """A volume's array as Neuroglancer reads it: each request computed to numpy."""

    def __init__(self, data: Any) -> None:
        self.data, self.shape, self.dtype = data, tuple(data.shape), np.dtype(data.dtype)

    def __getitem__(self, key: Any) -> np.ndarray:
        return np.asarray(self.data[key])


def _serve_folder(folder: Path, bind: str) -> ThreadingHTTPServer:
    handler = partial(_CorsHandler, directory=str(folder))
    server = ThreadingHTTPServer((bind, 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def _dimensions(neuroglancer: Any, volume: Volume) -> Any:
    return neuroglancer.CoordinateSpace(
        names=["z", "y", "x"], units="nm", scales=[float(v) for v in volume.voxel_size]
    )


def serve(
    image: Volume,
    labels: Sequence[Volume] = (),
    tables: Sequence[pd.DataFrame | None] = (),
    *,
    bind: str = "127.0.0.1",
    port: int = 0,
    workdir: str | Path | None = None,
) -> NeuroglancerView:
    """Show an image and its labels in a local Neuroglancer viewer.

    Parameters
    ----------
    image : Volume
        The grey-level stack (read lazily, chunk by chunk).
    labels : sequence of Volume
        Labels volumes of the same shape, one segmentation layer each.
    tables : sequence of DataFrame or None
        A stats table per labels volume (or None): served as segment properties.
    bind : str
        Address to serve on; ``0.0.0.0`` shares the view on the network.
    port : int
        Port of the viewer (0: any free one).
    workdir : str or Path, optional
        Where the segment-property files are written (default: a temporary folder,
        removed by :meth:`NeuroglancerView.close`).

    Returns
    -------
    NeuroglancerView
        With the URL to open.
    """
    try:
        import neuroglancer
    except ImportError:
        raise ImportError(
            "the Neuroglancer view needs the neuroglancer package: "
            "pip install 'napari-anatomics[neuroglancer]'"
        ) from None
    import tempfile

    if image.ndim != 3:
        raise ValueError(f"{image.name}: the viewer needs a 3D stack (z, y, x), not {image.shape}")
    for volume in labels:
        if tuple(volume.shape) != tuple(image.shape):
            raise ValueError(
                f"{volume.name}: shape {tuple(volume.shape)} differs from the image "
                f"{tuple(image.shape)}; give labels made for this stack"
            )
    neuroglancer.set_server_bind_address(bind, port)
    viewer = neuroglancer.Viewer()
    scratch = None if workdir else Path(tempfile.mkdtemp(prefix="anatomics-view-"))
    root = Path(workdir) if workdir else scratch
    servers: list[ThreadingHTTPServer] = []
    names = [image.name or "image"]
    with viewer.txn() as state:
        z, y, x = (float(v) for v in image.voxel_size)  # shown x, y, z: "xy" is a section
        state.dimensions = neuroglancer.CoordinateSpace(
            names=["x", "y", "z"], units="nm", scales=[x, y, z]
        )
        state.layers[names[0]] = neuroglancer.ImageLayer(
            source=neuroglancer.LocalVolume(
                _Chunks(image.data),
                dimensions=_dimensions(neuroglancer, image),
                volume_type="image",
            )
        )
        for i, volume in enumerate(labels):
            name = volume.name or f"labels {i + 1}"
            if name in names:
                name = f"{name} ({i + 1})"
            sources: list[Any] = [
                neuroglancer.LocalVolume(
                    _Chunks(volume.data),
                    dimensions=_dimensions(neuroglancer, volume),
                    volume_type="segmentation",
                )
            ]
            table = tables[i] if i < len(tables) else None
            if table is not None and len(table):
                folder = root / f"properties_{i}"
                folder.mkdir(parents=True, exist_ok=True)
                (folder / "info").write_text(json.dumps(segment_properties(table)))
                server = _serve_folder(folder, bind)
                servers.append(server)
                host = "127.0.0.1" if bind in ("0.0.0.0", "") else bind
                sources.append(f"precomputed://http://{host}:{server.server_port}")
            state.layers[name] = neuroglancer.SegmentationLayer(source=sources, tab="segments")
            names.append(name)
        state.position = [s / 2 for s in reversed(image.shape)]
        state.layout = "xy" if image.shape[0] < 64 else "4panel"  # thin stacks: the sections
        if len(names) > 1:  # the first labels' panel open: its objects, searchable
            state.selected_layer.layer = names[1]
            state.selected_layer.visible = True
    return NeuroglancerView(str(viewer), names, viewer, servers, scratch)

