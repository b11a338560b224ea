"""Per-instance statistics: napari-anatomics vs regionprops_table vs the seed's per-label loop.

Run::

    python benchmarks/stats_benchmark.py              # real labels + synthetic 512^3
    python benchmarks/stats_benchmark.py --size 256   # quicker
    python benchmarks/stats_benchmark.py --full-loop  # time the whole per-label loop

Cases: the real chloroplast labels (../shared/data/sbfsem-chloroplasts/labels.tif, when
present) and a synthetic uint32 volume of ~5,000 ellipsoids (ids shuffled). Methods, timed
in-process on the same array:

* ``measure`` (in memory) and ``measure`` over a dask array (blockwise path);
* ``skimage.measure.regionprops_table`` with label, area, bbox, centroid;
* the seed's loop ``np.count_nonzero(vol == id)`` for each id: on a random subset of ids,
  extrapolated to all ids (labelled so), unless ``--full-loop``.

Every method's numbers are checked against ``measure`` (voxel counts, bounding boxes,
centroids). Wall-clock times on a shared machine are noisy: take the best of ``--repeat``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import dask.array as da
import numpy as np

from napari_anatomics.analyze.measure import measure

REAL = Path(__file__).resolve().parents[2] / "shared/data/sbfsem-chloroplasts/labels.tif"


def synthetic_labels(size: int, cell: int = 31, seed: int = 0) -> np.ndarray:
    """Random ellipsoids, one per ``cell``^3 cell (non-overlapping), ids shuffled."""
    rng = np.random.default_rng(seed)
    n = -(-size // cell)
    ids = rng.permutation(n**3).reshape(n, n, n).astype(np.uint32) + 1
    radii = rng.uniform(4, cell / 2 - 1, (n, n, n, 3))
    centre = cell / 2 + rng.uniform(-2, 2, (n, n, n, 3))
    out = np.zeros((size, size, size), np.uint32)
    y, x = np.ogrid[:size, :size]
    cy, cx = y // cell, x // cell
    for z in range(size):
        cz = z // cell
        r = radii[cz, cy, cx]  # (size, size, 3)
        c = centre[cz, cy, cx]
        d = ((z % cell - c[..., 0]) / r[..., 0]) ** 2
        d += ((y % cell - c[..., 1]) / r[..., 1]) ** 2
        d += ((x % cell - c[..., 2]) / r[..., 2]) ** 2
        out[z] = np.where(d <= 1, ids[cz, cy, cx], 0)
    return out


def best(fn, repeat: int):
    times, result = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return min(times), result


def run_case(name: str, vol: np.ndarray, voxel, args) -> list[tuple]:
    rows = []
    print(f"\n== {name}: shape {vol.shape} {vol.dtype}", flush=True)
    t_mem, table = best(lambda: measure(vol, voxel), args.repeat)
    n_ids = len(table)
    print(f"   {n_ids} instances, {table.shape[1]} columns", flush=True)
    rows.append((name, "measure (in memory)", t_mem, table.shape[1], "reference"))

    t_quick, quick = best(lambda: measure(vol, voxel, surface=False), args.repeat)
    same = quick.equals(table.drop(columns="surface_um2"))
    rows.append(
        (
            name,
            "measure (in memory, surface=False)",
            t_quick,
            quick.shape[1],
            "identical" if same else "DIFFERENT",
        )
    )

    chunks = (min(128, vol.shape[0]), 256, 256)
    dvol = da.from_array(vol, chunks=chunks)
    t_dask, dtable = best(lambda: measure(dvol, voxel), args.repeat)
    same = dtable.equals(table)
    rows.append(
        (
            name,
            f"measure (dask, chunks {chunks})",
            t_dask,
            dtable.shape[1],
            "identical" if same else "DIFFERENT",
        )
    )

    from skimage.measure import regionprops_table

    props = ("label", "area", "bbox", "centroid")
    t_rp, rp = best(lambda: regionprops_table(vol, properties=props), args.repeat)
    order = np.argsort(rp["label"])
    ok = (
        np.array_equal(rp["label"][order], table["id"])
        and np.array_equal(rp["area"][order].astype(np.int64), table["voxels"])
        and all(
            np.array_equal(rp[f"bbox-{k}"][order], table[c])
            for k, c in enumerate(
                ["bbox_z0", "bbox_y0", "bbox_x0", "bbox_z1", "bbox_y1", "bbox_x1"]
            )
        )
        and all(
            np.allclose(rp[f"centroid-{k}"][order], table[f"centroid_{a}"])
            for k, a in enumerate("zyx")
        )
    )
    rows.append(
        (name, "skimage regionprops_table", t_rp, len(rp), "identical" if ok else "DIFFERENT")
    )

    ids = table["id"].to_numpy()
    counts = table["voxels"].to_numpy()
    rng = np.random.default_rng(1)
    if args.full_loop or len(ids) <= args.loop_sample:
        pick, label = np.arange(len(ids)), "seed loop count_nonzero(vol == id)"
    else:
        pick = np.sort(rng.choice(len(ids), args.loop_sample, replace=False))
        label = f"seed loop, {len(pick)} ids timed, EXTRAPOLATED to {len(ids)}"
    t0 = time.perf_counter()
    loop = [np.count_nonzero(vol == ids[i]) for i in pick]
    t_loop = (time.perf_counter() - t0) * len(ids) / len(pick)
    ok = np.array_equal(loop, counts[pick])
    rows.append((name, label, t_loop, 2, "identical" if ok else "DIFFERENT"))
    for r in rows:
        print(f"   {r[1]:<55} {r[2]:8.2f} s", flush=True)
    return rows


def primitives(vol: np.ndarray) -> None:
    """Time the one-pass counting primitives on the same array (measure, don't assume)."""
    import cc3d
    import fastremap

    print(f"\n== counting primitives on {vol.shape} {vol.dtype}")
    for label, fn in (
        ("np.bincount", lambda: np.bincount(vol.ravel())),
        ("np.unique(return_counts)", lambda: np.unique(vol, return_counts=True)),
        ("fastremap.unique(return_counts)", lambda: fastremap.unique(vol, return_counts=True)),
        ("cc3d.statistics (counts, bbox, centroid)", lambda: cc3d.statistics(vol)),
    ):
        t, _ = best(fn, 1)
        print(f"   {label:<45} {t:6.2f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=512, help="synthetic cube size")
    parser.add_argument("--repeat", type=int, default=2, help="best of N runs")
    parser.add_argument("--loop-sample", type=int, default=100, help="ids timed in the loop")
    parser.add_argument("--full-loop", action="store_true", help="time the loop over all ids")
    parser.add_argument("--primitives", action="store_true", help="also time bincount etc.")
    args = parser.parse_args()

    rows = []
    if REAL.is_file():
        import tifffile

        rows += run_case("real labels", tifffile.imread(REAL), (40.0, 10.0, 10.0), args)
    else:
        print(f"(real labels not found at {REAL}; skipped)")
    t0 = time.perf_counter()
    vol = synthetic_labels(args.size)
    print(f"\n(synthetic volume built in {time.perf_counter() - t0:.1f} s)")
    rows += run_case(f"synthetic {args.size}^3", vol, (40.0, 10.0, 10.0), args)
    if args.primitives:
        primitives(vol)

    print("\n| case | method | time (s) | columns | vs measure (in memory) | numbers |")
    print("|---|---|---:|---:|---:|---|")
    ref = {}
    for case, method, t, cols, check in rows:
        ref.setdefault(case, t)
        print(f"| {case} | {method} | {t:.2f} | {cols} | {t / ref[case]:.2f}x | {check} |")


if __name__ == "__main__":
    main()
