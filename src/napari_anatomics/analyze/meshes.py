"""Meshes and point clouds of instances, written as binary .ply.

Every object is processed inside its own bounding box padded by one voxel,
never over the whole volume. Coordinates are in **micrometres**; in memory they
are ordered (z, y, x) like the arrays (and napari's Surface/Points layers), and
in .ply files they are written as the usual x, y, z. Each .ply vertex also
carries the instance ``id`` (uint32) and a colour (uchar red, green, blue).

Files are either one per instance (``mesh_00012.ply``, ``points_00012.ply``)
or, with ``combined=True``, one file (``meshes.ply`` / ``points.ply``) where
the per-vertex ``id`` tells the objects apart.

``downscale`` keeps every n-th voxel along each axis before meshing or
sampling points (an int applies to z, y and x; give (z, y, x) factors to
spare the coarse z of SBFSEM stacks), and the spacing grows accordingly.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import ndimage as ndi
from scipy import sparse
from skimage.measure import marching_cubes

from ..core.files import atomic_path
from ..core.progress import Cancelled, CancelToken, Job, Progress, run_job
from .blockstats import unwrap as _unwrap
from .measure import index_instances


@dataclass
class Mesh:
    """A triangle mesh (or, without faces, a point cloud) of one or more instances.

    Attributes
    ----------
    vertices : ndarray (n, 3) float32
        (z, y, x) in micrometres.
    faces : ndarray (m, 3) int32
        Vertex indices per triangle; (0, 3) for point clouds.
    ids : ndarray (n,) uint32
        Instance id of each vertex.
    """

    vertices: np.ndarray
    faces: np.ndarray
    ids: np.ndarray


def instance_mesh(
    labels: Any,
    label_id: int,
    bbox: Sequence[slice],
    voxel_size: Sequence[float],
    *,
    smooth: int = 0,
    downscale: int | Sequence[int] = 1,
) -> Mesh:
    """Marching-cubes surface of one instance, computed within its padded bounding box.

    Parameters
    ----------
    labels : array (z, y, x)
        Any array supporting slicing (numpy, zarr, dask).
    label_id : int
    bbox : sequence of 3 slices
        The object's bounding box (see :func:`~napari_anatomics.analyze.measure.measure`).
    voxel_size : sequence of float
        (z, y, x) in nm.
    smooth : int
        Iterations of Taubin smoothing (shape-preserving; 0 = none).
    downscale : int or (z, y, x) ints
        Keep every n-th voxel.

    Returns
    -------
    Mesh
        Vertices in µm, in the stack's coordinates.
    """
    mask, origin, step = _object_mask(labels, label_id, bbox, downscale)
    spacing = np.asarray(voxel_size, dtype=float) * step * 1e-3
    padded = np.pad(mask, 1).astype(np.float32)
    verts, faces, _, _ = marching_cubes(padded, level=0.5, spacing=tuple(spacing))
    verts = verts + (origin - step) * np.asarray(voxel_size) * 1e-3
    if smooth:
        verts = taubin_smooth(verts, faces, smooth)
    return Mesh(
        verts.astype(np.float32),
        faces.astype(np.int32),
        np.full(len(verts), label_id, np.uint32),
    )


def instance_points(
    labels: Any,
    label_id: int,
    bbox: Sequence[slice],
    voxel_size: Sequence[float],
    *,
    surface: bool = True,
    downscale: int | Sequence[int] = 1,
) -> Mesh:
    """Voxel centres (µm) of one instance: its surface voxels, or all of them."""
    mask, origin, step = _object_mask(labels, label_id, bbox, downscale)
    if surface:
        mask = mask & ~ndi.binary_erosion(np.pad(mask, 1))[1:-1, 1:-1, 1:-1]
    idx = np.argwhere(mask)
    pts = (idx * step + origin) * np.asarray(voxel_size) * 1e-3
    return Mesh(
        pts.astype(np.float32), np.zeros((0, 3), np.int32), np.full(len(pts), label_id, np.uint32)
    )


def taubin_smooth(
    vertices: np.ndarray, faces: np.ndarray, iterations: int, lam: float = 0.5, mu: float = -0.53
) -> np.ndarray:
    """Taubin (lambda/mu) smoothing: removes voxel steps without shrinking the mesh."""
    n = len(vertices)
    edges = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    adj = sparse.coo_matrix(
        (
            np.ones(2 * len(edges)),
            (np.r_[edges[:, 0], edges[:, 1]], np.r_[edges[:, 1], edges[:, 0]]),
        ),
        shape=(n, n),
    ).tocsr()
    adj.data[:] = 1.0
    deg = np.asarray(adj.sum(axis=1)).ravel()
    norm = sparse.diags(1.0 / np.maximum(deg, 1)) @ adj
    v = np.asarray(vertices, dtype=np.float64)
    for _ in range(int(iterations)):
        v = v + lam * (norm @ v - v)
        v = v + mu * (norm @ v - v)
    return v


def export_meshes(
    labels: Any,
    out_dir: str | os.PathLike,
    voxel_size: Sequence[float] | None = None,
    *,
    ids: Iterable[int] | None = None,
    points: bool = False,
    surface_points: bool = True,
    combined: bool = False,
    smooth: int = 0,
    downscale: int | Sequence[int] = 1,
    index: pd.DataFrame | None = None,
    cancel: CancelToken | None = None,
) -> Job[list[Path]]:
    """Write meshes (or point clouds) of instances as binary .ply files.

    Parameters
    ----------
    labels : array or Volume (z, y, x)
    out_dir : path
        Created if missing.
    voxel_size : sequence of float, optional
        (z, y, x) nm; taken from a Volume when omitted.
    ids : iterable of int, optional
        Only these instances (default: all).
    points : bool
        Write point clouds instead of meshes.
    surface_points : bool
        Point clouds of surface voxels only (else every voxel).
    combined : bool
        One file for all instances (per-vertex ``id``) instead of one per instance.
    smooth : int
        Taubin smoothing iterations for meshes.
    downscale : int or (z, y, x) ints
        Keep every n-th voxel.
    index : DataFrame, optional
        A :func:`~napari_anatomics.analyze.measure.measure` table of ``labels`` (bounding
        boxes); found with one pass when omitted.
    cancel : CancelToken, optional

    Yields
    ------
    Progress
        One per instance.

    Returns
    -------
    list of Path
        The files written.
    """
    labels, voxel_size = _unwrap(labels, voxel_size, "labels")
    if voxel_size is None:
        raise ValueError("mesh export needs the voxel size (z, y, x nm) to write micrometres")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    wanted = None if ids is None else [int(i) for i in ids]
    table = index_instances(labels, wanted) if index is None else index
    if wanted is not None:
        missing = sorted(set(wanted) - set(table["id"].tolist()))
        if missing:
            raise ValueError(f"ids {missing} are not in the labels")
        table = table[table["id"].isin(wanted)]
    kind = "points" if points else "mesh"
    written: list[Path] = []
    parts: list[Mesh] = []
    rows = list(
        table[["id", "bbox_z0", "bbox_y0", "bbox_x0", "bbox_z1", "bbox_y1", "bbox_x1"]].itertuples(
            index=False
        )
    )
    for k, (i, z0, y0, x0, z1, y1, x1) in enumerate(rows):
        if cancel is not None and cancel.cancelled:
            raise Cancelled("mesh export cancelled")
        bbox = (slice(z0, z1), slice(y0, y1), slice(x0, x1))
        if points:
            m = instance_points(
                labels, i, bbox, voxel_size, surface=surface_points, downscale=downscale
            )
        else:
            m = instance_mesh(labels, i, bbox, voxel_size, smooth=smooth, downscale=downscale)
        if combined:
            parts.append(m)
        else:
            written.append(write_ply(out_dir / f"{kind}_{int(i):05d}.ply", m))
        yield Progress(k + 1, len(rows), f"{kind} of id {int(i)}")
    if combined:
        written.append(
            write_ply(out_dir / ("points.ply" if points else "meshes.ply"), _concat(parts))
        )
    return written


def export(labels: Any, out_dir: str | os.PathLike, voxel_size=None, **kwargs) -> list[Path]:
    """Run :func:`export_meshes` to the end and return the files written."""
    return run_job(export_meshes(labels, out_dir, voxel_size, **kwargs))


# -- .ply --------------------------------------------------------------------


def write_ply(path: str | os.PathLike, mesh: Mesh, *, color: bool = True) -> Path:
    """Write a binary little-endian .ply (x, y, z float32 in µm, id, colour, faces).

    Written to a temporary file and renamed when complete
    (:func:`~napari_anatomics.core.files.atomic_path`); an existing file is replaced.
    """
    path = Path(path)
    n, m = len(mesh.vertices), len(mesh.faces)
    fields = [("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("id", "<u4")]
    if color:
        fields += [("red", "u1"), ("green", "u1"), ("blue", "u1")]
    vert = np.empty(n, dtype=fields)
    vert["x"], vert["y"], vert["z"] = mesh.vertices[:, 2], mesh.vertices[:, 1], mesh.vertices[:, 0]
    vert["id"] = mesh.ids
    if color:
        rgb = _colors(mesh.ids)
        vert["red"], vert["green"], vert["blue"] = rgb[:, 0], rgb[:, 1], rgb[:, 2]
    ply_types = {"<f4": "float", "<u4": "uint", "u1": "uchar"}
    header = [
        "ply",
        "format binary_little_endian 1.0",
        "comment napari-anatomics; units: micrometres",
        f"element vertex {n}",
    ]
    header += [f"property {ply_types[t]} {name}" for name, t in fields]
    if m:
        header += [f"element face {m}", "property list uchar int vertex_indices"]
    header.append("end_header")
    face = np.empty(m, dtype=[("n", "u1"), ("v", "<i4", (3,))])
    face["n"], face["v"] = 3, mesh.faces
    # A unique name next to the target, created with the usual permissions (umask).
    with atomic_path(path, overwrite=True) as tmp, open(tmp, "xb") as fh:
        fh.write(("\n".join(header) + "\n").encode("ascii"))
        fh.write(vert.tobytes())
        fh.write(face.tobytes())
    return path


_PLY_TYPES = {
    "char": "i1",
    "uchar": "u1",
    "short": "<i2",
    "ushort": "<u2",
    "int": "<i4",
    "uint": "<u4",
    "float": "<f4",
    "double": "<f8",
    "int8": "i1",
    "uint8": "u1",
    "int16": "<i2",
    "uint16": "<u2",
    "int32": "<i4",
    "uint32": "<u4",
    "float32": "<f4",
    "float64": "<f8",
}


def read_ply(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read a binary little-endian .ply with triangle faces (as written by :func:`write_ply`).

    Returns
    -------
    dict
        ``"vertex"``: structured array of the vertex properties; ``"face"``:
        (m, 3) int array (empty for point clouds).
    """
    data = Path(path).read_bytes()
    end = data.index(b"end_header\n") + len(b"end_header\n")
    lines = data[:end].decode("ascii").splitlines()
    if lines[0] != "ply" or "binary_little_endian" not in lines[1]:
        raise ValueError(f"{path}: not a binary little-endian .ply file")
    elements: list[tuple[str, int, list]] = []
    for line in lines[2:]:
        words = line.split()
        if words[0] == "element":
            elements.append((words[1], int(words[2]), []))
        elif words[0] == "property":
            elements[-1][2].append(words[1:])
    out: dict[str, np.ndarray] = {"face": np.zeros((0, 3), np.int64)}
    pos = end
    for name, count, props in elements:
        if props and props[0][0] == "list":
            _, ctype, itype, pname = props[0]
            dtype = np.dtype([("n", _PLY_TYPES[ctype]), (pname, _PLY_TYPES[itype], (3,))])
            arr = np.frombuffer(data, dtype=dtype, count=count, offset=pos)
            if count and np.any(arr["n"] != 3):
                raise ValueError(f"{path}: only triangle faces are supported")
            out[name] = arr[pname].astype(np.int64)
        else:
            dtype = np.dtype([(p[1], _PLY_TYPES[p[0]]) for p in props])
            out[name] = np.frombuffer(data, dtype=dtype, count=count, offset=pos)
        pos += dtype.itemsize * count
    return out


