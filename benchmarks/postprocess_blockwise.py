"""Instance post-processing: blockwise (ours) vs one whole-array scikit-image watershed.

Maps: foreground and a smooth boundary map drawn from a synthetic SBFSEM
stack (exact objects), stored as uint8 zarr like ``anatomics predict`` writes.

* A volume that fits in memory: both methods on the same maps and thresholds
  (seeds = foreground >= 0.8 and boundary <= 0.3, 26-connected; watershed of
  the boundary map inside foreground >= 0.5). The object counts must be equal
  (and the partitions are compared voxel by voxel).
* A volume 8x larger (2 x 2 x 2 copies of the maps) than that, whose
  whole-array processing would exceed the stated memory budget (estimated from
  the whole-array run's memory per voxel): ours runs block by block within
  the budget.

Every run happens in a fresh subprocess so its peak RSS (VmHWM) is
clean. Run: ``python benchmarks/postprocess_blockwise.py`` (times are
wall-clock on a shared machine: noisy).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time

import numpy as np
from _rss import peak_rss_mb  # benchmarks/ is on sys.path when run as a script

BUDGET_MB = 1024
SHAPE = (48, 384, 384)
SEED, BOUNDARY, FOREGROUND = 0.8, 0.3, 0.5


def make_maps(path: str) -> int:
    """Write the maps of a synthetic stack to ``path``; return its object count."""
    import zarr
    from scipy import ndimage as ndi

    from napari_anatomics.io.probabilities import attributes, encode
    from napari_anatomics.io.samples import synthetic_sbfsem

    truth = synthetic_sbfsem(SHAPE, 120, voxel_size=(40, 10, 10), seed=1)
    labels = truth.labels
    rim = (ndi.grey_erosion(labels, size=3) != labels) | (
        ndi.grey_dilation(labels, size=3) != labels
    )
    boundary = ndi.gaussian_filter(((labels > 0) & rim).astype(np.float32), 1.0)
    maps = np.stack([labels > 0, boundary / boundary.max()]).astype(np.float32)
    array = zarr.create_array(path, shape=maps.shape, chunks=(2, 32, 256, 256), dtype="uint8")
    array[:] = encode(maps, "uint8")
    array.attrs.update(attributes("uint8", ["foreground", "boundary"], "instance", [], None))
    return truth.n_objects


def make_big(small: str, path: str) -> tuple[int, ...]:
    """Tile the small maps 2 x 2 x 2 into a larger zarr, one copy at a time."""
    import zarr

    source = zarr.open_array(small, mode="r")
    c, z, y, x = source.shape
    big = zarr.create_array(
        path, shape=(c, 2 * z, 2 * y, 2 * x), chunks=source.chunks, dtype="uint8"
    )
    big.attrs.update(dict(source.attrs))
    block = source[:]
    for i in range(2):
        for j in range(2):
            for k in range(2):
                big[:, i * z : (i + 1) * z, j * y : (j + 1) * y, k * x : (k + 1) * x] = block
    return big.shape


def child(method: str, maps_path: str, out: str) -> dict:
    import zarr

    maps = zarr.open_array(maps_path, mode="r")
    baseline = peak_rss_mb()
    start = time.perf_counter()
    if method == "blockwise":
        from napari_anatomics.core.progress import run_job
        from napari_anatomics.segment.config import SegmentConfig
        from napari_anatomics.segment.postprocess import postprocess

        decoding = SegmentConfig(
            seed_threshold=SEED,
            boundary_threshold=BOUNDARY,
            foreground_threshold=FOREGROUND,
            halo=(8, 32, 32),
        )
        result = run_job(postprocess(maps, out, decoding))
        n_objects = int(result.attrs["n_objects"])
    else:
        import cc3d
        from skimage.segmentation import watershed

        from napari_anatomics.io.probabilities import decode

        fg, boundary = decode(maps[0]), decode(maps[1])
        seeds = cc3d.connected_components((fg >= SEED) & (boundary <= BOUNDARY), connectivity=26)
        labels = watershed(boundary, seeds, mask=fg >= FOREGROUND)
        n_objects = len(np.unique(labels)) - 1
        zarr.open_group(out, mode="w").create_array(
            "labels", data=labels.astype(np.uint32), chunks=(32, 256, 256)
        )
    return {
        "seconds": time.perf_counter() - start,
        "objects": n_objects,
        "voxels": int(np.prod(maps.shape[1:])),
        "rss_mb": peak_rss_mb(),
        "baseline_mb": baseline,
    }


def run_child(*args: str) -> dict:
    proc = subprocess.run(
        [sys.executable, __file__, "--child", *args], capture_output=True, text=True, check=True
    )
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(*args.child)))
        return
    import zarr

    with tempfile.TemporaryDirectory() as tmp:
        truth = make_maps(f"{tmp}/maps.zarr")
        rows = [
            ("fits", m, run_child(m, f"{tmp}/maps.zarr", f"{tmp}/{m}.zarr"))
            for m in ("whole", "blockwise")
        ]
        ours = zarr.open_group(f"{tmp}/blockwise.zarr")["labels"][:]
        theirs = zarr.open_group(f"{tmp}/whole.zarr")["labels"][:]
        pairs = np.unique(np.stack([ours.ravel(), theirs.ravel()]), axis=1).shape[1]
        same = np.array_equal(ours > 0, theirs > 0) and pairs == len(np.unique(ours))
        del ours, theirs
        shape = make_big(f"{tmp}/maps.zarr", f"{tmp}/big.zarr")
        rows.append(
            (
                "8x",
                "blockwise",
                run_child("blockwise", f"{tmp}/big.zarr", f"{tmp}/big-labels.zarr"),
            )
        )

    whole = rows[0][2]
    per_voxel = (whole["rss_mb"] - whole["baseline_mb"]) / whole["voxels"]
    print(
        f"synthetic maps {SHAPE} with {truth} objects; 8x volume {shape[1:]}; "
        f"memory budget {BUDGET_MB} MB"
    )
    print(
        f"{'volume':<7} {'method':<10} {'Mvoxels':>8} {'objects':>8} {'time s':>8} "
        f"{'peak RSS MB':>12} {'of which run':>13}"
    )
    for name, method, r in rows:
        print(
            f"{name:<7} {method:<10} {r['voxels'] / 1e6:>8.1f} {r['objects']:>8} "
            f"{r['seconds']:>8.1f} {r['rss_mb']:>12.0f} {r['rss_mb'] - r['baseline_mb']:>13.0f}"
        )
    big = rows[2][2]
    estimate = whole["baseline_mb"] + per_voxel * big["voxels"]
    print(
        f"fits: same object count: {rows[0][2]['objects'] == rows[1][2]['objects']}; "
        f"identical partition: {same}"
    )
    print(
        f"8x: whole-array watershed would need ~{estimate:.0f} MB (its memory per voxel "
        f"on the volume that fits) > budget {BUDGET_MB} MB; blockwise peak "
        f"{big['rss_mb']:.0f} MB {'<=' if big['rss_mb'] <= BUDGET_MB else '>'} budget"
    )


if __name__ == "__main__":
    main()
