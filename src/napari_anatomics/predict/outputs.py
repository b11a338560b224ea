"""Where a prediction is written: the output check and the quantized write of a region.

A prediction is a zarr group holding ``probabilities`` (C, Z, Y, X), written region
by region by :func:`~napari_anatomics.predict.tiled.predict` (in this process or on
dask workers, :mod:`~napari_anatomics.predict.distributed`, both through
:func:`write_region`), and ``labels`` from post-processing.
:func:`check_prediction_output` applies the output policy of
:mod:`napari_anatomics.io.outputs` to such a group.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..core.files import STORE_MARKERS
from ..io.outputs import OutputError, option_prefix
from ..io.probabilities import encode

#: Members of a prediction group written by ``predict`` / ``postprocess``.
PREDICTION_MEMBERS = ("probabilities", "labels")


def write_region(array: Any, region: Sequence[slice], probs: np.ndarray, output: str) -> None:
    """Quantize ``(C, *region)`` float32 probabilities (in place) and write them.

    Parameters
    ----------
    array : zarr.Array
        The (C, Z, Y, X) output.
    region : sequence of slice
        The (z, y, x) region the probabilities cover.
    probs : ndarray
        float32 probabilities; overwritten when ``output`` is "uint8".
    output : {"uint8", "float16", "float32"}
        Storage (:func:`~napari_anatomics.io.probabilities.encode`).
    """
    array[(slice(None), *region)] = encode(probs, output)


def check_prediction_output(path: str | os.PathLike, option: str = "--out") -> Path:
    """Check where a prediction (a zarr group) is about to be written.

    A new name, an empty folder or an earlier prediction (to resume, or to
    keep its labels) is fine. Refused: a file, a zarr array, a plain folder
    holding files (the zarr would be written in among them), or a zarr group
    holding other arrays (an image stack, say) that no prediction wrote.

    Parameters
    ----------
    path : str or PathLike
    option : str
        How the message names the value.

    Returns
    -------
    Path

    Raises
    ------
    OutputError
    """
    path = Path(path)
    fix = f"choose a new name ending in .zarr for {option}"
    if path.exists() and not path.is_dir():
        raise OutputError(f"{option_prefix(option)}{path}: is a file, not a zarr group; {fix}")
    if not path.is_dir():
        return path
    entries = [p.name for p in path.iterdir()]
    if not entries:
        return path
    if not any((path / name).exists() for name in STORE_MARKERS):
        raise OutputError(
            f"{option_prefix(option)}{path}: is a folder holding {len(entries)} other file(s), "
            f"not a prediction; the zarr would be written in among them: {fix}"
        )
    if (path / ".zarray").exists() or _zarr_node_type(path) == "array":
        raise OutputError(f"{option_prefix(option)}{path}: is a zarr array, not a group; {fix}")
    ours = {*PREDICTION_MEMBERS, "zarr.json", ".zgroup", ".zattrs"}
    foreign = [n for n in entries if n not in ours and not n.startswith(".")]
    if foreign and not _is_prediction(path):
        raise OutputError(
            f"{option_prefix(option)}{path}: holds other data "
            f"({', '.join(sorted(foreign)[:3])}) that no prediction wrote; {fix}"
        )
    return path


def _zarr_node_type(path: Path) -> str | None:
    import json

    meta = path / "zarr.json"
    if not meta.is_file():
        return None
    try:
        return json.loads(meta.read_text()).get("node_type")
    except (OSError, ValueError):
        return None


def _is_prediction(path: Path) -> bool:
    import zarr

    try:
        group = zarr.open_group(str(path), mode="r")
    except Exception:  # unreadable: not ours
        return False
    return "prediction" in group.attrs or any(m in group for m in PREDICTION_MEMBERS)