# -- helpers -----------------------------------------------------------------


def _steps(downscale: int | Sequence[int]) -> np.ndarray:
    step = np.broadcast_to(np.asarray(downscale, dtype=int), (3,)).copy()
    if np.any(step < 1):
        raise ValueError(f"downscale must be positive integers, not {downscale}")
    return step


def _object_mask(labels, label_id, bbox, downscale):
    """Boolean mask of one object in its (downscaled) bbox, the bbox origin and the steps."""
    step = _steps(downscale)
    # Align the sampling grid to the stack so neighbouring objects stay consistent.
    start = np.array([(s.start // k) * k for s, k in zip(bbox, step)])
    stop = np.array([s.stop for s in bbox])
    region = labels[tuple(slice(a, b, k) for a, b, k in zip(start, stop, step))]
    region = np.asarray(region.compute() if hasattr(region, "compute") else region)
    mask = region == label_id
    if not mask.any():  # the object is thinner than the sampling step: keep one voxel
        full = np.asarray(labels[tuple(bbox)]) == label_id
        idx = np.argwhere(full)[0]
        mask = np.zeros((1, 1, 1), bool)
        mask[0, 0, 0] = True
        start = idx + np.array([s.start for s in bbox])
    return mask, start, step


def _concat(parts: list[Mesh]) -> Mesh:
    if not parts:
        return Mesh(
            np.zeros((0, 3), np.float32), np.zeros((0, 3), np.int32), np.zeros(0, np.uint32)
        )
    offsets = np.cumsum([0] + [len(p.vertices) for p in parts[:-1]])
    return Mesh(
        np.concatenate([p.vertices for p in parts]),
        np.concatenate([p.faces + o for p, o in zip(parts, offsets)]).astype(np.int32),
        np.concatenate([p.ids for p in parts]),
    )


def _colors(ids: np.ndarray) -> np.ndarray:
    """A stable, distinct colour per id (golden-ratio hues)."""
    from matplotlib.colors import hsv_to_rgb

    hue = (np.asarray(ids, dtype=np.float64) * 0.618033988749895) % 1.0
    hsv = np.stack([hue, np.full_like(hue, 0.65), np.full_like(hue, 0.95)], axis=1)
    return np.round(hsv_to_rgb(hsv) * 255).astype(np.uint8)
